# A small CBOR (RFC 8949) encoder/decoder: the subset SenML-CBOR needs (integers, byte and text strings, arrays,
# maps with integer or text keys, floats, true/false/null). Definite lengths only. The decoder checks every length against the bytes left
# before allocating, and bounds nesting, so hostile input cannot make it allocate more than the input size.
import struct

MAX_DEPTH = 4


class CBORError(ValueError):
    pass


def _head(out, major, n):
    if n < 24:
        out.append((major << 5) | n)
    elif n < 0x100:
        out.append((major << 5) | 24)
        out.append(n)
    elif n < 0x10000:
        out.append((major << 5) | 25)
        out += struct.pack(">H", n)
    elif n < 0x100000000:
        out.append((major << 5) | 26)
        out += struct.pack(">I", n)
    else:
        out.append((major << 5) | 27)
        out += struct.pack(">Q", n)


def encode(value, out=None):
    if out is None:
        out = bytearray()
    if value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif isinstance(value, int):
        if not -0x10000000000000000 <= value < 0x10000000000000000:
            # beyond a CBOR head's 64 bits (MicroPython's struct.pack would wrap it silently)
            raise CBORError("integer %d does not fit 64 bits" % value)
        if value >= 0:
            _head(out, 0, value)
        else:
            _head(out, 1, -1 - value)
    elif isinstance(value, float):
        out.append(0xFB)
        out += struct.pack(">d", value)
    elif isinstance(value, str):
        b = value.encode()
        _head(out, 3, len(b))
        out += b
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _head(out, 2, len(value))
        out += value
    elif isinstance(value, (list, tuple)):
        _head(out, 4, len(value))
        for v in value:
            encode(v, out)
    elif isinstance(value, dict):
        _head(out, 5, len(value))
        for k, v in value.items():
            encode(k, out)
            encode(v, out)
    else:
        raise CBORError("cannot encode %s" % type(value))
    return out


def _half(h):
    # IEEE 754 binary16 -> float
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        v = mant * 2.0 ** -24
    elif exp == 31:
        v = float("inf") if mant == 0 else float("nan")
    else:
        v = (mant + 1024) * 2.0 ** (exp - 25)
    return -v if h & 0x8000 else v


def _item(buf, pos, depth):
    end = len(buf)
    if pos >= end:
        raise CBORError("truncated")
    ib = buf[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 31
    if ai < 24:
        n = ai
    elif ai <= 27:
        k = 1 << (ai - 24)
        if pos + k > end:
            raise CBORError("truncated argument")
        n = 0
        for i in range(k):
            n = (n << 8) | buf[pos + i]
        pos += k
    else:
        raise CBORError("unsupported additional info %d" % ai)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 2 or major == 3:
        if n > end - pos:
            raise CBORError("string length %d past end" % n)
        b = bytes(buf[pos:pos + n])
        if major == 3:
            from tinyml.strictjson import utf8_ok  # loaded at the first text string, not with every client

            if not utf8_ok(b):
                raise CBORError("invalid UTF-8")
            b = b.decode()
        return b, pos + n
    if major == 4 or major == 5:
        if depth >= MAX_DEPTH:
            raise CBORError("nesting deeper than %d" % MAX_DEPTH)
        # each element takes at least one byte: reject counts the input cannot hold before allocating
        if n > end - pos:
            raise CBORError("container count %d past end" % n)
        if major == 4:
            out = []
            for _ in range(n):
                v, pos = _item(buf, pos, depth + 1)
                out.append(v)
            return out, pos
        out = {}
        for _ in range(n):
            k, pos = _item(buf, pos, depth + 1)
            # SenML labels are integers or text; refusing other keys also keeps b"x" and "x" (equal hashes in
            # MicroPython) from ever meeting in one dict
            if not isinstance(k, (int, str)) or isinstance(k, bool):
                raise CBORError("map key must be an integer or text")
            v, pos = _item(buf, pos, depth + 1)
            out[k] = v
        return out, pos
    if major == 6:
        if depth >= MAX_DEPTH:
            raise CBORError("nesting deeper than %d" % MAX_DEPTH)
        return _item(buf, pos, depth + 1)  # tags carry no meaning for SenML; the tagged item is the value
    # major 7
    if ai == 20:
        return False, pos
    if ai == 21:
        return True, pos
    if ai == 22 or ai == 23:
        return None, pos
    if ai == 25:
        return _half(n), pos
    if ai == 26:
        return struct.unpack(">f", struct.pack(">I", n))[0], pos
    if ai == 27:
        return struct.unpack(">d", struct.pack(">Q", n))[0], pos
    raise CBORError("unsupported simple value %d" % n)


def decode(buf):
    v, pos = _item(buf, 0, 0)
    if pos != len(buf):
        raise CBORError("%d bytes after the item" % (len(buf) - pos))
    return v
