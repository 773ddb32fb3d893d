"""Hand-assembled CoAP datagrams for tests (independent of aiocoap's encoder)."""

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4


def option(delta, value):
    def nib(v):
        if v < 13:
            return v, b""
        if v < 269:
            return 13, bytes([v - 13])
        return 14, (v - 269).to_bytes(2, "big")

    dn, dx = nib(delta)
    ln, lx = nib(len(value))
    return bytes([dn << 4 | ln]) + dx + lx + value


def message(code, mid, token=b"", options=(), payload=b"", mtype=CON):
    """options: [(number, bytes)] in any order."""
    out = bytearray([0x40 | mtype << 4 | len(token), code, mid >> 8, mid & 0xFF]) + token
    prev = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        out += option(number - prev, value)
        prev = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def register(mid, ep="raw-dev", payload=b"</3/0>,</5/0>", extra=()):
    opts = [(11, b"rd"), (12, b"\x28"), (15, b"ep=" + ep.encode()), (15, b"lt=60"), (15, b"lwm2m=1.1")] + list(extra)
    return message(POST, mid, b"\x01\x02", opts, payload)


def parse_header(data):
    return {"type": (data[0] >> 4) & 3, "tkl": data[0] & 15, "code": "%d.%02d" % (data[1] >> 5, data[1] & 31),
            "mid": data[2] << 8 | data[3]}
