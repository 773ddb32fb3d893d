"""The model registry ("model zoo"): source models with versions and metadata, compiled variants per
(back-end, options, target) with their measured costs, and content-addressed artifact storage."""

from .artifacts import ArtifactStore
from .models import ModelRegistry, RegistryError

__all__ = ["ArtifactStore", "ModelRegistry", "RegistryError"]
