# OSCORE (RFC 8613) on the message objects of coap/message.py: a security context derived from a master secret,
# and protect/unprotect for requests and responses. Codec only: no sockets, no retransmission, no context lookup
# by address; the exchange layer decides which context a datagram belongs to.
#
# Algorithms are the mandatory ones: AES-CCM-16-64-128 (COSE 10) and HKDF-SHA256. Every failure is an
# OscoreError whose `reason` names it and whose `code` is the CoAP error a server answers with (RFC 8613 §8.2).
import binascii
import hashlib
import os

from coap import aes_ccm
from coap import message as cm
from lwm2m import cbor

OSCORE = 9  # option number
FETCH = 0x05  # RFC 8132; the outer method of Observe requests
AEAD_ALG = 10  # AES-CCM-16-64-128
OSCORE_VERSION = 1
MAX_ID_BYTES = aes_ccm.NONCE_BYTES - 6  # sender/recipient IDs are padded into 7 bytes of the nonce
MAX_PIV_BYTES = 5
MAX_SEQ = (1 << 40) - 1  # §7.2.1
REPLAY_WINDOW = 32

# Options that stay outside the ciphertext (Class U, §4.1). Observe is both: §4.1.3.5. Everything else,
# including options unknown here, is Class E and is encrypted.
_CLASS_U = (cm.URI_HOST, cm.URI_PORT, cm.PROXY_SCHEME, 16)  # 16: Hop-Limit (RFC 8768)

# Reasons
MALFORMED_OPTION = "malformed OSCORE option"
NOT_PROTECTED = "no OSCORE option"
UNKNOWN_KID = "unknown kid"
UNKNOWN_CONTEXT = "unknown kid context"
REPLAY = "replayed request"
BAD_TAG = "decryption failed"
MALFORMED_PLAINTEXT = "malformed plaintext"
UNSUPPORTED = "unsupported"
EXHAUSTED = "sender sequence number exhausted"
STORE_BROKEN = "sequence number store unreadable"

_ERROR_CODES = {
    MALFORMED_OPTION: cm.BAD_OPTION, UNKNOWN_KID: cm.UNAUTHORIZED, UNKNOWN_CONTEXT: cm.UNAUTHORIZED,
    REPLAY: cm.UNAUTHORIZED, BAD_TAG: cm.BAD_REQUEST, MALFORMED_PLAINTEXT: cm.BAD_REQUEST,
}


class OscoreError(ValueError):
    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.code = _ERROR_CODES.get(reason, cm.BAD_REQUEST)


# --- HMAC-SHA256 and HKDF (RFC 2104, RFC 5869) ---

_HASH_BLOCK = 64


def hmac_sha256(key, data):
    if len(key) > _HASH_BLOCK:
        key = hashlib.sha256(key).digest()
    padded = bytearray(_HASH_BLOCK)
    padded[:len(key)] = key
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
    inner.update(data)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
    outer.update(inner.digest())
    return outer.digest()


def hkdf_sha256(salt, ikm, info, length):
    prk = hmac_sha256(salt or bytes(32), ikm)
    out = b""
    block = b""
    i = 1
    while len(out) < length:
        block = hmac_sha256(prk, block + info + bytes((i,)))
        out += block
        i += 1
    return out[:length]


# --- the COSE pieces OSCORE needs (§3.2.1, §5.3, §5.4) ---

def _derive(secret, salt, id_context, ident, kind, length):
    info = cbor.encode([ident, id_context, AEAD_ALG, kind, length])
    return hkdf_sha256(salt, secret, info, length)


def _aad(request_kid, request_piv):
    external = cbor.encode([OSCORE_VERSION, [AEAD_ALG], request_kid, request_piv, b""])
    return cbor.encode(["Encrypt0", b"", external])


def _nonce(common_iv, ident, piv):
    n = bytearray(aes_ccm.NONCE_BYTES)
    n[0] = len(ident)
    n[1 + MAX_ID_BYTES - len(ident):1 + MAX_ID_BYTES] = ident
    n[aes_ccm.NONCE_BYTES - len(piv):] = piv
    for i in range(aes_ccm.NONCE_BYTES):
        n[i] ^= common_iv[i]
    return n


