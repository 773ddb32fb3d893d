# Block1/Block2 option values (RFC 7959 §2.2): NUM (up to 20 bits) << 4 | M << 3 | SZX, block size 2**(SZX+4).
# SZX 7 is reserved: a request carrying it gets 4.00 Bad Request.

MAX_NUM = (1 << 20) - 1


class BlockError(ValueError):
    pass


def decode(value):
    """Option value bytes (0-3) -> (num, more, szx). Raises BlockError for SZX 7 or an over-long value."""
    if len(value) > 3:
        raise BlockError("block option longer than 3 bytes")
    v = 0
    for b in value:
        v = (v << 8) | b
    szx = v & 7
    if szx == 7:
        raise BlockError("block SZX 7 is reserved")
    return v >> 4, bool(v & 8), szx


def decode_for(value, n):
    """decode() for a request carrying an n-byte block: BlockError too when n does not fit (a block with M set is
    exactly the size, the last one at most the size)."""
    num, more, szx = decode(value)
    size = 1 << (szx + 4)
    if (more and n != size) or n > size:
        raise BlockError("block of %d bytes with size %d" % (n, size))
    return num, more, szx


def encode(num, more, szx):
    if not 0 <= szx <= 6:
        raise BlockError("SZX %d out of range 0..6" % szx)
    if not 0 <= num <= MAX_NUM:
        raise BlockError("block number %d out of range" % num)
    v = (num << 4) | (8 if more else 0) | szx
    if v == 0:
        return b""
    if v < 0x100:
        return bytes((v,))
    if v < 0x10000:
        return bytes((v >> 8, v & 0xFF))
    return bytes((v >> 16, (v >> 8) & 0xFF, v & 0xFF))


def size(szx):
    return 1 << (szx + 4)


def szx_for(block_bytes):
    """Largest SZX whose block size is <= block_bytes (16..1024)."""
    szx = 6
    while szx > 0 and (1 << (szx + 4)) > block_bytes:
        szx -= 1
    return szx
