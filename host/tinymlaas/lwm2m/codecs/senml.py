"""SenML-JSON (110) and SenML-CBOR (112) as LwM2M 1.1 §7.4.4/§7.4.5 use them.

Both share one record model: {path: value} <-> a list of SenML records with base name "bn" and name "n",
values in "v" (number), "vs" (string), "vb" (boolean), "vd" (opaque: base64url in JSON, a byte string in CBOR)
and "vlo" (object link "oid:iid"). The resolved name (bn + n) must be an LwM2M path under the request path.
"""

import base64
import binascii
import io
import json
import math

import cbor2

from .. import paths as P
from .. import values as V
from .errors import CodecError

# SenML-CBOR labels (RFC 8428 §6); "vlo" has no integer label and is sent as a text key.
CBOR_LABELS = {"bn": -2, "bt": -3, "n": 0, "v": 2, "vs": 3, "vb": 4, "vd": 8, "t": 6, "vlo": "vlo"}
CBOR_KEYS = {v: k for k, v in CBOR_LABELS.items()}
VALUE_KEYS = ("v", "vs", "vb", "vd", "vlo")


def _value_field(value, typ):
    try:
        V.check_value(typ, value)
    except ValueError as e:
        raise CodecError(str(e)) from None
    if typ in (V.INTEGER, V.UNSIGNED, V.TIME, V.FLOAT):
        return "v", value
    if typ == V.BOOLEAN:
        return "vb", value
    if typ == V.OPAQUE:
        return "vd", bytes(value)
    if typ == V.OBJLNK:
        return "vlo", str(value)
    if typ in (V.STRING, V.CORELNK):
        return "vs", value
    raise CodecError("type %s has no SenML value" % typ)


def to_records(base, values, model):
    """{path: value} -> list of SenML records (dicts with SenML key names); opaque values stay bytes."""
    base = tuple(base)
    records = []
    items = sorted(values.items())
    for path, _ in items:
        if path[: len(base)] != base or len(path) < 3:
            raise CodecError("value path %s is not a resource under %s" % (path, base))
    if len(items) == 1 and items[0][0] == base:
        path, value = items[0]
        key, field = _value_field(value, model.type_of(path) or V.guess_type(value))
        return [{"bn": P.fmt(base), key: field}]
    prefix = P.fmt(base).rstrip("/") + "/"
    for i, (path, value) in enumerate(items):
        key, field = _value_field(value, model.type_of(path) or V.guess_type(value))
        rec = {"bn": prefix} if i == 0 else {}
        rec["n"] = "/".join(str(x) for x in path[len(base):])
        rec[key] = field
        records.append(rec)
    return records


def _typed(path, key, field, model):
    typ = model.type_of(path)
    if key == "v":
        if isinstance(field, bool) or not isinstance(field, (int, float)):
            raise CodecError("%s: 'v' must be a number" % P.fmt(path))
        if typ in (V.INTEGER, V.UNSIGNED, V.TIME):
            if isinstance(field, float):
                if not field.is_integer():
                    raise CodecError("%s is %s, got %r" % (P.fmt(path), typ, field))
                field = int(field)
            try:
                V.check_value(typ, field)
            except ValueError as e:
                raise CodecError(str(e)) from None
            return field
        if typ == V.FLOAT:
            return float(field)
        if typ is None:
            return field
    elif key == "vs":
        if not isinstance(field, str):
            raise CodecError("%s: 'vs' must be a string" % P.fmt(path))
        if typ in (None, V.STRING, V.CORELNK):
            return field
    elif key == "vb":
        if not isinstance(field, bool):
            raise CodecError("%s: 'vb' must be a boolean" % P.fmt(path))
        if typ in (None, V.BOOLEAN):
            return field
    elif key == "vd":
        if typ in (None, V.OPAQUE):
            return field
    elif key == "vlo":
        if not isinstance(field, str):
            raise CodecError("%s: 'vlo' must be a string" % P.fmt(path))
        parts = field.split(":")
        if len(parts) != 2 or not all(p.isdigit() and p.isascii() and len(p) <= 5 for p in parts):
            raise CodecError("%s: 'vlo' must be 'oid:iid'" % P.fmt(path))
        try:
            link = V.ObjLink(int(parts[0]), int(parts[1]))
        except ValueError as e:
            raise CodecError(str(e)) from None
        if typ in (None, V.OBJLNK):
            return link
    raise CodecError("%s is %s but the record carries '%s'" % (P.fmt(path), typ, key))


