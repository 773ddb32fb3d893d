"""The signed model manifest on the device (docs/manifest.md): COSE_Sign1 (RFC 9052 §4.2, ES256 only) around a
SUIT-shaped manifest map. The same profile, the same checks and the same refusal reasons as the host
(tinymlaas.signing) and the C reader (inference_module/c/tml_cose.c).

    from tinyml import cose
    m = cose.verify(envelope, anchors)          # anchors: {kid (8 bytes): 65-byte public point}
    why = cose.admit(m, vendor_id, class_id, installed)   # None, "wrong vendor", ... ; installed: (seq, blob sha)

Raises SignatureError (with .reason) on refusal. The envelope is at most 512 bytes and parsed in RAM; the reader
takes memoryview slices, checks every length before it reads, and accepts only the deterministic encoding.
On a firmware whose `_tinyml` C module has `cose_verify` (firmware/micropython/usermod), verify() runs the C
reader (inference_module/c/tml_cose.c: same checks, same words) instead: about 6.6 M Cortex-M4 instructions and
no heap, against some 1.45 MB of short-lived big-int garbage here.
"""

import hashlib

from . import p256

try:
    from _tinyml import cose_verify as _c_verify
except ImportError:  # no C module, or one built before it had the verifier
    _c_verify = None

ENVELOPE_MAX_BYTES = 512
TEXT_MAX_BYTES = 64
KID_BYTES = 8
MT_UINT, MT_NINT, MT_BYTES, MT_TEXT, MT_ARRAY, MT_MAP, MT_TAG = 0, 1, 2, 3, 4, 5, 6

R_MALFORMED = "malformed COSE_Sign1"
R_ALG = "unsupported algorithm"
R_KEY = "unknown key"
R_SIGNATURE = "bad signature"
R_MANIFEST = "malformed manifest"
R_VERSION = "unsupported manifest version"


# The manifest's keys after 1 (the version) in the only order the deterministic encoding allows: attribute, reader
FIELDS = ((2, "sequence", "uint"), (3, "vendor_id", "uuid"), (4, "class_id", "uuid"), (5, "component", "text"),
          (6, "blob_sha256", "digest"), (7, "blob_bytes", "uint32"), (8, "name", "text"), (9, "version", "text"),
          (10, "vectors_sha256", "digest"))


class SignatureError(ValueError):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Manifest:
    def __init__(self):
        self.sequence = 0
        self.vendor_id = self.class_id = self.blob_sha256 = self.vectors_sha256 = b""
        self.component = self.name = self.version = ""
        self.blob_bytes = 0


class _Reader:
    def __init__(self, data, why):
        self.b = data
        self.pos = 0
        self.why = why  # the reason a structural failure is reported with

    def fail(self):
        raise SignatureError(self.why)

    def head(self):
        """(major type, argument) of the next item; only shortest-form heads with definite lengths."""
        b, pos = self.b, self.pos
        if pos >= len(b):
            self.fail()
        major, ai = b[pos] >> 5, b[pos] & 31
        pos += 1
        if major == 7 or ai > 27:
            self.fail()
        if ai < 24:
            self.pos = pos
            return major, ai
        n = 1 << (ai - 24)
        if len(b) - pos < n:
            self.fail()
        v = int.from_bytes(b[pos:pos + n], "big")
        if v < (24, 0x100, 0x10000, 0x100000000)[ai - 24]:
            self.fail()
        self.pos = pos + n
        return major, v

    def expect(self, major, arg):
        if self.head() != (major, arg):
            self.fail()

    def string(self, major):
        m, n = self.head()
        if m != major or n > len(self.b) - self.pos:
            self.fail()
        self.pos += n
        return self.b[self.pos - n:self.pos]

    def fixed(self, size):
        v = self.string(MT_BYTES)
        if len(v) != size:
            self.fail()
        return bytes(v)

    def text(self):
        v = self.string(MT_TEXT)
        if not 0 < len(v) <= TEXT_MAX_BYTES:
            self.fail()
        for c in v:
            if c < 0x20 or c > 0x7E:
                self.fail()
        return str(bytes(v), "ascii")

    def uint(self):
        m, v = self.head()
        if m != MT_UINT:
            self.fail()
        return v

    def uint32(self):
        v = self.uint()
        if v > 0xFFFFFFFF:
            self.fail()
        return v

    def uuid(self):
        return self.fixed(16)

    def digest(self):
        self.expect(MT_ARRAY, 2)
        self.expect(MT_NINT, 15)  # -16: SHA-256
        return self.fixed(32)

    def end(self):
        if self.pos != len(self.b):
            self.fail()


