"""The signed model manifest: a CBOR map that follows SUIT's information model (RFC 9124 §3) where it fits.

docs/manifest.md has the CDDL. Integer keys keep it small (about 200 bytes); the encoding is deterministic
(RFC 8949 §4.2.1: shortest heads, definite lengths, keys in order) and readers refuse any other encoding of the same
values, so the host, the MicroPython and the C readers cannot disagree about what was signed.
"""

import uuid
from dataclasses import dataclass

import cbor2

MANIFEST_VERSION = 1
DIGEST_SHA256 = -16  # COSE algorithm id of SHA-256 (RFC 9054), as in SUIT_Digest
TEXT_MAX_BYTES = 64  # component, name and version: printable ASCII, so every reader checks them alike

# key -> field (docs/manifest.md). SUIT names in the comments.
K_VERSION = 1  # suit-manifest-version
K_SEQUENCE = 2  # suit-manifest-sequence-number: monotonic per component
K_VENDOR = 3  # vendor-identifier (RFC 4122 UUID)
K_CLASS = 4  # class-identifier (RFC 4122 UUID)
K_COMPONENT = 5  # component-identifier: the model slot the sequence number counts in
K_BLOB_DIGEST = 6  # image-digest of the model blob
K_BLOB_SIZE = 7  # image-size
K_NAME = 8  # model name (reported as /5/0/6 PkgName)
K_MODEL_VERSION = 9  # model version (/5/0/7 PkgVersion)
K_VECTORS_DIGEST = 10  # digest of the golden-vector section: the self-test the device must pass
KEYS = tuple(range(1, 11))


class ManifestError(ValueError):
    """The payload is not a manifest of this version; `reason` is the short reason all three readers use."""

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason


def vendor_id(domain):
    """SUIT's recommended vendor id: UUID v5 of the vendor's domain name in the DNS namespace -> 16 bytes."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, domain).bytes


def class_id(vendor, name):
    """SUIT's recommended class id: UUID v5 of the device class name in the vendor's namespace -> 16 bytes."""
    return uuid.uuid5(uuid.UUID(bytes=bytes(vendor)), name).bytes


@dataclass(frozen=True)
class Manifest:
    sequence: int
    vendor_id: bytes
    class_id: bytes
    component: str
    blob_sha256: bytes
    blob_bytes: int
    name: str
    version: str
    vectors_sha256: bytes

    def __post_init__(self):
        if not (type(self.sequence) is int and 0 <= self.sequence < 1 << 64):
            raise ManifestError("malformed manifest", "sequence number must be an unsigned 64-bit integer")
        if not (type(self.blob_bytes) is int and 0 <= self.blob_bytes < 1 << 32):
            raise ManifestError("malformed manifest", "blob size must be an unsigned 32-bit integer")
        for field, size in (("vendor_id", 16), ("class_id", 16), ("blob_sha256", 32), ("vectors_sha256", 32)):
            value = getattr(self, field)
            if type(value) is not bytes or len(value) != size:
                raise ManifestError("malformed manifest", "%s must be %d bytes" % (field, size))
        for field in ("component", "name", "version"):
            value = getattr(self, field)
            if (type(value) is not str or not 0 < len(value) <= TEXT_MAX_BYTES
                    or any(not " " <= c <= "~" for c in value)):
                raise ManifestError("malformed manifest", "%s must be 1..%d printable ASCII characters"
                                    % (field, TEXT_MAX_BYTES))

    def encode(self):
        return cbor2.dumps({
            K_VERSION: MANIFEST_VERSION, K_SEQUENCE: self.sequence, K_VENDOR: self.vendor_id,
            K_CLASS: self.class_id, K_COMPONENT: self.component, K_BLOB_DIGEST: [DIGEST_SHA256, self.blob_sha256],
            K_BLOB_SIZE: self.blob_bytes, K_NAME: self.name, K_MODEL_VERSION: self.version,
            K_VECTORS_DIGEST: [DIGEST_SHA256, self.vectors_sha256]}, canonical=True)


def for_package(blob, vectors, name, version, sequence, vendor, klass, component="model"):
    """The manifest of an install package's sections: the blob and the golden-vector section are hashed here."""
    import hashlib

    return Manifest(sequence=sequence, vendor_id=bytes(vendor), class_id=bytes(klass), component=component,
                    blob_sha256=hashlib.sha256(blob).digest(), blob_bytes=len(blob), name=name, version=version,
                    vectors_sha256=hashlib.sha256(vectors).digest())


def strict_loads(data, what):
    """cbor2.loads that accepts only the deterministic encoding (re-encoding must give the same bytes)."""
    try:
        value = cbor2.loads(bytes(data))
        canonical = cbor2.dumps(value, canonical=True)
    except (cbor2.CBORError, ValueError, TypeError, RecursionError, OverflowError):
        raise ManifestError(what, "not CBOR") from None
    if canonical != bytes(data):
        raise ManifestError(what, "not deterministically encoded CBOR (RFC 8949 §4.2.1)")
    return value


def _digest(value):
    if (not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] != DIGEST_SHA256
            or not isinstance(value[1], bytes) or len(value[1]) != 32):
        raise ManifestError("malformed manifest", "digest must be [-16, 32 bytes]")
    return value[1]


def _leading_version(data):
    """The version when `data` starts as every reader reads it: a non-empty map head, key 1, an unsigned integer,
    each head in its shortest form; else None. The version is judged before the rest of the map (a later version
    may change the rest), as the device readers do."""
    pos, heads = 0, []
    for _ in range(3):
        if pos >= len(data) or data[pos] >> 5 == 7 or data[pos] & 31 > 27:
            return None
        major, ai = data[pos] >> 5, data[pos] & 31
        pos += 1
        value = ai
        if ai >= 24:
            n = 1 << (ai - 24)
            if len(data) - pos < n:
                return None
            value = int.from_bytes(data[pos:pos + n], "big")
            if value < (24, 0x100, 0x10000, 0x100000000)[ai - 24]:
                return None
            pos += n
        heads.append((major, value))
    (major, count), key, version = heads
    return version[1] if major == 5 and count and key == (0, K_VERSION) and version[0] == 0 else None


def decode(payload):
    """Manifest from the signed payload bytes; raises ManifestError."""
    version = _leading_version(bytes(payload))
    if version is None:
        raise ManifestError("malformed manifest", "must start with key 1, the manifest version (an unsigned integer)")
    if version != MANIFEST_VERSION:
        raise ManifestError("unsupported manifest version", "version %d, this reader knows %d"
                            % (version, MANIFEST_VERSION))
    m = strict_loads(payload, "malformed manifest")
    if tuple(m) != KEYS:
        raise ManifestError("malformed manifest", "keys must be exactly 1..10")
    try:
        return Manifest(sequence=m[K_SEQUENCE], vendor_id=m[K_VENDOR], class_id=m[K_CLASS],
                        component=m[K_COMPONENT], blob_sha256=_digest(m[K_BLOB_DIGEST]),
                        blob_bytes=m[K_BLOB_SIZE], name=m[K_NAME], version=m[K_MODEL_VERSION],
                        vectors_sha256=_digest(m[K_VECTORS_DIGEST]))
    except ManifestError:
        raise
    except TypeError as e:
        raise ManifestError("malformed manifest", str(e)) from None
