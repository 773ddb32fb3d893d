"""Signed envelopes for the reader tests: one valid envelope and crafted refusals, each with the reason every reader
(host, MicroPython, C) must give. Built with cbor2 directly where the host's own writer would refuse the content."""

import hashlib

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from tinymlaas.signing import cose as C
from tinymlaas.signing import manifest as M
from tinymlaas.signing.keys import FileSigner

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
VENDOR = M.vendor_id("tinymlaas.example")
CLASS = M.class_id(VENDOR, "esp32-wroom-32")
BLOB_SHA = hashlib.sha256(b"model blob").digest()


def fixed_signer(label):
    d = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % N
    return FileSigner(ec.derive_private_key(d, ec.SECP256R1()))


FUZZ_SIGNER = fixed_signer("tinymlaas fuzz key")  # its point is the anchor compiled into tests/c/tml_cose_fuzz.c


def manifest(sequence=7, **kw):
    fields = dict(sequence=sequence, vendor_id=VENDOR, class_id=CLASS, component="model", blob_sha256=BLOB_SHA,
                  blob_bytes=33328, name="kws", version="1.0", vectors_sha256=hashlib.sha256(b"vectors").digest())
    fields.update(kw)
    return M.Manifest(**fields)


def manifest_map(**changes):
    """The manifest as a CBOR map with arbitrary changes (None deletes a key)."""
    m = cbor2.loads(manifest().encode())
    for k, v in changes.items():
        key = int(k[1:])
        if v is None:
            del m[key]
        else:
            m[key] = v
    return m


def signed(payload, signer, protected=None, unprotected=None, tag=C.COSE_SIGN1_TAG, canonical=True):
    protected = C.protected_header(signer.key_id) if protected is None else protected
    sig = signer.sign(C.sig_structure(protected, payload))
    body = [protected, {} if unprotected is None else unprotected, payload, sig]
    return cbor2.dumps(cbor2.CBORTag(tag, body) if tag is not None else body, canonical=canonical)


def crafted(signer, stranger):
    """[(label, envelope bytes, reason or None)]; `stranger` signs what no anchor trusts."""
    good = C.sign_manifest(manifest(), signer)
    flip_sig = bytearray(good)
    flip_sig[-1] ^= 1
    flip_name = bytearray(good)
    at = bytes(good).index(b"ckws") + 1
    flip_name[at] ^= 0x01  # "kws" -> "jws": still well-formed, no longer what was signed
    kid = signer.key_id

    def pmap(value):
        return cbor2.dumps(value, canonical=True)

    def raw_payload(**changes):
        return signed(cbor2.dumps(manifest_map(**changes), canonical=True), signer)

    long_prefix = bytearray(good)
    assert long_prefix[2] == 0x4D  # protected: bstr of 13 bytes, as 0x4d; re-encode its head as 0x58 0x0d
    long_prefix[2:3] = b"\x58\x0d"
    return [
        ("valid", good, None),
        ("signed by a key no anchor has", C.sign_manifest(manifest(), stranger), "unknown key"),
        ("last signature byte flipped", bytes(flip_sig), "bad signature"),
        ("model name changed after signing", bytes(flip_name), "bad signature"),
        ("ES384 (alg -35)", signed(manifest().encode(), signer, pmap({1: -35, 4: kid})), "unsupported algorithm"),
        ("alg as text", signed(manifest().encode(), signer, pmap({1: "ES256", 4: kid})), "malformed COSE_Sign1"),
        ("protected header with a content type", signed(manifest().encode(), signer, pmap({1: -7, 3: 60, 4: kid})),
         "malformed COSE_Sign1"),
        ("kid of 7 bytes", signed(manifest().encode(), signer, pmap({1: -7, 4: kid[:7]})), "malformed COSE_Sign1"),
        ("untagged COSE_Sign1", signed(manifest().encode(), signer, tag=None), "malformed COSE_Sign1"),
        ("COSE_Sign (tag 98)", signed(manifest().encode(), signer, tag=98), "malformed COSE_Sign1"),
        ("unprotected header not empty", signed(manifest().encode(), signer, unprotected={4: kid}),
         "malformed COSE_Sign1"),
        ("trailing byte", good + b"\x00", "malformed COSE_Sign1"),
        ("protected length in a longer head than needed", bytes(long_prefix), "malformed COSE_Sign1"),
        ("indefinite-length array", good[:1] + b"\x9f" + good[2:] + b"\xff", "malformed COSE_Sign1"),
        ("signature 63 bytes", good[:-66] + b"\x58\x3f" + good[-64:-1], "malformed COSE_Sign1"),
        ("larger than 512 bytes", signed(cbor2.dumps(manifest_map(k8="n" * 60, k9="v" * 60), canonical=True)
                                         + bytes(300), signer), "malformed COSE_Sign1"),
        ("empty", b"", "malformed COSE_Sign1"),
        ("manifest version 2", raw_payload(k1=2), "unsupported manifest version"),
        ("manifest with key 11", raw_payload(k11=0), "malformed manifest"),
        ("manifest without key 10", raw_payload(k10=None), "malformed manifest"),
        ("sequence number negative", raw_payload(k2=-1), "malformed manifest"),
        ("sequence number as text", raw_payload(k2="7"), "malformed manifest"),
        ("blob size 2^32", raw_payload(k7=1 << 32), "malformed manifest"),
        ("vendor id 15 bytes", raw_payload(k3=VENDOR[:15]), "malformed manifest"),
        ("digest algorithm SHA-384 (-43)", raw_payload(k6=[-43, BLOB_SHA]), "malformed manifest"),
        ("model name not ASCII", raw_payload(k8="kw\u00e9"), "malformed manifest"),
        ("model name with a newline", raw_payload(k8="kws\n"), "malformed manifest"),
        ("empty model version", raw_payload(k9=""), "malformed manifest"),
        ("component of 65 bytes", raw_payload(k5="c" * 65), "malformed manifest"),
        ("sequence in a longer head than needed",
         signed(manifest().encode().replace(b"\x02\x07", b"\x02\x18\x07", 1), signer), "malformed manifest"),
        ("payload not a map", signed(cbor2.dumps([1, 2]), signer), "malformed manifest"),
        ("largest sequence number", raw_payload(k2=(1 << 64) - 1), None),
    ]
