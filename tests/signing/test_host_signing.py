"""Host side of signed manifests (tinymlaas.signing): ES256 keys on disk, the manifest's encoding and strict
decoding, COSE_Sign1 build and verify with the refusal reasons the device readers share."""

import hashlib
import os

import cbor2
import pytest

from tinymlaas.errors import UserError
from tinymlaas.signing import (Manifest, ManifestError, SignatureError, generate_key, key_id, load_public_point,
                               load_signer, sign_manifest, verify_manifest)
from tinymlaas.signing import cose
from tinymlaas.signing import manifest as M

from envelopes import CLASS, VENDOR, crafted, fixed_signer, manifest


def test_generated_key_is_private_and_never_replaced(tmp_path):
    path = tmp_path / "signing.pem"
    signer = generate_key(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_signer(path).public_point == signer.public_point
    assert len(signer.public_point) == 65 and signer.public_point[0] == 4
    assert signer.key_id == key_id(signer.public_point) and len(signer.key_id) == 8
    with pytest.raises(UserError, match="refusing to replace"):
        generate_key(path)
    assert load_signer(path).public_point == signer.public_point


def test_key_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "signing.pem"
    generate_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(UserError, match="readable by others"):
        load_signer(path)


def test_non_p256_key_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "p384.pem"
    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    with pytest.raises(UserError, match="P-256"):
        load_signer(path)


def test_trust_anchor_from_pem_or_point():
    signer = fixed_signer("anchor")
    assert load_public_point(signer.public_pem()) == signer.public_point
    assert load_public_point(signer.public_point) == signer.public_point
    off_curve = signer.public_point[:-1] + bytes([signer.public_point[-1] ^ 1])
    with pytest.raises(UserError, match="not a P-256 public key"):
        load_public_point(off_curve)


def test_manifest_round_trip_and_size():
    m = manifest(sequence=2 ** 40)
    data = m.encode()
    assert M.decode(data) == m
    assert len(data) < 160
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)


@pytest.mark.parametrize("change, message", [
    (dict(sequence=-1), "sequence number"),
    (dict(sequence=True), "sequence number"),
    (dict(blob_bytes=1 << 32), "blob size"),
    (dict(vendor_id=b"\x00" * 15), "vendor_id"),
    (dict(name="kw\u00e9"), "printable ASCII"),
    (dict(version=""), "printable ASCII"),
    (dict(component="c" * 65), "printable ASCII"),
])
def test_manifest_fields_are_checked_when_built(change, message):
    with pytest.raises(ManifestError, match=message):
        manifest(**change)


def test_suit_identifiers_are_uuid5():
    import uuid

    assert VENDOR == uuid.uuid5(uuid.NAMESPACE_DNS, "tinymlaas.example").bytes
    assert CLASS == uuid.uuid5(uuid.UUID(bytes=VENDOR), "esp32-wroom-32").bytes
    assert M.class_id(VENDOR, "esp32-s3") != CLASS


def test_signing_is_deterministic():
    """RFC 6979 nonces: the same manifest and key give the same envelope; another manifest another signature."""
    signer = fixed_signer("deterministic")
    assert sign_manifest(manifest(), signer) == sign_manifest(manifest(), signer)
    assert sign_manifest(manifest(), signer)[-64:] != sign_manifest(manifest(sequence=8), signer)[-64:]


def test_envelope_layout():
    signer = fixed_signer("layout")
    env = sign_manifest(manifest(), signer)
    tag = cbor2.loads(env)
    assert tag.tag == 18
    protected, unprotected, payload, signature = tag.value
    assert cbor2.loads(protected) == {1: -7, 4: signer.key_id}
    assert dict(unprotected) == {} and len(signature) == 64 and M.decode(payload) == manifest()
    assert len(env) < cose.ENVELOPE_MAX_BYTES


@pytest.mark.parametrize("case", range(len(crafted(fixed_signer("x"), fixed_signer("y")))))
def test_crafted_envelopes_get_their_reason(case):
    signer, stranger = fixed_signer("host signer"), fixed_signer("stranger")
    label, env, reason = crafted(signer, stranger)[case]
    anchors = {signer.key_id: signer.public_point}
    if reason is None:
        assert isinstance(verify_manifest(env, anchors), Manifest)
        return
    with pytest.raises(ManifestError) as err:
        verify_manifest(env, anchors)
    assert err.value.reason == reason, label
    if reason in ("unknown key", "bad signature") or "COSE" in reason or "algorithm" in reason:
        assert isinstance(err.value, SignatureError)


def test_manifest_for_package_sections():
    m = M.for_package(b"blob bytes", b"vector bytes", "kws", "1.0", 3, VENDOR, CLASS)
    assert (m.blob_sha256, m.blob_bytes) == (hashlib.sha256(b"blob bytes").digest(), 10)
    assert m.vectors_sha256 == hashlib.sha256(b"vector bytes").digest() and m.component == "model"
