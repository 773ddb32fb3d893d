# OMA LwM2M TLV (content format 11542). Type byte: bits 7-6 identifier kind, bit 5 16-bit identifier,
# bits 4-3 length field size (0: length in bits 2-0, 1/2/3: 8/16/24-bit length follows).
import struct

OBJECT_INSTANCE = 0
RESOURCE_INSTANCE = 1
MULTIPLE_RESOURCE = 2
RESOURCE = 3


class TLVError(ValueError):
    pass


def encode(kind, ident, value, out=None):
    if out is None:
        out = bytearray()
    n = len(value)
    t = kind << 6
    if ident > 0xFF:
        t |= 0x20
    if n < 8:
        t |= n
        lb = b""
    elif n < 0x100:
        t |= 0x08
        lb = bytes((n,))
    elif n < 0x10000:
        t |= 0x10
        lb = struct.pack(">H", n)
    elif n < 0x1000000:
        t |= 0x18
        lb = struct.pack(">I", n)[1:]
    else:
        raise TLVError("value too long")
    out.append(t)
    out += struct.pack(">H", ident) if ident > 0xFF else bytes((ident,))
    out += lb
    out += value
    return out


def decode(buf):
    """-> list of (kind, id, value memoryview). Nested levels are returned as raw values for the caller."""
    items = []
    pos = 0
    end = len(buf)
    mv = memoryview(buf)
    while pos < end:
        t = buf[pos]
        pos += 1
        idlen = 2 if t & 0x20 else 1
        lenlen = (t >> 3) & 3
        if pos + idlen + lenlen > end:
            raise TLVError("TLV header past end")
        ident = buf[pos] if idlen == 1 else (buf[pos] << 8) | buf[pos + 1]
        pos += idlen
        if lenlen == 0:
            n = t & 7
        else:
            n = 0
            for i in range(lenlen):
                n = (n << 8) | buf[pos + i]
            pos += lenlen
        if n > end - pos:
            raise TLVError("TLV value length %d past end" % n)
        items.append((t >> 6, ident, mv[pos:pos + n]))
        pos += n
    return items


def int_bytes(v):
    for fmt, lo in ((">b", -0x80), (">h", -0x8000), (">i", -0x80000000)):
        if lo <= v < -lo:
            return struct.pack(fmt, v)
    return struct.pack(">q", v)


def int_value(b):
    n = len(b)
    if n not in (1, 2, 4, 8):
        raise TLVError("integer of %d bytes" % n)
    v = 0
    for x in b:
        v = (v << 8) | x
    if b[0] & 0x80:
        v -= 1 << (8 * n)
    return v
