"""LwM2M content-format codecs. Pure functions of bytes and values: no CoAP, no sockets.

    encode(fmt, base_path, {path: value}, model) -> bytes
    decode(fmt, base_path, payload, model) -> {path: value}

Paths are tuples ((3, 0, 1) is /3/0/1). `model` is an `objects.Model` that types values; resources it does not
know are decoded as naturally as the format allows (TLV: raw bytes).
"""

from . import linkformat, plain, senml, tlv
from .errors import CodecError

TEXT = 0
LINK_FORMAT = 40
OPAQUE = 42
SENML_JSON = 110
SENML_CBOR = 112
TLV = 11542

NAMES = {TEXT: "text", LINK_FORMAT: "link", OPAQUE: "opaque", SENML_JSON: "senml-json", SENML_CBOR: "senml-cbor", TLV: "tlv"}
BY_NAME = {v: k for k, v in NAMES.items()}

_ENCODERS = {
    TEXT: plain.encode_text,
    OPAQUE: plain.encode_opaque,
    TLV: tlv.encode,
    SENML_JSON: senml.encode_json,
    SENML_CBOR: senml.encode_cbor,
}
_DECODERS = {
    TEXT: plain.decode_text,
    OPAQUE: plain.decode_opaque,
    TLV: tlv.decode,
    SENML_JSON: senml.decode_json,
    SENML_CBOR: senml.decode_cbor,
}
DATA_FORMATS = tuple(_ENCODERS)


def content_format(fmt):
    """Accept 11542 or "tlv" and return the number."""
    if isinstance(fmt, str):
        if fmt not in BY_NAME:
            raise CodecError("unknown content format %r (known: %s)" % (fmt, ", ".join(BY_NAME)))
        return BY_NAME[fmt]
    return fmt


def encode(fmt, base, values, model):
    fmt = content_format(fmt)
    if fmt not in _ENCODERS:
        raise CodecError("content format %s carries no resource values" % fmt)
    return _ENCODERS[fmt](tuple(base), {tuple(k): v for k, v in values.items()}, model)


def decode(fmt, base, payload, model):
    fmt = content_format(fmt)
    if fmt not in _DECODERS:
        raise CodecError("content format %s is not a resource-value format" % fmt)
    return _DECODERS[fmt](tuple(base), payload, model)


__all__ = ["CodecError", "encode", "decode", "linkformat", "content_format", "TEXT", "LINK_FORMAT", "OPAQUE",
           "SENML_JSON", "SENML_CBOR", "TLV", "DATA_FORMATS"]