def from_records(base, records, model):
    """List of SenML records -> {path: value}; `vd` fields must already be bytes."""
    base = tuple(base)
    if not isinstance(records, list):
        raise CodecError("SenML pack must be an array")
    out = {}
    bn = ""
    for rec in records:
        if not isinstance(rec, dict):
            raise CodecError("SenML record must be a map")
        if "bn" in rec:
            if not isinstance(rec["bn"], str):
                raise CodecError("SenML 'bn' must be a string")
            bn = rec["bn"]
        n = rec.get("n", "")
        if not isinstance(n, str):
            raise CodecError("SenML 'n' must be a string")
        present = [k for k in VALUE_KEYS if k in rec]
        if len(present) != 1:
            raise CodecError("SenML record %r must carry exactly one value" % ((bn + n)[:60],))
        try:
            path = P.parse(bn + n)
        except P.PathError as e:
            raise CodecError(str(e)) from None
        if len(path) < 3 or path[: len(base)] != base:
            raise CodecError("SenML name %s is not a resource under %s" % (bn + n, P.fmt(base)))
        if path in out:
            raise CodecError("SenML pack repeats %s" % (bn + n))
        out[path] = _typed(path, present[0], rec[present[0]], model)
    return out


# ---- SenML-JSON ----------------------------------------------------------------------------------------------

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text):
    if not isinstance(text, str) or not text.isascii():
        raise CodecError("'vd' must be base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CodecError("'vd' is not base64url") from None


def encode_json(base, values, model):
    records = to_records(base, values, model)
    for r in records:
        if "vd" in r:
            r["vd"] = _b64url(r["vd"])
        if isinstance(r.get("v"), float) and not math.isfinite(r["v"]):
            # JSON has no such number (the device refuses it the same way); SenML-CBOR carries it
            raise CodecError("non-finite float %r has no SenML-JSON form (use SenML-CBOR)" % r["v"])
    return json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _reject_constant(name):
    raise CodecError("SenML-JSON number %s is not allowed" % name)


def _finite_number(text):
    # 1e999 (or 400 digits) is no double: refused as NaN and Infinity are, as the device's strictjson does
    if not math.isfinite(float(text)):
        raise CodecError("SenML-JSON number %s... is beyond a double" % text[:12])
    return float(text) if any(c in text for c in ".eE") else int(text)


def decode_json(base, payload, model):
    try:
        records = json.loads(bytes(payload).decode("utf-8"), parse_constant=_reject_constant,
                             parse_float=_finite_number, parse_int=_finite_number)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CodecError("SenML-JSON does not parse: %s" % e) from None
    if isinstance(records, list):
        for r in records:
            if isinstance(r, dict) and "vd" in r:
                r["vd"] = _unb64url(r["vd"])
    return from_records(base, records, model)


# ---- SenML-CBOR ----------------------------------------------------------------------------------------------

def encode_cbor(base, values, model):
    records = [{CBOR_LABELS[k]: v for k, v in r.items()} for r in to_records(base, values, model)]
    return cbor2.dumps(records)


def decode_cbor(base, payload, model):
    data = bytes(payload)
    stream = io.BytesIO(data)
    try:
        raw = cbor2.CBORDecoder(stream).decode()
    except Exception as e:  # cbor2 raises several types (CBORDecodeError, ValueError, RecursionError...)
        raise CodecError("SenML-CBOR does not parse: %s" % type(e).__name__) from None
    if stream.tell() != len(data):  # one data item is the whole payload (RFC 8949 §5.1): bytes after it are junk
        raise CodecError("SenML-CBOR has %d bytes after its pack" % (len(data) - stream.tell()))
    if not isinstance(raw, list):
        raise CodecError("SenML pack must be an array")
    records = []
    for r in raw:
        if not isinstance(r, dict):
            raise CodecError("SenML record must be a map")
        rec = {}
        for k, v in r.items():
            try:
                name = CBOR_KEYS.get(k)
            except TypeError:  # unhashable key cannot be a SenML label
                name = None
            if name is None:
                continue  # unknown labels are ignored (RFC 8428 §4.4 except those ending in '_')
            rec[name] = v
        if "vd" in rec and not isinstance(rec["vd"], bytes):
            raise CodecError("SenML-CBOR 'vd' must be a byte string")
        records.append(rec)
    return from_records(base, records, model)