def decode_manifest(payload):
    """Manifest from the signed payload bytes; raises SignatureError("malformed manifest" / "unsupported ...")."""
    r = _Reader(memoryview(payload), R_MANIFEST)
    major, count = r.head()
    if major != MT_MAP or count == 0:
        r.fail()
    r.expect(MT_UINT, 1)
    if r.uint() != 1:
        raise SignatureError(R_VERSION)
    if count != 10:
        r.fail()
    m = Manifest()
    for key, attr, read in FIELDS:
        r.expect(MT_UINT, key)
        setattr(m, attr, getattr(r, read)())
    r.end()
    return m


def _head_bytes(major, n):
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25, n >> 8, n & 0xFF))
    return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")


def open_envelope(data):
    """Structure only -> (kid, protected, payload, signature) as memoryviews into `data`. No crypto."""
    if len(data) > ENVELOPE_MAX_BYTES:
        raise SignatureError(R_MALFORMED)
    r = _Reader(memoryview(data), R_MALFORMED)
    r.expect(MT_TAG, 18)
    r.expect(MT_ARRAY, 4)
    protected = r.string(MT_BYTES)
    r.expect(MT_MAP, 0)
    payload = r.string(MT_BYTES)
    signature = r.string(MT_BYTES)
    if len(signature) != 64:
        r.fail()
    r.end()
    # the protected header, its algorithm judged last: "unsupported algorithm" means a well-formed header
    h = _Reader(protected, R_MALFORMED)
    h.expect(MT_MAP, 2)
    h.expect(MT_UINT, 1)
    alg = h.head()
    if alg[0] not in (MT_UINT, MT_NINT):
        h.fail()
    h.expect(MT_UINT, 4)
    kid = h.string(MT_BYTES)
    if len(kid) != KID_BYTES:
        h.fail()
    h.end()
    if alg != (MT_NINT, 6):  # -7: ES256
        raise SignatureError(R_ALG)
    return kid, protected, payload, signature


def verify(data, anchors):
    """The Manifest of a COSE_Sign1 envelope whose ES256 signature verifies under one of `anchors`."""
    if _c_verify is not None:
        return _verify_in_c(data, anchors)
    return verify_in_python(data, anchors)


def verify_in_python(data, anchors):
    """verify() by this module's reader whether or not the C module is there."""
    return decode_manifest(verify_payload(data, anchors))


def verify_payload(data, anchors):
    """The payload (a memoryview into `data`) of a COSE_Sign1 envelope of this profile whose ES256 signature
    verifies under one of `anchors`, not parsed further (a manifest, a trust-anchor update: tinyml/anchors.py)."""
    kid, protected, payload, signature = open_envelope(data)
    point = anchors.get(bytes(kid))
    if point is None:
        raise SignatureError(R_KEY)
    # Sig_structure = ["Signature1", protected, h'', payload] (RFC 9052 §4.4), hashed as it is encoded
    h = hashlib.sha256(b"\x84\x6aSignature1")
    h.update(_head_bytes(MT_BYTES, len(protected)))
    h.update(protected)
    h.update(b"\x40")
    h.update(_head_bytes(MT_BYTES, len(payload)))
    h.update(payload)
    if p256.verify(point, h.digest(), signature) != p256.VALID:
        raise SignatureError(R_SIGNATURE)
    return payload


def _verify_in_c(data, anchors):
    table = b"".join(bytes(kid) + bytes(point) for kid, point in anchors.items())  # 73 bytes per anchor
    try:
        fields = _c_verify(data, table)
    except ValueError as e:
        raise SignatureError(str(e))
    m = Manifest()
    for (_, attr, _), value in zip(FIELDS, fields):
        setattr(m, attr, value)
    return m


def anchors(config):
    """{kid: point} from a config's {kid hex: point hex} (tinymlaas.signing.keys.anchor_config). Raises
    SignatureError("bad trust anchor") unless each point is a valid P-256 key and its kid is SHA-256(point)[:8]."""
    from binascii import unhexlify

    out = {}
    for kid_hex, point_hex in config.items():
        try:
            kid, point = unhexlify(kid_hex), unhexlify(point_hex)
        except ValueError:
            raise SignatureError("bad trust anchor")
        if p256.decode_point(point) is None or hashlib.sha256(point).digest()[:KID_BYTES] != kid:
            raise SignatureError("bad trust anchor")
        out[kid] = point
    return out


def admit(m, vendor_id, class_id, installed=None):
    """None when the manifest is for this device and not a rollback, else the reason. `installed`: (sequence,
    blob SHA-256) of what the model slot has, or None. The same sequence number is accepted only for the very
    same blob (a re-install)."""
    if m.vendor_id != vendor_id:
        return "wrong vendor"
    if m.class_id != class_id:
        return "wrong device class"
    if installed is not None and (m.sequence < installed[0] or
                                  (m.sequence == installed[0] and m.blob_sha256 != installed[1])):
        return "rollback"
    return None
