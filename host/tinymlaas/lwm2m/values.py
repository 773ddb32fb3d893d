"""LwM2M resource data types and how Python values represent them."""

from dataclasses import dataclass

# The type names used in OMA object XML (<Type>).
STRING = "String"
INTEGER = "Integer"
UNSIGNED = "Unsigned Integer"
FLOAT = "Float"
BOOLEAN = "Boolean"
OPAQUE = "Opaque"
TIME = "Time"
OBJLNK = "Objlnk"
CORELNK = "Corelnk"
NONE = "none"  # executable resources carry no value

TYPES = (STRING, INTEGER, UNSIGNED, FLOAT, BOOLEAN, OPAQUE, TIME, OBJLNK, CORELNK, NONE)


@dataclass(frozen=True)
class ObjLink:
    """An Object Link value: object id and instance id (both 16-bit)."""

    object_id: int
    instance_id: int

    def __post_init__(self):
        for v in (self.object_id, self.instance_id):
            if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
                raise ValueError("ObjLink ids must be 0..65535")

    def __str__(self):
        return "%d:%d" % (self.object_id, self.instance_id)


INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


def check_value(typ, value):
    """Raise ValueError if `value` cannot represent a resource of type `typ`."""
    ok = {
        STRING: lambda v: isinstance(v, str),
        CORELNK: lambda v: isinstance(v, str),
        INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX,
        TIME: lambda v: isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX,
        UNSIGNED: lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= UINT64_MAX,
        FLOAT: lambda v: isinstance(v, float),
        BOOLEAN: lambda v: isinstance(v, bool),
        OPAQUE: lambda v: isinstance(v, (bytes, bytearray)),
        OBJLNK: lambda v: isinstance(v, ObjLink),
        NONE: lambda v: v is None,
    }[typ]
    if not ok(value):
        raise ValueError("value %r is not a valid LwM2M %s" % (value, typ))


def guess_type(value):
    """The type a Python value naturally encodes as, for resources missing from the object model."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER if value <= INT64_MAX else UNSIGNED
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STRING
    if isinstance(value, (bytes, bytearray)):
        return OPAQUE
    if isinstance(value, ObjLink):
        return OBJLNK
    raise ValueError("no LwM2M type for %r" % (value,))
