"""OMA TLV (content format 11542), LwM2M 1.1 §7.4.3.

One entry is: type byte, 8/16-bit identifier, 0/8/16/24-bit length field (or a 3-bit length in the type
byte), value. The type byte's top bits say what the entry is: object instance, resource instance, multiple
resource (which nests resource instances) or resource with value. Every length is checked against the bytes
left before anything is sliced, and nesting is at most 3 deep by construction (instance > resource > instance).
"""

from .. import values as V
from .errors import CodecError
from .scalar import tlv_bytes_to_value, value_to_tlv_bytes

OBJECT_INSTANCE = 0b00
RESOURCE_INSTANCE = 0b01
MULTIPLE_RESOURCE = 0b10
RESOURCE = 0b11

_NAMES = {0: "object instance", 1: "resource instance", 2: "multiple resource", 3: "resource"}


def encode_entry(kind, ident, value):
    if not 0 <= ident <= 0xFFFF:
        raise CodecError("TLV identifier %d out of range" % ident)
    n = len(value)
    if n >= 1 << 24:
        raise CodecError("TLV value of %d bytes is too long" % n)
    t = kind << 6
    head = b""
    if ident > 0xFF:
        t |= 0x20
        ident_bytes = ident.to_bytes(2, "big")
    else:
        ident_bytes = bytes([ident])
    if n < 8:
        t |= n
    elif n < 1 << 8:
        t |= 0x08
        head = n.to_bytes(1, "big")
    elif n < 1 << 16:
        t |= 0x10
        head = n.to_bytes(2, "big")
    else:
        t |= 0x18
        head = n.to_bytes(3, "big")
    return bytes([t]) + ident_bytes + head + value


def parse_entries(data):
    """bytes -> [(kind, ident, value bytes)] for one nesting level; raises CodecError on any bad length."""
    data = memoryview(bytes(data))
    out = []
    pos = 0
    end = len(data)
    while pos < end:
        t = data[pos]
        pos += 1
        kind = t >> 6
        id_len = 2 if t & 0x20 else 1
        len_len = (t >> 3) & 0x03
        if pos + id_len + len_len > end:
            raise CodecError("TLV header truncated at byte %d" % (pos - 1))
        ident = int.from_bytes(data[pos : pos + id_len], "big")
        pos += id_len
        if len_len:
            length = int.from_bytes(data[pos : pos + len_len], "big")
            pos += len_len
        else:
            length = t & 0x07
        if length > end - pos:
            raise CodecError("TLV %s %d announces %d bytes, %d left" % (_NAMES[kind], ident, length, end - pos))
        out.append((kind, ident, bytes(data[pos : pos + length])))
        pos += length
    return out


# ---- encoding -------------------------------------------------------------------------------------------------

def _type_for(model, path, value):
    return model.type_of(path) or V.guess_type(value)


def _encode_resource(model, oid, iid, rid, res):
    """res: {None: value} for a single resource or {riid: value} for a multiple one."""
    if None in res:
        return encode_entry(RESOURCE, rid, value_to_tlv_bytes(res[None], _type_for(model, (oid, iid, rid), res[None])))
    body = b"".join(
        encode_entry(RESOURCE_INSTANCE, riid, value_to_tlv_bytes(v, _type_for(model, (oid, iid, rid, riid), v)))
        for riid, v in sorted(res.items())
    )
    return encode_entry(MULTIPLE_RESOURCE, rid, body)


def _tree(base, values):
    """{path: value} under `base` -> {iid: {rid: {riid-or-None: value}}} for one object."""
    tree = {}
    for path, value in values.items():
        if len(path) < 3 or path[: len(base)] != tuple(base) or path[0] != base[0]:
            raise CodecError("TLV value path %s is not a resource under %s" % (path, base))
        res = tree.setdefault(path[1], {}).setdefault(path[2], {})
        key = path[3] if len(path) == 4 else None
        if (key is None and res) or (key is not None and None in res):
            raise CodecError("resource %s given both as single and multiple" % (path[:3],))
        res[key] = value
    return tree


