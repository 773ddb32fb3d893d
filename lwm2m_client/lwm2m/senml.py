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


def encode_json(base, items):
    recs = []
    for i, (name, value) in enumerate(items):
        rec = {"bn": base} if i == 0 else {}
        rec["n"] = name
        if isinstance(value, bool):
            rec["vb"] = value
        elif isinstance(value, (int, float)):
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
    b = bytes(buf)
    if not cbor.utf8_ok(b):
        raise SenMLError("SenML-JSON is not UTF-8")
    # MicroPython's json.loads reads past bad escapes, missing commas and stray bytes (b'[{"n": "2"7}]' gives
    # [{"n": "2"}]): strict RFC 8259 is checked first, so a malformed pack is refused rather than misread
    if _ws(b, _value(b, _ws(b, 0), 0)) != len(b):
        raise SenMLError("invalid JSON: bytes after the value")
    try:
        recs = json.loads(b)
    except ValueError:
        raise SenMLError("invalid JSON")
    return _records(recs, ("bn", "n", "v", "vs", "vb", "vd"))


# ---- strict JSON syntax (RFC 8259), checked before json.loads ----

JSON_DEPTH = 8  # a SenML pack is an array of maps of scalars: depth 2


def _ws(b, i):
    while i < len(b) and b[i] in b" \t\n\r":
        i += 1
    return i


def _value(b, i, depth):
    """-> the index just past the JSON value at b[i], or SenMLError."""
    if i >= len(b):
        raise SenMLError("invalid JSON: truncated")
    c = b[i]
    if c == 0x22:
        return _string(b, i)
    if c == 0x5B or c == 0x7B:
        if depth >= JSON_DEPTH:
            raise SenMLError("invalid JSON: nested deeper than %d" % JSON_DEPTH)
        close = c + 2  # ] or }
        i = _ws(b, i + 1)
        if i < len(b) and b[i] == close:
            return i + 1
        while True:
            if c == 0x7B:
                if i >= len(b) or b[i] != 0x22:
                    raise SenMLError("invalid JSON: object key is not a string")
                i = _ws(b, _string(b, i))
                if i >= len(b) or b[i] != 0x3A:
                    raise SenMLError("invalid JSON: ':' expected")
                i = _ws(b, i + 1)
            i = _ws(b, _value(b, i, depth + 1))
            if i < len(b) and b[i] == close:
                return i + 1
            if i >= len(b) or b[i] != 0x2C:
                raise SenMLError("invalid JSON: ',' expected")
            i = _ws(b, i + 1)
    for lit in (b"true", b"false", b"null"):
        if b[i:i + len(lit)] == lit:
            return i + len(lit)
    return _number(b, i)


def _string(b, i):
    i += 1
    while i < len(b):
        c = b[i]
        if c == 0x22:
            return i + 1
        if c < 0x20:
            raise SenMLError("invalid JSON: control character in a string")
        if c == 0x5C:
            e = b[i + 1:i + 2]
            if e == b"u":
                v = _hex4(b, i + 2)
                if v < 0:
                    raise SenMLError("invalid JSON: bad \\u escape")
                if 0xD800 <= v <= 0xDFFF:
                    # MicroPython's json.loads keeps even a valid pair as two surrogates (text no UTF-8 encoder
                    # takes): characters beyond U+FFFF come as their UTF-8 bytes
                    raise SenMLError("invalid JSON: surrogate \\u escape (send the character as UTF-8)")
                i += 6
                continue
            if len(e) != 1 or e not in b'"\\/bfnrt':
                raise SenMLError("invalid JSON: bad escape")
        i += 2 if c == 0x5C else 1
    raise SenMLError("invalid JSON: unterminated string")


def _hex4(b, i):
    h = b[i:i + 4]
    if len(h) != 4 or any(x not in b"0123456789abcdefABCDEF" for x in h):
        return -1
    return int(h, 16)


def _number(b, i):
    if i < len(b) and b[i] == 0x2D:
        i += 1
    i = i + 1 if i < len(b) and b[i] == 0x30 else _digits(b, i)  # no leading zeros
    if i < len(b) and b[i] == 0x2E:
        i = _digits(b, i + 1)
    if i < len(b) and b[i] in b"eE":
        i += 1
        if i < len(b) and b[i] in b"+-":
            i += 1
        i = _digits(b, i)
    return i


def _digits(b, i):
    start = i
    while i < len(b) and 0x30 <= b[i] <= 0x39:
        i += 1
    if i == start:
        raise SenMLError("invalid JSON: bad number")
    return i
