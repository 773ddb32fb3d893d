"""Strict JSON (RFC 8259) for what the device reads as JSON: SenML-JSON payloads (lwm2m/senml.py) and install
package metadata (installer.py). MicroPython's json.loads reads past bad escapes, missing commas and stray bytes
('{"threshold"7 1.9}' gives {'threshold': 7}) and turns 1e999 into inf: the text is checked here first, so
malformed JSON is refused with the reason rather than misread. JSON has no non-finite numbers, so a number that
overflows a double is refused too."""
import json


class JSONError(ValueError):
    pass


def loads(b, depth=8):
    """bytes -> the JSON value, or JSONError saying what is wrong."""
    b = bytes(b)
    if not utf8_ok(b):
        raise JSONError("invalid JSON: not UTF-8")
    if _ws(b, _value(b, _ws(b, 0), depth)) != len(b):
        raise JSONError("invalid JSON: bytes after the value")
    try:
        return json.loads(b)
    except ValueError as e:
        raise JSONError("invalid JSON: %s" % e)


def finite(v):
    return v == v and v - v == 0.0  # NaN != NaN; inf - inf is NaN


def utf8_ok(b):
    """Well-formed UTF-8 (RFC 3629 §4)? MicroPython's bytes.decode() takes overlong forms (C0 A9 for ')') and
    encoded surrogates, which CPython, cbor2 and the server refuse."""
    n = len(b)
    i = 0
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            k, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= c <= 0xEF:
            k, lo, hi = 2, 0xA0 if c == 0xE0 else 0x80, 0x9F if c == 0xED else 0xBF
        elif 0xF0 <= c <= 0xF4:
            k, lo, hi = 3, 0x90 if c == 0xF0 else 0x80, 0x8F if c == 0xF4 else 0xBF
        else:
            return False
        if i + k >= n or not lo <= b[i + 1] <= hi:
            return False
        for j in range(i + 2, i + k + 1):
            if not 0x80 <= b[j] <= 0xBF:
                return False
        i += k + 1
    return True



def _ws(b, i):
    while i < len(b) and b[i] in b" \t\n\r":
        i += 1
    return i


def _value(b, i, depth):
    """-> the index just past the JSON value at b[i] (nested at most `depth` deep), or JSONError."""
    if i >= len(b):
        raise JSONError("invalid JSON: truncated")
    c = b[i]
    if c == 0x22:
        return _string(b, i)
    if c == 0x5B or c == 0x7B:
        if depth <= 0:
            raise JSONError("invalid JSON: nested too deep")
        close = c + 2  # ] or }
        i = _ws(b, i + 1)
        if i < len(b) and b[i] == close:
            return i + 1
        while True:
            if c == 0x7B:
                if i >= len(b) or b[i] != 0x22:
                    raise JSONError("invalid JSON: object key is not a string")
                i = _ws(b, _string(b, i))
                if i >= len(b) or b[i] != 0x3A:
                    raise JSONError("invalid JSON: ':' expected")
                i = _ws(b, i + 1)
            i = _ws(b, _value(b, i, depth - 1))
            if i < len(b) and b[i] == close:
                return i + 1
            if i >= len(b) or b[i] != 0x2C:
                raise JSONError("invalid JSON: ',' expected")
            i = _ws(b, i + 1)
    for lit in (b"true", b"false", b"null"):
        if b[i:i + len(lit)] == lit:
            return i + len(lit)
    return _number(b, i)


def _string(b, i):
    i += 1
    while i < len(b):
        c = b[i]
        if c == 0x22:
            return i + 1
        if c < 0x20:
            raise JSONError("invalid JSON: control character in a string")
        if c == 0x5C:
            e = b[i + 1:i + 2]
            if e == b"u":
                v = _hex4(b, i + 2)
                if v < 0:
                    raise JSONError("invalid JSON: bad \\u escape")
                if 0xD800 <= v <= 0xDFFF:
                    # MicroPython's json.loads keeps even a valid pair as two surrogates (text no UTF-8 encoder
                    # takes): characters beyond U+FFFF come as their UTF-8 bytes
                    raise JSONError("invalid JSON: surrogate \\u escape (send the character as UTF-8)")
                i += 6
                continue
            if len(e) != 1 or e not in b'"\\/bfnrt':
                raise JSONError("invalid JSON: bad escape")
        i += 2 if c == 0x5C else 1
    raise JSONError("invalid JSON: unterminated string")


def _hex4(b, i):
    h = b[i:i + 4]
    if len(h) != 4 or any(x not in b"0123456789abcdefABCDEF" for x in h):
        return -1
    return int(h, 16)


def _number(b, i):
    start = i
    if i < len(b) and b[i] == 0x2D:
        i += 1
    i = i + 1 if i < len(b) and b[i] == 0x30 else _digits(b, i)  # no leading zeros
    if i < len(b) and b[i] == 0x2E:
        i = _digits(b, i + 1)
    big = i - start > 300  # beyond, an integer may exceed a double
    if i < len(b) and b[i] in b"eE":
        big = True
        i += 1
        if i < len(b) and b[i] in b"+-":
            i += 1
        i = _digits(b, i)
    if big and not finite(float(b[start:i])):
        raise JSONError("invalid JSON: number %s... is beyond a double (JSON has no infinity)" % b[start:i][:12].decode())
    return i


def _digits(b, i):
    start = i
    while i < len(b) and 0x30 <= b[i] <= 0x39:
        i += 1
    if i == start:
        raise JSONError("invalid JSON: bad number")
    return i
