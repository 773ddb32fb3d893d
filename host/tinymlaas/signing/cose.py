"""COSE_Sign1 (RFC 9052 §4.2) with ES256 over the manifest: build on the host, verify on the host.

The profile is fixed so that the device readers can be small and exact (docs/manifest.md):

    COSE_Sign1_Tagged = #6.18([protected: bstr .cbor {1: -7, 4: kid (8 bytes)}, unprotected: {},
                               payload: bstr .cbor manifest, signature: bstr .size 64])

The signature covers Sig_structure = ["Signature1", protected, h'', payload] (§4.4). Everything is
deterministically encoded; any other encoding, a header beyond these two, or trailing bytes are refused.
"""

from collections.abc import Mapping

import cbor2

from . import manifest as M
from .keys import KEY_ID_BYTES, SIGNATURE_BYTES, verify_es256

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_KID = 4
ALG_ES256 = -7
ENVELOPE_MAX_BYTES = 512  # the device reads the envelope into RAM; a maximal manifest needs about 420


class SignatureError(M.ManifestError):
    """Refused envelope. `reason`: malformed COSE_Sign1, unsupported algorithm, unknown key, bad signature,
    malformed manifest, unsupported manifest version (the same words as the MicroPython and C verifiers)."""


def protected_header(kid):
    return cbor2.dumps({HEADER_ALG: ALG_ES256, HEADER_KID: bytes(kid)}, canonical=True)


def sig_structure(protected, payload):
    return cbor2.dumps(["Signature1", bytes(protected), b"", bytes(payload)], canonical=True)


def sign1(payload, signer):
    """COSE_Sign1_Tagged bytes of `payload` signed by `signer` (keys.Signer)."""
    protected = protected_header(signer.key_id)
    signature = signer.sign(sig_structure(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, bytes(payload), signature]), canonical=True)


def sign_manifest(manifest, signer):
    return sign1(manifest.encode(), signer)


def open_envelope(data):
    """Check the envelope's structure -> (kid, protected bytes, payload bytes, signature). No crypto yet."""
    if len(data) > ENVELOPE_MAX_BYTES:
        raise SignatureError("malformed COSE_Sign1", "larger than %d bytes" % ENVELOPE_MAX_BYTES)
    try:
        env = M.strict_loads(data, "malformed COSE_Sign1")
    except M.ManifestError as e:
        raise SignatureError(e.reason, str(e)) from None
    if not isinstance(env, cbor2.CBORTag) or env.tag != COSE_SIGN1_TAG:
        raise SignatureError("malformed COSE_Sign1", "not tagged 18 (COSE_Sign1)")
    v = env.value
    # cbor2 decodes the contents of a tag as immutable containers (tuple, frozendict)
    if (not isinstance(v, (list, tuple)) or len(v) != 4 or type(v[0]) is not bytes or not isinstance(v[1], Mapping)
            or len(v[1]) or type(v[2]) is not bytes or type(v[3]) is not bytes):
        raise SignatureError("malformed COSE_Sign1", "must be [protected bstr, {}, payload bstr, signature bstr]")
    protected, _, payload, signature = v
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError("malformed COSE_Sign1", "signature must be %d bytes" % SIGNATURE_BYTES)
    try:
        hdr = M.strict_loads(protected, "malformed COSE_Sign1")
    except M.ManifestError as e:
        raise SignatureError(e.reason, "protected header: " + str(e)) from None
    if not isinstance(hdr, dict) or tuple(hdr) != (HEADER_ALG, HEADER_KID):
        raise SignatureError("malformed COSE_Sign1", "protected header must be exactly {1: alg, 4: kid}")
    alg, kid = hdr[HEADER_ALG], hdr[HEADER_KID]
    if type(alg) is not int:
        raise SignatureError("malformed COSE_Sign1", "alg must be an integer")
    if type(kid) is not bytes or len(kid) != KEY_ID_BYTES:
        raise SignatureError("malformed COSE_Sign1", "kid must be %d bytes" % KEY_ID_BYTES)
    if alg != ALG_ES256:  # judged last, like the device readers: a well-formed header with another algorithm
        raise SignatureError("unsupported algorithm", "alg %d, only ES256 (-7)" % alg)
    return kid, protected, payload, signature


def verify1(data, anchors):
    """Verified payload bytes of a COSE_Sign1 envelope. `anchors`: {kid: 65-byte point}. Raises SignatureError."""
    kid, protected, payload, signature = open_envelope(bytes(data))
    point = anchors.get(kid)
    if point is None:
        raise SignatureError("unknown key", "kid %s is not a trust anchor" % kid.hex())
    if not verify_es256(point, sig_structure(protected, payload), signature):
        raise SignatureError("bad signature")
    return payload


def verify_manifest(data, anchors):
    """The Manifest of a signed envelope, after the signature verified. Raises SignatureError / ManifestError."""
    return M.decode(verify1(data, anchors))
