# The LwM2M object model: an object is a class with a resource table {rid: (type, operations)} and methods to
# read, write and execute resources of its instances. Objects hold values, not encodings: `content` turns them
# into text/opaque/TLV/SenML.

# resource types
STRING = "s"
INTEGER = "i"
FLOAT = "f"
BOOLEAN = "b"
OPAQUE = "o"
TIME = "t"
OBJLNK = "l"  # an object link "oid:iid", held as the tuple (oid, iid)
NONE = "-"  # executable resources carry no value


class ResourceError(Exception):
    """A request the object refuses: `code` is the CoAP response code to answer with."""

    def __init__(self, code, msg=""):
        super().__init__(msg)
        self.code = code


class WriteError(Exception):
    """Raised by a sink: `code` is the CoAP response code, `size1` an optional Size1 to report (4.13)."""

    def __init__(self, code, msg="", size1=None):
        super().__init__(msg)
        self.code = code
        self.size1 = size1


class LwObject:
    oid = None
    # rid -> (type, ops) with ops a string of "R", "W", "E", plus "M" for a multiple-instance resource, whose
    # read() returns a tuple of values: resource instance i is element i (the OMA objects this client exposes
    # number their instances 0..n-1, so no id table is needed)
    resources = {}
    version = None  # object version for the registration link, e.g. "1.1"
    bootstrap_only = ()  # rids only a Bootstrap-Server writes (a Write from a server gets 4.01)

    def __init__(self):
        self.client = None  # set by the client; used to report changes to observers

    def instances(self):
        return (0,)

    def read(self, iid, rid):
        raise ResourceError(0x84)

    def write(self, iid, rid, value):
        raise ResourceError(0x85)

    def execute(self, iid, rid, arg):
        raise ResourceError(0x85)

    def sink(self, iid, rid):
        """A streaming writer (begin/write/finish/abort) for opaque resources written block by block, or None."""
        return None

    def changed(self, iid, rid):
        if self.client:
            self.client.changed(self.oid, iid, rid)


def convert(rtype, value):
    """Coerce a decoded write value to the resource type, or raise ValueError."""
    if rtype == STRING:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode()
        if not isinstance(value, str):
            raise ValueError("not a string")
        return value
    if rtype in (INTEGER, TIME):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError("not an integer")
        return int(value)
    if rtype == FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("not a number")
        return float(value)
    if rtype == BOOLEAN:
        if value in (True, False, 0, 1):
            return bool(value)
        raise ValueError("not a boolean")
    if rtype == OBJLNK:
        if isinstance(value, str):
            a, sep, b = value.partition(":")
            if not sep:
                raise ValueError("not an object link")
            value = (int(a), int(b))
        if not isinstance(value, tuple) or len(value) != 2 or not all(0 <= x <= 0xFFFF for x in value):
            raise ValueError("not an object link")
        return value
    if rtype == OPAQUE:
        if isinstance(value, str):
            return value.encode()
        return bytes(value)
    raise ValueError("resource takes no value")
