"""LwM2M object definitions (the "object model") so codecs can type values and the server can check paths."""

from .model import ObjectDef, ResourceDef, Model, default_model, load_xml, TINYML_OBJECT_ID

__all__ = ["ObjectDef", "ResourceDef", "Model", "default_model", "load_xml", "TINYML_OBJECT_ID"]
