"""ES256 signing keys: a small signer interface, the file-backed signer, key ids and public-key export.

The interface is what the manifest signer needs and nothing more (`key_id`, `public_point`, `sign`), so an HSM or a
PKCS#11 token can stand behind it later: a PKCS#11 signer returns CKM_ECDSA's r||s over the SHA-256 digest, which
is exactly `sign`'s contract. Private keys on disk are PKCS#8 PEM, written with mode 0600 and never overwritten.
"""

import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..errors import UserError

KEY_ID_BYTES = 8
POINT_BYTES = 65  # SEC 1 §2.3.3 uncompressed: 0x04 || X || Y
SIGNATURE_BYTES = 64  # RFC 9053 §2.1: r || s, each 32 bytes big-endian


def key_id(point):
    """The key id of a SEC 1 uncompressed public point: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(point).digest()[:KEY_ID_BYTES]


def public_point(public_key):
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


class Signer(ABC):
    """Signs with one ES256 key. Implementations: FileSigner (PEM file); a PKCS#11 signer fits the same three."""

    @property
    @abstractmethod
    def public_point(self):
        """65-byte SEC 1 uncompressed public point."""

    @property
    def key_id(self):
        return key_id(self.public_point)

    @abstractmethod
    def sign(self, data):
        """ECDSA P-256 over SHA-256(data) -> 64 bytes r || s."""


class FileSigner(Signer):
    def __init__(self, private_key):
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
            raise UserError("signing key is not an ECDSA P-256 key (ES256 needs P-256)")
        self._key = private_key
        self._point = public_point(private_key.public_key())

    @property
    def public_point(self):
        return self._point

    def sign(self, data):
        # RFC 6979 nonces: signing does not depend on the RNG of the moment, and the same manifest gives the same bytes
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def public_pem(self):
        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_key(path):
    """Create a new P-256 key in `path` (PKCS#8 PEM, mode 0600; refuses to replace a file) -> FileSigner."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError("%s exists: refusing to replace a signing key" % path) from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return FileSigner(key)


def load_signer(path):
    """FileSigner from a PEM private key; refuses a file that others can read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as e:
        raise UserError("cannot read signing key %s: %s" % (path, e.strerror)) from None
    if mode & 0o077:
        raise UserError("signing key %s is readable by others (mode %03o): chmod 600 it" % (path, mode & 0o777))
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise UserError("%s is not an unencrypted PEM private key: %s" % (path, e)) from None
    return FileSigner(key)


def load_public_point(data):
    """A trust anchor from PEM (SubjectPublicKeyInfo) or a raw 65-byte point -> the validated 65-byte point."""
    try:
        if data[:1] == b"\x04" and len(data) == POINT_BYTES:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(data))
        else:
            key = serialization.load_pem_public_key(bytes(data))
    except ValueError as e:
        raise UserError("not a P-256 public key: %s" % e) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise UserError("not a P-256 public key")
    return public_point(key)


def anchor_config(points):
    """Trust anchors as a device's config holds them: {kid hex: point hex} (read by tinyml.cose.anchors)."""
    return {key_id(p).hex(): bytes(p).hex() for p in points}


def verify_es256(point, data, signature):
    """True when `signature` (r || s) is a valid ECDSA P-256 / SHA-256 signature of `data` under `point`.

    Malformed points and signatures of the wrong size are invalid, not errors: a verifier says yes or no."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(point))
    except ValueError:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (r and s):
        return False
    try:
        key.verify(encode_dss_signature(r, s), bytes(data), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
