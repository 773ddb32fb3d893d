"""Object/resource definitions, the OMA object-XML loader, and the default model (objects 0, 1, 3, 5, TinyML).

The TinyML capability object is private (id 32770). Its XML lives in docs/tinyml-object.xml, written with the
device client; when that file exists it wins over the built-in fallback below, so both sides stay in step.
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .. import values as V
from . import builtin

TINYML_OBJECT_ID = 32770
TINYML_XML = Path(__file__).resolve().parents[4] / "docs" / "tinyml-object.xml"


@dataclass(frozen=True)
class ResourceDef:
    id: int
    name: str
    operations: str  # "", "R", "W", "RW", "E"
    multiple: bool
    mandatory: bool
    type: str

    @property
    def readable(self):
        return "R" in self.operations

    @property
    def writable(self):
        return "W" in self.operations

    @property
    def executable(self):
        return "E" in self.operations


@dataclass
class ObjectDef:
    id: int
    name: str
    multiple: bool
    mandatory: bool
    version: str = "1.0"
    resources: dict = field(default_factory=dict)  # id -> ResourceDef


class Model:
    """A set of object definitions; answers "what type is /o/i/r"."""

    def __init__(self, objects=()):
        self.objects = {o.id: o for o in objects}

    def add(self, obj):
        self.objects[obj.id] = obj

    def object(self, oid):
        return self.objects.get(oid)

    def resource(self, path):
        """ResourceDef for a path of length >= 3, or None when unknown."""
        if len(path) < 3:
            return None
        obj = self.objects.get(path[0])
        return obj.resources.get(path[2]) if obj else None

    def type_of(self, path):
        r = self.resource(path)
        return r.type if r else None

    def is_multiple(self, path):
        r = self.resource(path)
        return bool(r and r.multiple)


class ObjectXMLError(ValueError):
    pass


def _text(el, tag, default=""):
    child = el.find(tag)
    return (child.text or "").strip() if child is not None and child.text else default


def load_xml(source):
    """Parse an OMA LwM2M object definition (a path or XML text) into a list of ObjectDef."""
    text = Path(source).read_text() if isinstance(source, Path) or not str(source).lstrip().startswith("<") else source
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ObjectXMLError("object XML does not parse: %s" % e) from None
    objs = []
    for o in root.iter("Object"):
        try:
            oid = int(_text(o, "ObjectID"))
        except ValueError:
            raise ObjectXMLError("object without a numeric <ObjectID>") from None
        obj = ObjectDef(
            id=oid,
            name=_text(o, "Name"),
            multiple=_text(o, "MultipleInstances") == "Multiple",
            mandatory=_text(o, "Mandatory") == "Mandatory",
            version=_text(o, "ObjectVersion", "1.0"),
        )
        res = o.find("Resources")
        for item in res.iter("Item") if res is not None else ():
            typ = _text(item, "Type", V.NONE) or V.NONE
            if typ not in V.TYPES:
                raise ObjectXMLError("object %d resource %s: unknown type %r" % (oid, item.get("ID"), typ))
            try:
                rid = int(item.get("ID", ""))
            except ValueError:
                raise ObjectXMLError("object %d: resource without a numeric ID" % oid) from None
            obj.resources[rid] = ResourceDef(
                id=rid,
                name=_text(item, "Name"),
                operations=_text(item, "Operations"),
                multiple=_text(item, "MultipleInstances") == "Multiple",
                mandatory=_text(item, "Mandatory") == "Mandatory",
                type=typ if _text(item, "Operations") != "E" else V.NONE,
            )
        objs.append(obj)
    if not objs:
        raise ObjectXMLError("no <Object> in object XML")
    return objs


def _from_table(oid, name, multiple, mandatory, rows, version="1.0"):
    obj = ObjectDef(oid, name, multiple, mandatory, version)
    for rid, rname, ops, multi, mand, typ in rows:
        obj.resources[rid] = ResourceDef(rid, rname, ops, multi, mand, typ)
    return obj


def builtin_objects():
    return [_from_table(*spec) for spec in builtin.OBJECTS]


def default_model(tinyml_xml=TINYML_XML):
    """Objects 0, 1, 3, 5 and the TinyML object (from its XML when present, else the built-in fallback)."""
    model = Model(builtin_objects())
    if tinyml_xml and Path(tinyml_xml).is_file():
        for obj in load_xml(Path(tinyml_xml)):
            model.add(obj)
    return model
