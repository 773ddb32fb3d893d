# CoAP message codec (RFC 7252). Pure byte handling: no socket, no allocation beyond the decoded message.
#
# Every length is checked before the bytes it covers are read; a malformed datagram raises FormatError and
# never yields a partial message. Codes are kept as the raw byte (class << 5 | detail).

# Message types
CON = 0
NON = 1
ACK = 2
RST = 3

# Method and response codes
EMPTY = 0x00
GET = 0x01
POST = 0x02
PUT = 0x03
DELETE = 0x04
CREATED = 0x41  # 2.01
DELETED = 0x42  # 2.02
VALID = 0x43  # 2.03
CHANGED = 0x44  # 2.04
CONTENT = 0x45  # 2.05
CONTINUE = 0x5F  # 2.31
BAD_REQUEST = 0x80  # 4.00
UNAUTHORIZED = 0x81  # 4.01
BAD_OPTION = 0x82  # 4.02
FORBIDDEN = 0x83  # 4.03
NOT_FOUND = 0x84  # 4.04
METHOD_NOT_ALLOWED = 0x85  # 4.05
NOT_ACCEPTABLE = 0x86  # 4.06
REQUEST_ENTITY_INCOMPLETE = 0x88  # 4.08
REQUEST_ENTITY_TOO_LARGE = 0x8D  # 4.13
UNSUPPORTED_CONTENT_FORMAT = 0x8F  # 4.15
INTERNAL_SERVER_ERROR = 0xA0  # 5.00
NOT_IMPLEMENTED = 0xA1  # 5.01
SERVICE_UNAVAILABLE = 0xA3  # 5.03
PROXYING_NOT_SUPPORTED = 0xA5  # 5.05

# Option numbers
IF_MATCH = 1
URI_HOST = 3
ETAG = 4
IF_NONE_MATCH = 5
OBSERVE = 6
URI_PORT = 7
LOCATION_PATH = 8
URI_PATH = 11
CONTENT_FORMAT = 12
MAX_AGE = 14
URI_QUERY = 15
ACCEPT = 17
LOCATION_QUERY = 20
BLOCK2 = 23
BLOCK1 = 27
SIZE2 = 28
PROXY_URI = 35
PROXY_SCHEME = 39
SIZE1 = 60
Q_BLOCK1 = 19  # RFC 9177
Q_BLOCK2 = 31
REQUEST_TAG = 292  # RFC 9175

# Allowed value lengths of the options this implementation understands (RFC 7252 §5.10, 7641, 7959, 9175,
# 9177).
# A value outside its range is treated like an unrecognized option (RFC 7252 §5.4.3).
OPTION_LENGTHS = {
    IF_MATCH: (0, 8), URI_HOST: (1, 255), ETAG: (1, 8), IF_NONE_MATCH: (0, 0), OBSERVE: (0, 3),
    URI_PORT: (0, 2), LOCATION_PATH: (0, 255), URI_PATH: (0, 255), CONTENT_FORMAT: (0, 2), MAX_AGE: (0, 4),
    URI_QUERY: (0, 255), ACCEPT: (0, 2), LOCATION_QUERY: (0, 255), BLOCK2: (0, 3), BLOCK1: (0, 3),
    SIZE2: (0, 4), PROXY_URI: (1, 1034), PROXY_SCHEME: (1, 255), SIZE1: (0, 4),
    Q_BLOCK1: (0, 3), Q_BLOCK2: (0, 3), REQUEST_TAG: (0, 8),
}

HEADER_BYTES = 4
MAX_TOKEN_BYTES = 8
PAYLOAD_MARKER = 0xFF


class FormatError(ValueError):
    """A datagram that is not a valid CoAP message. `mid` is set when the header was readable, so that a
    Confirmable message can be rejected with a matching Reset (RFC 7252 §4.2); `silent` means ignore it."""

    def __init__(self, msg, mid=None, con=False, silent=False):
        super().__init__(msg)
        self.mid = mid
        self.con = con
        self.silent = silent


class Message:
    __slots__ = ("type", "code", "mid", "token", "options", "payload")

    def __init__(self, type=CON, code=EMPTY, mid=0, token=b"", options=None, payload=b""):
        self.type = type
        self.code = code
        self.mid = mid
        self.token = token
        # list of (number, value bytes); kept in the order they were added, sorted (stably) when encoding
        self.options = options if options is not None else []
        self.payload = payload

    def add(self, number, value):
        if isinstance(value, int):
            value = uint_bytes(value)
        elif isinstance(value, str):
            value = value.encode()
        self.options.append((number, value))
        return self

    def opt(self, number, default=None):
        for n, v in self.options:
            if n == number:
                return v
        return default

    def opts(self, number):
        return [v for n, v in self.options if n == number]

    def uint(self, number, default=None):
        v = self.opt(number)
        return default if v is None else uint_value(v)

    def remove(self, number):
        self.options = [o for o in self.options if o[0] != number]

    def is_request(self):
        return 1 <= self.code <= 31

    def is_response(self):
        return self.code >= 0x40

    def path(self):
        return [v.decode() for v in self.opts(URI_PATH)]

    def queries(self):
        return [v.decode() for v in self.opts(URI_QUERY)]

    def __repr__(self):
        return "<CoAP t=%d c=%d.%02d mid=%d tok=%s opts=%r len=%d>" % (
            self.type, self.code >> 5, self.code & 31, self.mid, self.token, self.options, len(self.payload))