def encode(base, values, model):
    base = tuple(base)
    if not base:
        raise CodecError("TLV needs at least an object in the path")
    if not values:
        return b""
    tree = _tree(base, values)
    oid = base[0]
    if len(base) == 1:
        return b"".join(
            encode_entry(OBJECT_INSTANCE, iid, b"".join(_encode_resource(model, oid, iid, rid, res) for rid, res in sorted(rs.items())))
            for iid, rs in sorted(tree.items())
        )
    iid = base[1]
    resources = tree.get(iid, {})
    if len(base) == 2:
        return b"".join(_encode_resource(model, oid, iid, rid, res) for rid, res in sorted(resources.items()))
    rid = base[2]
    res = resources.get(rid, {})
    if len(base) == 3:
        if None in res and model.is_multiple(base):
            raise CodecError("multiple resource %s given a single value" % (base,))
        return _encode_resource(model, oid, iid, rid, res)
    riid = base[3]
    if riid not in res:
        raise CodecError("no value for %s" % (base,))
    return encode_entry(RESOURCE_INSTANCE, riid, value_to_tlv_bytes(res[riid], _type_for(model, base, res[riid])))


# ---- decoding -------------------------------------------------------------------------------------------------

def _decode_resource(model, out, path, kind, ident, value):
    rpath = path + (ident,)
    if kind == RESOURCE:
        out[rpath] = tlv_bytes_to_value(value, model.type_of(rpath))
    elif kind == MULTIPLE_RESOURCE:
        for k, riid, v in parse_entries(value):
            if k != RESOURCE_INSTANCE:
                raise CodecError("multiple resource %s contains a %s" % (rpath, _NAMES[k]))
            out[rpath + (riid,)] = tlv_bytes_to_value(v, model.type_of(rpath))
    else:
        raise CodecError("expected a resource under %s, got a %s" % (path, _NAMES[kind]))


def _decode_instance(model, out, ipath, body):
    for kind, ident, value in parse_entries(body):
        _decode_resource(model, out, ipath, kind, ident, value)


def _put(out, path, value):
    if path in out:
        raise CodecError("TLV repeats %s" % (path,))
    out[path] = value


def decode(base, payload, model):
    base = tuple(base)
    if not base:
        raise CodecError("TLV needs at least an object in the path")
    entries = parse_entries(payload)
    out = {}
    scratch = {}
    if len(base) == 1:
        for kind, iid, body in entries:
            if kind != OBJECT_INSTANCE:
                raise CodecError("TLV for object %d must hold object instances, got a %s" % (base[0], _NAMES[kind]))
            scratch = {}
            _decode_instance(model, scratch, base + (iid,), body)
            for p, v in scratch.items():
                _put(out, p, v)
        return out
    if len(base) == 2:
        # Some clients wrap an instance's resources in an object-instance entry; accept it when the id matches.
        if len(entries) == 1 and entries[0][0] == OBJECT_INSTANCE:
            if entries[0][1] != base[1]:
                raise CodecError("TLV object instance %d, request was for %d" % (entries[0][1], base[1]))
            entries = parse_entries(entries[0][2])
        for kind, ident, value in entries:
            scratch = {}
            _decode_resource(model, scratch, base, kind, ident, value)
            for p, v in scratch.items():
                _put(out, p, v)
        return out
    if len(base) == 3:
        if len(entries) != 1 or entries[0][1] != base[2]:
            raise CodecError("TLV for resource %s must be one entry with id %d" % (base, base[2]))
        _decode_resource(model, out, base[:2], *entries[0])
        return out
    if len(entries) != 1 or entries[0][0] != RESOURCE_INSTANCE or entries[0][1] != base[3]:
        raise CodecError("TLV for resource instance %s must be one resource-instance entry" % (base,))
    out[base] = tlv_bytes_to_value(entries[0][2], model.type_of(base))
    return out