def _piv(seq):
    return cm.uint_bytes(seq) or b"\x00"


def option_value(piv=None, kid_context=None, kid=None):
    """OSCORE option value (§6.1): flags, Partial IV, kid context with its length byte, kid."""
    if piv is None and kid_context is None and kid is None:
        return b""
    flags = (len(piv) if piv else 0) | (0x08 if kid is not None else 0) | (0x10 if kid_context is not None else 0)
    out = bytearray((flags,))
    if piv:
        out += piv
    if kid_context is not None:
        out.append(len(kid_context))
        out += kid_context
    if kid is not None:
        out += kid
    return bytes(out)


def parse_option(value):
    """(piv, kid_context, kid) from an OSCORE option value; absent parts are None."""
    if not value:
        return None, None, None
    end = len(value)
    flags = value[0]
    if flags == 0:
        raise OscoreError(MALFORMED_OPTION, "flags byte 0 must be sent as an empty option")
    if flags & 0xE0:
        raise OscoreError(MALFORMED_OPTION, "reserved flag bits 0x%02x" % (flags & 0xE0))
    n = flags & 7
    if n > MAX_PIV_BYTES:
        raise OscoreError(MALFORMED_OPTION, "reserved Partial IV length %d" % n)
    pos = 1 + n
    if pos > end:
        raise OscoreError(MALFORMED_OPTION, "Partial IV past end")
    piv = bytes(value[1:pos]) if n else None
    kid_context = None
    if flags & 0x10:
        if pos >= end:
            raise OscoreError(MALFORMED_OPTION, "kid context length past end")
        s = value[pos]
        pos += 1
        if pos + s > end:
            raise OscoreError(MALFORMED_OPTION, "kid context past end")
        kid_context = bytes(value[pos:pos + s])
        pos += s
    if flags & 0x08:
        return piv, kid_context, bytes(value[pos:])
    if pos != end:
        raise OscoreError(MALFORMED_OPTION, "bytes after the last field")
    return piv, kid_context, None


def _oscore_option(msg):
    values = msg.opts(OSCORE)
    if not values:
        raise OscoreError(NOT_PROTECTED)
    if len(values) > 1:
        raise OscoreError(MALFORMED_OPTION, "repeated")
    return values[0]


def _split(msg):
    """(outer options, inner options) of a plain message."""
    outer, inner = [], []
    for number, value in msg.options:
        if number == cm.PROXY_URI:
            raise OscoreError(UNSUPPORTED, "Proxy-Uri (send Uri-Host/Uri-Path instead)")
        if number == OSCORE:
            raise OscoreError(UNSUPPORTED, "message is already protected")
        if number == cm.OBSERVE:
            outer.append((number, value))
            inner.append((number, value))
        elif number in _CLASS_U:
            outer.append((number, value))
        else:
            inner.append((number, value))
    return outer, inner


def _plaintext(code, options, payload):
    # The plaintext is the code byte then the options and payload exactly as CoAP encodes them (§5.3): encode
    # a header-only message and move the code over the last header byte so one slice drops the rest.
    enc = cm.encode(cm.Message(cm.CON, code, 0, b"", options, payload))
    enc[3] = code
    return enc[3:]


def _parse_plaintext(plaintext, want_request):
    if not plaintext:
        raise OscoreError(MALFORMED_PLAINTEXT, "empty")
    code = plaintext[0]
    if not (1 <= code <= 31 if want_request else code >= 0x40):
        raise OscoreError(MALFORMED_PLAINTEXT, "inner code %s" % cm.code_str(code))
    try:
        inner = cm.decode(bytes((0x40, code, 0, 0)) + plaintext[1:])
    except cm.FormatError as e:
        raise OscoreError(MALFORMED_PLAINTEXT, str(e))
    for number, _ in inner.options:
        if number == OSCORE:
            raise OscoreError(MALFORMED_PLAINTEXT, "inner OSCORE option")
    return inner