def response(code, payload=b""):
    """A response (the endpoint sets its type, Message ID and token); a str payload goes as UTF-8."""
    return Message(code=code, payload=payload.encode() if isinstance(payload, str) else payload)


def uint_bytes(n):
    """Minimal big-endian encoding of an unsigned option value (0 encodes as zero bytes)."""
    if n < 0:
        raise ValueError("negative option value")
    k = 0
    while n >> (8 * k):
        k += 1
    return bytes((n >> (8 * (k - 1 - i))) & 0xFF for i in range(k))


def uint_value(b):
    n = 0
    for x in b:
        n = (n << 8) | x
    return n


def code_str(code):
    return "%d.%02d" % (code >> 5, code & 31)


def _ext(nibble, buf, pos, end, what, mid, con):
    # Extended delta/length (RFC 7252 §3.1): 13 -> one more byte + 13, 14 -> two more bytes + 269, 15 reserved.
    if nibble < 13:
        return nibble, pos
    if nibble == 13:
        if pos + 1 > end:
            raise FormatError("option %s extension past end" % what, mid, con)
        return buf[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > end:
            raise FormatError("option %s extension past end" % what, mid, con)
        return ((buf[pos] << 8) | buf[pos + 1]) + 269, pos + 2
    raise FormatError("reserved option %s nibble 15" % what, mid, con)


def decode(data):
    """Parse one datagram into a Message, or raise FormatError. Option values are copies (bytes); the payload is
    a memoryview into `data` so that a 1 KB block is not copied."""
    end = len(data)
    if end < HEADER_BYTES:
        raise FormatError("datagram shorter than the 4-byte header", silent=True)
    b0 = data[0]
    if b0 >> 6 != 1:
        raise FormatError("CoAP version %d" % (b0 >> 6), silent=True)
    mtype = (b0 >> 4) & 3
    tkl = b0 & 15
    code = data[1]
    mid = (data[2] << 8) | data[3]
    con = mtype == CON
    if tkl > MAX_TOKEN_BYTES:
        raise FormatError("token length %d" % tkl, mid, con)
    cls = code >> 5
    if cls == 1 or cls >= 6:
        raise FormatError("reserved code class %d" % cls, mid, con)
    if code == EMPTY:
        if tkl or end > HEADER_BYTES:
            raise FormatError("empty message with token, options or payload", mid, con)
        return Message(mtype, code, mid)
    pos = HEADER_BYTES + tkl
    if pos > end:
        raise FormatError("token past end", mid, con)
    token = bytes(data[HEADER_BYTES:pos])
    options = []
    number = 0
    payload = b""
    while pos < end:
        b = data[pos]
        pos += 1
        if b == PAYLOAD_MARKER:
            if pos == end:
                raise FormatError("payload marker with empty payload", mid, con)
            payload = memoryview(data)[pos:end]
            break
        delta, pos = _ext(b >> 4, data, pos, end, "delta", mid, con)
        length, pos = _ext(b & 15, data, pos, end, "length", mid, con)
        number += delta
        if number > 0xFFFF:
            raise FormatError("option number %d out of range" % number, mid, con)
        if pos + length > end:
            raise FormatError("option %d length %d past end" % (number, length), mid, con)
        options.append((number, bytes(data[pos:pos + length])))
        pos += length
    return Message(mtype, code, mid, token, options, payload)


def bad_option(msg):
    """Return the number of the first unrecognized or malformed critical option (the caller answers a request
    with 4.02 Bad Option, or rejects a response). Malformed elective options are dropped (RFC 7252 §5.4.1)."""
    keep = []
    for number, value in msg.options:
        lim = OPTION_LENGTHS.get(number)
        if lim is None or not (lim[0] <= len(value) <= lim[1]):
            if number & 1:
                return number
            continue
        keep.append((number, value))
    msg.options = keep
    return None


def _head(nibble_value):
    if nibble_value < 13:
        return nibble_value, b""
    if nibble_value < 269:
        return 13, bytes((nibble_value - 13,))
    v = nibble_value - 269
    return 14, bytes((v >> 8, v & 0xFF))


def encode(msg):
    tkl = len(msg.token)
    if tkl > MAX_TOKEN_BYTES:
        raise ValueError("token longer than 8 bytes")
    out = bytearray((0x40 | (msg.type << 4) | tkl, msg.code, (msg.mid >> 8) & 0xFF, msg.mid & 0xFF))
    out += msg.token
    last = 0
    # Insertion sort by number: stable, so repeated options (Uri-Path segments) keep their order, which
    # MicroPython's sort does not promise; option lists are short.
    opts = list(msg.options)
    for i in range(1, len(opts)):
        o = opts[i]
        j = i - 1
        while j >= 0 and opts[j][0] > o[0]:
            opts[j + 1] = opts[j]
            j -= 1
        opts[j + 1] = o
    for number, value in opts:
        d, dext = _head(number - last)
        l, lext = _head(len(value))
        out.append((d << 4) | l)
        out += dext
        out += lext
        out += value
        last = number
    if msg.payload:
        out.append(PAYLOAD_MARKER)
        out += msg.payload
    return out
