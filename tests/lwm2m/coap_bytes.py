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


def register(mid, ep="raw-dev", payload=b"</3/0>,</5/0>", extra=(), token=b"\x01\x02"):
    opts = [(11, b"rd"), (12, b"\x28"), (15, b"ep=" + ep.encode()), (15, b"lt=60"), (15, b"lwm2m=1.1")] + list(extra)
    return message(POST, mid, token, opts, payload)


def parse_header(data):
    return {"type": (data[0] >> 4) & 3, "tkl": data[0] & 15, "code": "%d.%02d" % (data[1] >> 5, data[1] & 31),
            "mid": data[2] << 8 | data[3]}


def parse(data):
    """A datagram -> dict(type, code, mid, token, options {number: [bytes, ...]}, payload). Checks every length
    (a test that receives garbage fails with ValueError rather than reading past the end)."""
    if len(data) < 4 or len(data) < 4 + (data[0] & 15):
        raise ValueError("short datagram")
    out = parse_header(data)
    tkl = out["tkl"]
    out["token"], out["options"], out["payload"] = data[4:4 + tkl], {}, b""
    pos, number = 4 + tkl, 0
    while pos < len(data):
        if data[pos] == 0xFF:
            out["payload"] = data[pos + 1:]
            break
        delta, length = data[pos] >> 4, data[pos] & 15
        pos += 1
        ext = []
        for nib in (delta, length):
            size = {13: 1, 14: 2}.get(nib, 0)
            if pos + size > len(data):
                raise ValueError("option header past end")
            ext.append(nib if not size else int.from_bytes(data[pos:pos + size], "big") + (13 if size == 1 else 269))
            pos += size
        number += ext[0]
        if pos + ext[1] > len(data):
            raise ValueError("option value past end")
        out["options"].setdefault(number, []).append(data[pos:pos + ext[1]])
        pos += ext[1]
    return out


def uint(req, number):
    """The first value of a uint option, or None."""
    values = req["options"].get(number)
    return int.from_bytes(values[0], "big") if values else None


def answer(req, code, options=(), payload=b""):
    """The piggybacked ACK answering request `req` (parsed), with code like 0x45 (2.05)."""
    return message(code, req["mid"], req["token"], options, payload, mtype=ACK)


def uint_bytes(value):
    return value.to_bytes((value.bit_length() + 7) // 8, "big")