def _unprotected(outer, inner):
    # Outer Class E options are not authenticated and would shadow the inner ones, so only Class U survive
    options = [o for o in outer.options if o[0] in _CLASS_U]
    options += inner.options
    return cm.Message(outer.type, inner.code, outer.mid, outer.token, options, bytes(inner.payload))


class RequestId:
    """What binds a response to its request (§7.1): the request's kid and Partial IV, and whether it was an
    Observe request (its responses then use outer code 2.05 and carry their own Partial IV)."""
    __slots__ = ("kid", "piv", "observe")

    def __init__(self, kid, piv, observe):
        self.kid = kid
        self.piv = piv
        self.observe = observe


class ReplayWindow:
    """Sliding window over the last REPLAY_WINDOW sequence numbers (§7.4). `mark` only after the tag verified,
    so forged messages cannot move the window."""
    __slots__ = ("top", "seen")

    def __init__(self):
        self.top = -1
        self.seen = 0  # bit i: top - i was received

    def check(self, seq):
        if seq > self.top:
            return
        age = self.top - seq
        if age >= REPLAY_WINDOW:
            raise OscoreError(REPLAY, "sequence number %d older than the window" % seq)
        if (self.seen >> age) & 1:
            raise OscoreError(REPLAY, "sequence number %d" % seq)

    def mark(self, seq):
        if seq > self.top:
            shift = seq - self.top
            self.seen = ((self.seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) if shift < REPLAY_WINDOW else 1
            self.top = seq
        else:
            self.seen |= 1 << (self.top - seq)


class SequenceStore:
    """The sender sequence number across reboots (Appendix B.1.1): a file holds the first number not yet
    reserved. A boot starts there and reserves `step` more before sending; running past the reservation writes
    the next one first. So no number is ever used twice, at the cost of one flash write per `step` messages and
    up to `step` numbers skipped per reboot. A file that cannot be read is an error, never a restart at 0 (that
    would reuse nonces); a missing file means a new context."""

    def __init__(self, path, step=64):
        self.path = path
        self.step = step
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            text = None
        if text is None:
            self.limit = 0
        else:
            try:
                self.limit = int(text)
            except ValueError:
                raise OscoreError(STORE_BROKEN, path)
            if not 0 <= self.limit <= MAX_SEQ + 1:
                raise OscoreError(STORE_BROKEN, path)

    def boot(self):
        """The first sequence number this boot may use (numbers are reserved from it on)."""
        first = self.limit
        self.reserve(first)
        return first

    def reserve(self, seq):
        """Make sure seq and the next step - 1 numbers are reserved on flash before seq is used."""
        limit = min(seq + self.step, MAX_SEQ + 1)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(limit))
        try:
            os.rename(tmp, self.path)
        except OSError:  # filesystems without an atomic replace: the old value is still a safe lower bound
            os.remove(self.path)
            os.rename(tmp, self.path)
        self.limit = limit


