# Content formats for LwM2M values: read results -> payload bytes, write payloads -> typed values.
import binascii
import struct

from . import objects as ob
from . import senml
from . import tlv

TEXT = 0
LINK = 40
OPAQUE = 42
SENML_JSON = 110
SENML_CBOR = 112
TLV = 11542
SUPPORTED = (TEXT, OPAQUE, TLV, SENML_CBOR, SENML_JSON)


class ContentError(ValueError):
    pass


def text(rtype, value):
    if rtype == ob.BOOLEAN:
        return b"1" if value else b"0"
    if rtype == ob.OPAQUE:
        return binascii.b2a_base64(value).rstrip(b"\n")
    if rtype == ob.FLOAT and not senml.finite(value):
        # LwM2M's text Float is a decimal number: "inf"/"nan" are no value a server reads (TLV carries them)
        raise ContentError("%r has no text form (read it as TLV or SenML-CBOR)" % value)
    return str(value).encode()


def from_text(rtype, payload):
    s = bytes(payload).decode()
    if rtype == ob.STRING:
        return s
    if rtype in (ob.INTEGER, ob.TIME):
        return int(s)
    if rtype == ob.FLOAT:
        v = float(s)  # MicroPython's float() also reads "inf" and "nan", which no LwM2M text Float is
        if not senml.finite(v):
            raise ValueError("float %r is not finite" % s[:20])
        return v
    if rtype == ob.BOOLEAN:
        if s not in ("0", "1"):
            raise ValueError("boolean must be 0 or 1")
        return s == "1"
    if rtype == ob.OPAQUE:
        return binascii.a2b_base64(s)
    if rtype == ob.OBJLNK:
        return ob.convert(rtype, s)
    raise ValueError("resource takes no value")


def tlv_value(rtype, value):
    if rtype in (ob.INTEGER, ob.TIME):
        return tlv.int_bytes(value)
    if rtype == ob.FLOAT:
        return struct.pack(">d", value)
    if rtype == ob.BOOLEAN:
        return b"\x01" if value else b"\x00"
    if rtype == ob.STRING:
        return value.encode()
    if rtype == ob.OBJLNK:
        return struct.pack(">HH", value[0], value[1])
    return bytes(value)


def from_tlv(rtype, raw):
    if rtype in (ob.INTEGER, ob.TIME):
        return tlv.int_value(raw)
    if rtype == ob.FLOAT:
        if len(raw) == 4:
            return struct.unpack(">f", raw)[0]
        if len(raw) == 8:
            return struct.unpack(">d", raw)[0]
        raise ValueError("float of %d bytes" % len(raw))
    if rtype == ob.BOOLEAN:
        if len(raw) != 1 or raw[0] > 1:
            raise ValueError("bad boolean")
        return raw[0] == 1
    if rtype == ob.STRING:
        return bytes(raw).decode()
    if rtype == ob.OBJLNK:
        if len(raw) != 4:
            raise ValueError("object link of %d bytes" % len(raw))
        return struct.unpack(">HH", raw)
    return bytes(raw)


def _tlv_resource(rid, rtype, v, out):
    if isinstance(v, tuple):
        # a multiple resource: one "multiple resource" record (type 10) holding a "resource instance" record
        # (type 01) per instance, built in the same kind of buffer a single resource's record uses
        inner = bytearray()
        for riid, x in enumerate(v):
            tlv.encode(tlv.RESOURCE_INSTANCE, riid, tlv_value(rtype, x), inner)
        return tlv.encode(tlv.MULTIPLE_RESOURCE, rid, inner, out)
    return tlv.encode(tlv.RESOURCE, rid, tlv_value(rtype, v), out)


def _senml_json(base, items):
    try:
        return senml.encode_json(base, items)
    except senml.SenMLError as e:  # a non-finite number: the read answers 4.06 with this reason
        raise ContentError(str(e))


def _senml_items(values):
    # one record per resource, and per resource instance of a multiple resource ("0/11/0", "0/11/1", ...)
    for iid, rid, _, v in values:
        if isinstance(v, tuple):
            for riid, x in enumerate(v):
                yield "%d/%d/%d" % (iid, rid, riid), x
        else:
            yield "%d/%d" % (iid, rid), v


