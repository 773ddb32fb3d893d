"""text/plain (0) and application/octet-stream (42): one resource (or resource instance) value."""

from .. import values as V
from .errors import CodecError
from .scalar import text_to_value, value_to_text


def _single(base, values):
    if len(base) < 3:
        raise CodecError("text/plain and opaque carry a single resource, not %d-level path" % len(base))
    if list(values) != [base]:
        raise CodecError("text/plain and opaque carry exactly the value at the request path")
    return values[base]


def encode_text(base, values, model):
    value = _single(base, values)
    typ = model.type_of(base) or V.guess_type(value)
    if typ == V.OPAQUE:
        raise CodecError("opaque resources are sent as application/octet-stream, not text")
    return value_to_text(value, typ).encode("utf-8")


def decode_text(base, payload, model):
    if len(base) < 3:
        raise CodecError("text/plain payload for a %d-level path" % len(base))
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("text/plain payload is not UTF-8") from None
    return {base: text_to_value(text, model.type_of(base))}


def encode_opaque(base, values, model):
    value = _single(base, values)
    if not isinstance(value, (bytes, bytearray)):
        raise CodecError("application/octet-stream needs bytes, got %s" % type(value).__name__)
    return bytes(value)


def decode_opaque(base, payload, model):
    if len(base) < 3:
        raise CodecError("opaque payload for a %d-level path" % len(base))
    typ = model.type_of(base)
    if typ not in (None, V.OPAQUE):
        raise CodecError("resource %s is %s, not Opaque" % (base, typ))
    return {base: bytes(payload)}
