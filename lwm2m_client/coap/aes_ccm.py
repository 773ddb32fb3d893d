# AES-CCM (RFC 3610) with the COSE parameters OSCORE uses by default: AES-CCM-16-64-128 (COSE algorithm 10),
# a 16-byte key, a 13-byte nonce (so L = 2 length bytes) and an 8-byte tag.
#
# Boards only promise AES in ECB mode (cryptolib.aes mode 1), so CBC-MAC and CTR are built here one block at a
# time on a 16-byte scratch buffer; nothing else is allocated per block.
import micropython

try:
    from cryptolib import aes
except ImportError:
    # A firmware built without its TLS library (MicroPython's unix port with MICROPY_SSL_MBEDTLS=0, for one) has
    # no cryptolib: say what is missing and where the fix is, not just "no module named cryptolib".
    raise ImportError("OSCORE needs the cryptolib module (AES), which this firmware was built without: build "
                      "MicroPython with its TLS library (docs/boards.md)")

KEY_BYTES = 16
NONCE_BYTES = 13
TAG_BYTES = 8
BLOCK = 16
MAX_TEXT_BYTES = 0xFFFF  # L = 2: the message length must fit two bytes

_ECB = 1
_L = 15 - NONCE_BYTES
# B0 flags: Adata bit, then M' = (M - 2) / 2 in bits 3..5, then L' = L - 1 (RFC 3610 §2.2)
_B0_FLAGS = 0x40 | ((TAG_BYTES - 2) // 2) << 3 | (_L - 1)
_CTR_FLAGS = _L - 1


class TagError(ValueError):
    pass


# The byte loops of CBC-MAC and CTR are the per-byte cost of OSCORE (the AES rounds are C): viper, like the
# inference kernels, so they compile to machine code on every board with a native emitter.
@micropython.viper
def _xor_into(block: ptr8, data: ptr8, start: int, n: int):
    for i in range(n):
        block[i] = block[i] ^ data[start + i]


@micropython.viper
def _xor_at(out: ptr8, start: int, block: ptr8, n: int):
    for i in range(n):
        out[start + i] = out[start + i] ^ block[i]


def _counter_block(nonce, i):
    a = bytearray(BLOCK)
    a[0] = _CTR_FLAGS
    a[1:14] = nonce
    a[14] = i >> 8
    a[15] = i & 0xFF
    return a


def _cbc_mac(cipher, nonce, aad, text):
    x = bytearray(BLOCK)
    x[0] = _B0_FLAGS
    x[1:14] = nonce
    x[14] = len(text) >> 8
    x[15] = len(text) & 0xFF
    cipher.encrypt(x, x)
    # AAD is prefixed by its 2-byte length (it is always shorter than 0xFF00 here), then zero padded to blocks
    head = bytes((len(aad) >> 8, len(aad) & 0xFF)) + aad
    for data in (head, text):
        for start in range(0, len(data), BLOCK):
            _xor_into(x, data, start, min(BLOCK, len(data) - start))
            cipher.encrypt(x, x)
    return x


def _ctr(cipher, nonce, text):
    out = bytearray(text)
    a = _counter_block(nonce, 0)
    s = bytearray(BLOCK)
    for start in range(0, len(out), BLOCK):
        i = start // BLOCK + 1
        a[14] = i >> 8
        a[15] = i & 0xFF
        cipher.encrypt(a, s)
        _xor_at(out, start, s, min(BLOCK, len(out) - start))
    return out


def _tag(cipher, nonce, mac):
    s0 = _counter_block(nonce, 0)
    cipher.encrypt(s0, s0)
    _xor_into(s0, mac, 0, TAG_BYTES)
    return s0[:TAG_BYTES]


def _check_sizes(key, nonce, aad, n):
    if len(key) != KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise ValueError("AES-CCM-16-64-128 needs a 16-byte key and a 13-byte nonce")
    if n > MAX_TEXT_BYTES or len(aad) >= 0xFF00:
        raise ValueError("AES-CCM text or AAD too long")


def encrypt(key, nonce, aad, plaintext):
    """Ciphertext followed by the 8-byte tag."""
    _check_sizes(key, nonce, aad, len(plaintext))
    cipher = aes(key, _ECB)
    mac = _cbc_mac(cipher, nonce, aad, plaintext)
    out = _ctr(cipher, nonce, plaintext)
    out += _tag(cipher, nonce, mac)
    return out


def decrypt(key, nonce, aad, data):
    """Plaintext of `data` (ciphertext + tag), or TagError when the tag does not verify."""
    n = len(data) - TAG_BYTES
    if n < 0:
        raise TagError("ciphertext shorter than the tag")
    _check_sizes(key, nonce, aad, n)
    cipher = aes(key, _ECB)
    plaintext = _ctr(cipher, nonce, memoryview(data)[:n])
    expected = _tag(cipher, nonce, _cbc_mac(cipher, nonce, aad, plaintext))
    # compare every byte so the time taken does not tell how much of the tag matched
    diff = 0
    for i in range(TAG_BYTES):
        diff |= expected[i] ^ data[n + i]
    if diff:
        raise TagError("authentication tag mismatch")
    return plaintext
