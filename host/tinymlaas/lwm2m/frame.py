"""Strict CoAP datagram checks that run before aiocoap sees a datagram (RFC 7252 §3, §4.2, §5.4).

aiocoap's decoder is lenient (it accepts token lengths 9-15, a payload marker with no payload, and logs and
drops what it cannot parse). A device-management server facing the internet must instead reject malformed
messages in a defined way without creating any state (wakaama#530), so every datagram first goes through
`check()`, a pure function:

* too short for a header, or version != 1        -> drop silently (no Message ID to answer; §3, §4.2)
* format error (token length 9-15, reserved nibble 15, extended bytes or value past the end, option number
  past 65535, payload marker without payload, Empty message with token/options/payload, reserved code class)
                                                   -> Reset if Confirmable, else drop (§4.2, §4.3)
* request with an unrecognised critical option, or a critical option whose length is out of range
                                                   -> 4.02 Bad Option, piggybacked (CON) or NON (§5.4.1)
* elective option with out-of-range length         -> the option is removed, the rest is delivered (§5.4.3)
* anything else                                    -> accepted unchanged

Every read is preceded by a length check; nothing here allocates more than the datagram's size.
"""

from dataclasses import dataclass

CON, NON, ACK, RST = 0, 1, 2, 3

# Option number -> (min length, max length) for the options this server understands (RFC 7252 §5.10,
# RFC 7641, RFC 7959, RFC 7967, RFC 8613, RFC 9175, RFC 9177).
KNOWN_OPTIONS = {
    1: (0, 8),  # If-Match
    3: (1, 255),  # Uri-Host
    4: (1, 8),  # ETag
    5: (0, 0),  # If-None-Match
    6: (0, 3),  # Observe
    7: (0, 2),  # Uri-Port
    8: (0, 255),  # Location-Path
    9: (0, 255),  # OSCORE
    11: (0, 255),  # Uri-Path
    12: (0, 2),  # Content-Format
    14: (0, 4),  # Max-Age
    15: (0, 255),  # Uri-Query
    17: (0, 2),  # Accept
    19: (0, 3),  # Q-Block1 (RFC 9177; taken off the socket by qblock.py before aiocoap)
    20: (0, 255),  # Location-Query
    23: (0, 3),  # Block2
    27: (0, 3),  # Block1
    28: (0, 4),  # Size2
    31: (0, 3),  # Q-Block2
    35: (1, 1034),  # Proxy-Uri
    39: (1, 255),  # Proxy-Scheme
    60: (0, 4),  # Size1
    252: (1, 40),  # Echo
    258: (0, 1),  # No-Response
    292: (0, 8),  # Request-Tag
}


@dataclass(frozen=True)
class Verdict:
    action: str  # "accept", "drop", "reset", "reply"
    reason: str = ""
    data: bytes = b""  # accept: the (possibly option-stripped) datagram; reset/reply: the datagram to send


def _is_critical(number):
    return number & 1 == 1


def reset(mid):
    """The Reset (empty RST) that rejects the message with this Message ID."""
    return bytes([0x70, 0x00, mid >> 8, mid & 0xFF])


def _bad_option(mtype, mid, token):
    # Piggybacked ACK for a CON request; a NON request gets a NON response with a fresh-enough MID (its own).
    t = ACK if mtype == CON else NON
    return bytes([0x40 | (t << 4) | len(token), 0x82, mid >> 8, mid & 0xFF]) + token


def parse_options(data, pos):
    """Walk the options from `pos`. Returns (options [(number, start, end, value_start)], payload_start) or
    raises ValueError with the reason. payload_start == len(data) when there is no payload."""
    end = len(data)
    number = 0
    options = []
    while pos < end:
        first = data[pos]
        if first == 0xFF:
            if pos + 1 == end:
                raise ValueError("payload marker with empty payload")
            return options, pos + 1
        start = pos
        pos += 1
        delta, length = first >> 4, first & 0x0F
        if delta == 15 or length == 15:
            raise ValueError("reserved option nibble 15")
        vals = []
        for nib in (delta, length):
            if nib == 13:
                if pos + 1 > end:
                    raise ValueError("extended option byte past end")
                vals.append(data[pos] + 13)
                pos += 1
            elif nib == 14:
                if pos + 2 > end:
                    raise ValueError("extended option bytes past end")
                vals.append((data[pos] << 8 | data[pos + 1]) + 269)
                pos += 2
            else:
                vals.append(nib)
        number += vals[0]
        if number > 0xFFFF:
            raise ValueError("option number past 65535")
        if vals[1] > end - pos:
            raise ValueError("option %d value of %d bytes past end" % (number, vals[1]))
        options.append((number, start, pos + vals[1], pos))
        pos += vals[1]
    return options, end


def check(data):
    data = bytes(data)
    if len(data) < 4:
        return Verdict("drop", "shorter than a CoAP header")
    version, mtype, tkl = data[0] >> 6, (data[0] >> 4) & 3, data[0] & 0x0F
    code, mid = data[1], data[2] << 8 | data[3]
    if version != 1:
        return Verdict("drop", "CoAP version %d" % version)

    def format_error(reason):
        if mtype == CON:
            return Verdict("reset", reason, reset(mid))
        return Verdict("drop", reason)

    if tkl > 8:
        return format_error("token length %d" % tkl)
    if 4 + tkl > len(data):
        return format_error("token past end")
    cls = code >> 5
    if code == 0:
        if len(data) != 4 or tkl:
            return format_error("Empty message with content")
        return Verdict("accept", "", data)
    if cls in (1, 6, 7):
        return format_error("reserved code class %d" % cls)
    try:
        options, payload_start = parse_options(data, 4 + tkl)
    except ValueError as e:
        return format_error(str(e))
    token = data[4 : 4 + tkl]
    is_request = cls == 0
    strip = []
    for number, start, vend, vstart in options:
        bounds = KNOWN_OPTIONS.get(number)
        ok = bounds is not None and bounds[0] <= vend - vstart <= bounds[1]
        if ok:
            continue
        if _is_critical(number):
            why = "unrecognised critical option %d" % number if bounds is None else "option %d length %d" % (number, vend - vstart)
            if is_request and mtype in (CON, NON):
                return Verdict("reply", why, _bad_option(mtype, mid, token))
            return format_error(why)  # a response we cannot understand is rejected (§5.4.1)
        strip.append((number, start, vend))
    if strip:
        return Verdict("accept", "stripped elective options %s" % [s[0] for s in strip], _strip(data, tkl, options, strip, payload_start))
    return Verdict("accept", "", data)


def _strip(data, tkl, options, strip, payload_start):
    """Re-encode the option list without the stripped options (deltas change, so it cannot be sliced out)."""
    drop = {(s[1], s[2]) for s in strip}
    out = bytearray(data[: 4 + tkl])
    prev = 0
    for number, start, vend, vstart in options:
        if (start, vend) in drop:
            continue
        out += _option_header(number - prev, vend - vstart) + data[vstart:vend]
        prev = number
    if payload_start < len(data):
        out += b"\xff" + data[payload_start:]
    return bytes(out)


def _nibble(v):
    if v < 13:
        return v, b""
    if v < 269:
        return 13, bytes([v - 13])
    return 14, (v - 269).to_bytes(2, "big")


def _option_header(delta, length):
    dn, dx = _nibble(delta)
    ln, lx = _nibble(length)
    return bytes([dn << 4 | ln]) + dx + lx