class Context:
    """One OSCORE security context (§3): the common, sender and recipient parts for AES-CCM-16-64-128.
    With `store` (a SequenceStore) the sender sequence number survives reboots; without it, it starts at
    sender_seq (tests, or a context used only until the next reboot)."""

    def __init__(self, master_secret, sender_id, recipient_id, master_salt=b"", id_context=None, sender_seq=0,
                 store=None):
        if len(sender_id) > MAX_ID_BYTES or len(recipient_id) > MAX_ID_BYTES:
            raise ValueError("sender and recipient IDs are at most %d bytes" % MAX_ID_BYTES)
        if sender_id == recipient_id:
            raise ValueError("sender and recipient IDs must differ")
        self.sender_id = bytes(sender_id)
        self.recipient_id = bytes(recipient_id)
        self.id_context = None if id_context is None else bytes(id_context)
        key = aes_ccm.KEY_BYTES
        self.sender_key = _derive(master_secret, master_salt, self.id_context, self.sender_id, "Key", key)
        self.recipient_key = _derive(master_secret, master_salt, self.id_context, self.recipient_id, "Key", key)
        self.common_iv = _derive(master_secret, master_salt, self.id_context, b"", "IV", aes_ccm.NONCE_BYTES)
        self.store = store
        self.sender_seq = store.boot() if store is not None else sender_seq
        self.replay = ReplayWindow()

    def _next_piv(self):
        seq = self.sender_seq
        if seq > MAX_SEQ:
            raise OscoreError(EXHAUSTED)
        if self.store is not None and seq >= self.store.limit:
            self.store.reserve(seq)
        self.sender_seq = seq + 1
        return _piv(seq)

    def _seal(self, msg, code, outer_options, inner_options, option, nonce, aad):
        ciphertext = aes_ccm.encrypt(self.sender_key, nonce, aad, _plaintext(msg.code, inner_options, msg.payload))
        outer_options.append((OSCORE, option))
        return cm.Message(msg.type, code, msg.mid, msg.token, outer_options, ciphertext)

    def _open(self, outer, nonce, aad, want_request):
        try:
            plaintext = aes_ccm.decrypt(self.recipient_key, nonce, aad, outer.payload)
        except ValueError as e:
            raise OscoreError(BAD_TAG, str(e))
        return _parse_plaintext(plaintext, want_request)

    def protect_request(self, msg):
        """(protected message, RequestId). Outer code POST, or FETCH for an Observe request (§4.2)."""
        outer_options, inner_options = _split(msg)
        piv = self._next_piv()
        observe = msg.opt(cm.OBSERVE) is not None
        protected = self._seal(msg, FETCH if observe else cm.POST, outer_options, inner_options,
                               option_value(piv, self.id_context, self.sender_id),
                               _nonce(self.common_iv, self.sender_id, piv), _aad(self.sender_id, piv))
        return protected, RequestId(self.sender_id, piv, observe)

    def unprotect_request(self, msg):
        """(plain message, RequestId), or OscoreError. The replay window is updated only on success."""
        piv, kid_context, kid = parse_option(_oscore_option(msg))
        if piv is None or kid is None:
            raise OscoreError(MALFORMED_OPTION, "request without Partial IV or kid")
        if kid != self.recipient_id:
            raise OscoreError(UNKNOWN_KID, binascii.hexlify(kid).decode())
        if kid_context is not None and kid_context != self.id_context:
            raise OscoreError(UNKNOWN_CONTEXT)
        seq = cm.uint_value(piv)
        self.replay.check(seq)
        inner = self._open(msg, _nonce(self.common_iv, kid, piv), _aad(kid, piv), True)
        self.replay.mark(seq)
        return _unprotected(msg, inner), RequestId(kid, piv, msg.code == FETCH)

    def protect_response(self, msg, request, fresh_piv=False):
        """Protected response to the request `request` (a RequestId). Notifications (responses with Observe)
        always carry a fresh Partial IV so that no two share a nonce (§4.1.3.5.2); other responses reuse the
        request's nonce and send an empty OSCORE option unless `fresh_piv`."""
        outer_options, inner_options = _split(msg)
        if fresh_piv or msg.opt(cm.OBSERVE) is not None:
            piv = self._next_piv()
            nonce = _nonce(self.common_iv, self.sender_id, piv)
        else:
            piv = None
            nonce = _nonce(self.common_iv, request.kid, request.piv)
        code = cm.CONTENT if request.observe else cm.CHANGED
        return self._seal(msg, code, outer_options, inner_options, option_value(piv),
                          nonce, _aad(request.kid, request.piv))

    def unprotect_response(self, msg, request):
        """Plain response to the request `request` (the RequestId protect_request returned), or OscoreError."""
        piv, _, _ = parse_option(_oscore_option(msg))
        if piv is None:
            nonce = _nonce(self.common_iv, request.kid, request.piv)
        else:
            nonce = _nonce(self.common_iv, self.recipient_id, piv)
        inner = self._open(msg, nonce, _aad(request.kid, request.piv), False)
        return _unprotected(msg, inner)
