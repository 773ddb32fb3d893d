"""Compiler back-ends behind one plugin interface.

A back-end turns a source model into an artifact a device runtime executes. Back-ends shipped with tinymlaas and
third-party ones are found the same way: the `tinymlaas.backends` entry-point group, each entry naming a class that
implements `Backend` (see interface.py). A third-party package declares, in its pyproject.toml:

    [project.entry-points."tinymlaas.backends"]
    mybackend = "mypackage.backend:MyBackend"
"""

from .interface import Artifact, Backend, BackendError, SourceModel, Target, UnsupportedModel, step, steps_to
from .discovery import available_backends, backend

__all__ = ["Artifact", "Backend", "BackendError", "SourceModel", "Target", "available_backends", "backend", "step",
           "steps_to", "UnsupportedModel"]
