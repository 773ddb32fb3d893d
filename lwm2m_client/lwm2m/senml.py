# SenML (RFC 8428) as LwM2M 1.1 uses it: one record per resource, names are paths ("bn" + "n" = "/3/0/0").
# CBOR labels: bn -2, n 0, v 2, vs 3, vb 4, vd 8. JSON uses the same names as strings; vd is base64url there.
import binascii
import json

from . import cbor

BN = -2
N = 0
V = 2
VS = 3
VB = 4
VD = 8


class SenMLError(ValueError):
    pass


def _cbor_value(rec, v):
    if isinstance(v, bool):
        rec[VB] = v
    elif isinstance(v, (int, float)):
        rec[V] = v
    elif isinstance(v, str):
        rec[VS] = v
    else:
        rec[VD] = bytes(v)


def encode_cbor(base, items):
    """base: "/3/0/"; items: [(name, value)] -> SenML-CBOR bytes."""
    recs = []
    for i, (name, value) in enumerate(items):
        rec = {BN: base} if i == 0 else {}
        rec[N] = name
        _cbor_value(rec, value)
        recs.append(rec)
    if not recs:
        recs.append({BN: base})
    return cbor.encode(recs)


def _b64url(b):
    return binascii.b2a_base64(b).rstrip(b"\n=").replace(b"+", b"-").replace(b"/", b"_").decode()


B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _unb64url(s):
    # a2b_base64 skips characters outside the alphabet ("AAEC, {QFBg" decoded): RFC 8428 vd is base64url
    # with the padding left out, checked here
    if len(s) % 4 == 1 or any(c not in B64URL for c in s.encode()):
        raise ValueError("not base64url")
    s = s.replace("-", "+").replace("_", "/")
    return binascii.a2b_base64(s + "=" * (-len(s) % 4))


def finite(v):
    """Is the number v finite? (NaN != NaN; inf - inf is NaN.) JSON and LwM2M text have no other numbers."""
    return v == v and v - v == 0.0


def encode_json(base, items):
    recs = []
    for i, (name, value) in enumerate(items):
        rec = {"bn": base} if i == 0 else {}
        rec["n"] = name
        if isinstance(value, bool):
            rec["vb"] = value
        elif isinstance(value, (int, float)):
            if not finite(value):
                # JSON has no such number (json.dumps would write the invalid token inf/nan): refused, so the
                # read answers an error rather than a pack no server parses; SenML-CBOR and TLV carry it
                raise SenMLError("%s%s is %r: SenML-JSON has no non-finite numbers (read it as SenML-CBOR)"
                                 % (base, name, value))
            rec["v"] = value
        elif isinstance(value, str):
            rec["vs"] = value
        else:
            rec["vd"] = _b64url(bytes(value))
        recs.append(rec)
    return json.dumps(recs).encode()


def _records(recs, keys):
    if not isinstance(recs, list):
        raise SenMLError("SenML pack is not an array")
    out = []
    base = ""
    kbn, kn, kv, kvs, kvb, kvd = keys
    for rec in recs:
        if not isinstance(rec, dict):
            raise SenMLError("SenML record is not a map")
        if kbn in rec:
            base = rec[kbn]
            if not isinstance(base, str):
                raise SenMLError("bn is not a string")
        name = rec.get(kn, "")
        if not isinstance(name, str):
            raise SenMLError("n is not a string")
        if kv in rec:
            value = rec[kv]
        elif kvs in rec:
            value = rec[kvs]
        elif kvb in rec:
            value = rec[kvb]
        elif "vlo" in rec:  # an object link "oid:iid" (LwM2M 1.1 §7.4.7: the label is the text "vlo")
            value = rec["vlo"]
        elif kvd in rec:
            value = rec[kvd]
            if isinstance(value, str):
                try:
                    value = _unb64url(value)
                except ValueError:
                    raise SenMLError("vd is not base64url")
        else:
            value = None
        out.append((base + name, value))
    return out


def decode_cbor(buf):
    """-> [(path string, value)]"""
    return _records(cbor.decode(buf), (BN, N, V, VS, VB, VD))


def decode_json(buf):
    from tinyml import strictjson  # loaded with the first SenML-JSON write, not with every client

    try:
        recs = strictjson.loads(buf, 8)  # a SenML pack is an array of maps of scalars: depth 2
    except ValueError as e:
        raise SenMLError(str(e))
    return _records(recs, ("bn", "n", "v", "vs", "vb", "vd"))