def encode(fmt, oid, values, object_level=False):
    """values: [(iid, rid, rtype, value)] read from one object -> payload bytes in `fmt`. TLV reads of an
    instance list resources directly; reads of a whole object wrap them in object-instance TLVs. A tuple
    value is a multiple resource (see objects.LwObject.resources)."""
    if fmt == TLV:
        out = bytearray()
        iids = []
        for iid, _, _, _ in values:
            if iid not in iids:
                iids.append(iid)
        for iid in iids:
            inner = bytearray()
            for i, rid, rtype, v in values:
                if i == iid:
                    _tlv_resource(rid, rtype, v, inner)
            out += tlv.encode(tlv.OBJECT_INSTANCE, iid, inner) if object_level else inner
        return bytes(out)
    if fmt in (SENML_CBOR, SENML_JSON):
        items = list(_senml_items(values))
        base = "/%d/" % oid
        return senml.encode_cbor(base, items) if fmt == SENML_CBOR else _senml_json(base, items)
    raise ContentError("format %d cannot carry several resources" % fmt)


def encode_single(fmt, oid, iid, rid, rtype, value, riid=None):
    """One resource (value: a tuple for a multiple resource) or, with riid, one resource instance."""
    path = "/%d/%d/%d" % (oid, iid, rid)
    if riid is None and isinstance(value, tuple):
        # text and opaque carry exactly one value, so a whole multiple resource has no representation there
        if fmt in (TEXT, OPAQUE):
            raise ContentError("a multiple resource needs TLV or SenML")
        if fmt == TLV:
            return bytes(_tlv_resource(rid, rtype, value, None))
        if fmt in (SENML_CBOR, SENML_JSON):
            items = [("%d" % i, x) for i, x in enumerate(value)]
            return senml.encode_cbor(path + "/", items) if fmt == SENML_CBOR else _senml_json(path + "/", items)
        raise ContentError("unsupported format %d" % fmt)
    if riid is not None:
        path += "/%d" % riid
    if fmt == TEXT:
        return text(rtype, value)
    if fmt == OPAQUE:
        if rtype != ob.OPAQUE:
            raise ContentError("opaque format for a non-opaque resource")
        return bytes(value)
    if fmt == TLV:
        if riid is not None:
            return bytes(tlv.encode(tlv.RESOURCE_INSTANCE, riid, tlv_value(rtype, value)))
        return bytes(tlv.encode(tlv.RESOURCE, rid, tlv_value(rtype, value)))
    if fmt == SENML_CBOR:
        return bytes(senml.encode_cbor(path, [("", value)]))
    if fmt == SENML_JSON:
        return _senml_json(path, [("", value)])
    raise ContentError("unsupported format %d" % fmt)


def decode(fmt, path, types, payload):
    """Decode a write payload aimed at `path` ([oid, iid] or [oid, iid, rid]) -> [(iid, rid, raw value)],
    raw values already typed for TLV/text/opaque via `types` (rid -> rtype)."""
    oid = path[0]
    iid = path[1]
    if fmt in (TEXT, OPAQUE):
        if len(path) != 3:
            raise ContentError("text/opaque writes need a resource path")
        rtype = types.get(path[2])
        if rtype is None:
            raise ContentError("no such resource")
        return [(iid, path[2], bytes(payload) if fmt == OPAQUE else from_text(rtype, payload))]
    if fmt == TLV:
        out = []
        for kind, ident, raw in tlv.decode(payload):
            if kind == tlv.OBJECT_INSTANCE:
                if ident != iid:
                    raise ContentError("TLV instance %d differs from path" % ident)
                for k2, rid, raw2 in tlv.decode(raw):
                    if k2 != tlv.RESOURCE or rid not in types:
                        raise ContentError("unsupported TLV item")
                    out.append((iid, rid, from_tlv(types[rid], raw2)))
            elif kind == tlv.RESOURCE:
                if ident not in types:
                    raise ContentError("no resource %d" % ident)
                out.append((iid, ident, from_tlv(types[ident], raw)))
            else:
                raise ContentError("multiple-instance resources are not supported")
        return out
    if fmt in (SENML_CBOR, SENML_JSON):
        recs = senml.decode_cbor(payload) if fmt == SENML_CBOR else senml.decode_json(payload)
        out = []
        for name, value in recs:
            parts = name.strip("/").split("/")
            try:
                ids = [int(p) for p in parts]
            except ValueError:
                raise ContentError("bad SenML name %s" % name)
            if len(ids) != 3 or ids[0] != oid or ids[1] != iid:
                raise ContentError("SenML name %s outside the target" % name)
            out.append((iid, ids[2], value))
        return out
    raise ContentError("unsupported format %d" % fmt)
