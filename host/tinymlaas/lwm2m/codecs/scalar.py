"""Typed scalar values as text (text/plain, SenML strings) and as TLV value bytes."""

import base64
import binascii
import math
import re
import struct

from .. import values as V
from .errors import CodecError

_INT_RE = re.compile(r"-?[0-9]+\Z")
_UINT_RE = re.compile(r"[0-9]+\Z")
_FLOAT_RE = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\Z")
_OBJLNK_RE = re.compile(r"([0-9]{1,5}):([0-9]{1,5})\Z")


def _int_in_range(text, typ):
    v = int(text)
    try:
        V.check_value(typ, v)
    except ValueError as e:
        raise CodecError(str(e)) from None
    return v


def text_to_value(text, typ):
    """Text of one resource value -> Python value of LwM2M type `typ` (None type: the text itself)."""
    if typ in (V.INTEGER, V.TIME):
        if not _INT_RE.match(text):
            raise CodecError("not an integer: %r" % text[:40])
        return _int_in_range(text, typ)
    if typ == V.UNSIGNED:
        if not _UINT_RE.match(text):
            raise CodecError("not an unsigned integer: %r" % text[:40])
        return _int_in_range(text, typ)
    if typ == V.FLOAT:
        if not _FLOAT_RE.match(text):
            raise CodecError("not a float: %r" % text[:40])
        return float(text)
    if typ == V.BOOLEAN:
        if text not in ("0", "1"):
            raise CodecError("boolean must be '0' or '1', got %r" % text[:40])
        return text == "1"
    if typ == V.OBJLNK:
        m = _OBJLNK_RE.match(text)
        if not m or int(m.group(1)) > 0xFFFF or int(m.group(2)) > 0xFFFF:
            raise CodecError("not an object link 'oid:iid': %r" % text[:40])
        return V.ObjLink(int(m.group(1)), int(m.group(2)))
    if typ == V.OPAQUE:
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise CodecError("opaque value in text is not base64") from None
    return text


def value_to_text(value, typ):
    _check(typ, value)
    if typ == V.BOOLEAN:
        return "1" if value else "0"
    if typ == V.FLOAT:
        if not math.isfinite(value):
            raise CodecError("non-finite float %r has no text form" % value)
        return repr(value)
    if typ == V.OPAQUE:
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def _check(typ, value):
    try:
        V.check_value(typ, value)
    except ValueError as e:
        raise CodecError(str(e)) from None


def value_to_tlv_bytes(value, typ):
    """Value bytes of a TLV entry (LwM2M 1.1 §7.4.3.2: ints use the shortest of 1/2/4/8 bytes)."""
    _check(typ, value)
    if typ in (V.INTEGER, V.TIME):
        for n in (1, 2, 4, 8):
            if -(1 << (8 * n - 1)) <= value < (1 << (8 * n - 1)):
                return value.to_bytes(n, "big", signed=True)
    if typ == V.UNSIGNED:
        for n in (1, 2, 4, 8):
            if value < (1 << (8 * n)):
                return value.to_bytes(n, "big")
    if typ == V.FLOAT:
        single = struct.pack(">f", value) if abs(value) <= 3.4028234663852886e38 or not math.isfinite(value) else None
        if single is not None and (struct.unpack(">f", single)[0] == value or math.isnan(value)):
            return single
        return struct.pack(">d", value)
    if typ == V.BOOLEAN:
        return b"\x01" if value else b"\x00"
    if typ == V.OBJLNK:
        return struct.pack(">HH", value.object_id, value.instance_id)
    if typ in (V.STRING, V.CORELNK):
        return value.encode("utf-8")
    if typ == V.OPAQUE:
        return bytes(value)
    raise CodecError("type %s has no TLV value" % typ)


def tlv_bytes_to_value(data, typ):
    """TLV value bytes -> Python value; `typ` None (resource unknown to the model) gives the raw bytes."""
    n = len(data)
    if typ in (V.INTEGER, V.TIME):
        if n not in (1, 2, 4, 8):
            raise CodecError("TLV integer of %d bytes (must be 1, 2, 4 or 8)" % n)
        return int.from_bytes(data, "big", signed=True)
    if typ == V.UNSIGNED:
        if n not in (1, 2, 4, 8):
            raise CodecError("TLV unsigned integer of %d bytes (must be 1, 2, 4 or 8)" % n)
        return int.from_bytes(data, "big")
    if typ == V.FLOAT:
        if n == 4:
            return struct.unpack(">f", data)[0]
        if n == 8:
            return struct.unpack(">d", data)[0]
        raise CodecError("TLV float of %d bytes (must be 4 or 8)" % n)
    if typ == V.BOOLEAN:
        if data not in (b"\x00", b"\x01"):
            raise CodecError("TLV boolean must be one byte 0 or 1")
        return data == b"\x01"
    if typ == V.OBJLNK:
        if n != 4:
            raise CodecError("TLV object link of %d bytes (must be 4)" % n)
        return V.ObjLink(*struct.unpack(">HH", data))
    if typ in (V.STRING, V.CORELNK):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError("TLV string is not UTF-8") from None
    return bytes(data)
