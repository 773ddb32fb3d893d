"""Trust-anchor updates on the device: how it follows a key rotation without being provisioned again (host side:
tinymlaas/signing/anchors.py; docs/manifest.md, "Key rotation").

An update is a COSE_Sign1 of the manifest's profile, signed by a key the device trusts now, over the CBOR map
{1: 1 version, 2: anchor sequence, 3: vendor id (16 bytes), 4: new anchor (65-byte point), ?5: kid to drop}.
The device takes it when the signature verifies under its anchors, the vendor is its own and the sequence is above
the last one it took; it then trusts the new key, drops the revoked one, and keeps both the anchors and the
sequence in DATA_DIR/trust-anchors.json, written whole to a temporary file and renamed over the old one (a power
cut leaves the old set or the new one). That file, when present, replaces the config's "trust_anchors".

    anchors.load(data_dir)                       # -> ({kid hex: point hex}, sequence) or None
    seq = anchors.apply(envelope, trust, seq, data_dir)   # raises cose.SignatureError(.reason)
    anchors.release()                            # the module out of the heap until the next update

The verifier (tinyml.cose, p256) is imported only while an update is checked, and dropped afterwards unless it
was loaded before (tinyml/trust.py's rule), so a device that never rotates pays nothing for this.
"""

import json

FILE = "/trust-anchors.json"
MAX_ANCHORS = 8
KID_BYTES = 8
R_MALFORMED = "malformed anchor update"


def load(data_dir):
    """({kid hex: point hex}, anchor sequence) from the anchors file, or None without one. A damaged file raises
    ValueError: the device must then trust nothing rather than fall back to anchors an update revoked."""
    try:
        with open(data_dir + FILE) as f:
            text = f.read()
    except OSError:
        return None
    try:
        d = json.loads(text)
        anchors, seq = d["trust_anchors"], d["sequence"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("trust-anchors.json is damaged")
    if not isinstance(anchors, dict) or not isinstance(seq, int):
        raise ValueError("trust-anchors.json is damaged")
    return anchors, seq


def _store(data_dir, anchors, seq):
    import os

    path = data_dir + FILE
    hexed = {}
    for kid, point in anchors.items():
        hexed["".join("%02x" % b for b in kid)] = "".join("%02x" % b for b in point)
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps({"trust_anchors": hexed, "sequence": seq}))
    try:
        os.rename(path + ".tmp", path)
    except OSError:  # a filesystem without an atomic replace: the old file goes first
        os.remove(path)
        os.rename(path + ".tmp", path)


def release():
    """Drop this module from the heap (it is imported again by the next update or boot)."""
    from . import unload

    unload("anchors")


def decode(payload):
    """(sequence, vendor id, point, revoked kid or None) of an update's payload; SignatureError(R_MALFORMED)."""
    from . import cose

    r = cose._Reader(memoryview(payload), R_MALFORMED)
    major, count = r.head()
    if major != cose.MT_MAP or count not in (4, 5):
        r.fail()
    r.expect(cose.MT_UINT, 1)
    r.expect(cose.MT_UINT, 1)  # version 1
    r.expect(cose.MT_UINT, 2)
    seq = r.uint()
    r.expect(cose.MT_UINT, 3)
    vendor = r.fixed(16)
    r.expect(cose.MT_UINT, 4)
    point = r.fixed(65)
    revoke = None
    if count == 5:
        r.expect(cose.MT_UINT, 5)
        revoke = r.fixed(KID_BYTES)
    r.end()
    if seq == 0 or cose.p256.decode_point(point) is None:  # a point off the curve is no anchor
        r.fail()
    return seq, vendor, point, revoke


def apply(envelope, trust, sequence, data_dir):
    """Take an anchor update: verified, checked against `trust` (a tinyml.trust.Trust: its anchors are replaced)
    and the last anchor `sequence`, stored -> the new sequence. Refusals raise cose.SignatureError: the anchor
    update's own malformed-ness, or the envelope's words (unknown key, bad signature), wrong vendor, rollback,
    too many anchors."""
    import hashlib

    from .trust import _loaded, _release

    was = _loaded()
    from . import cose

    try:
        if trust is None or not trust.anchors:
            raise cose.SignatureError(cose.R_KEY)
        seq, vendor, point, revoke = decode(cose.verify_payload(envelope, trust.anchors))
    finally:
        SignatureError = cose.SignatureError
        del cose
        _release(was)
    if vendor != trust.vendor_id:
        raise SignatureError("wrong vendor")
    if seq <= sequence:
        raise SignatureError("rollback")
    kid = hashlib.sha256(point).digest()[:KID_BYTES]
    if revoke == kid:
        raise SignatureError(R_MALFORMED)  # would drop the anchor it adds
    new = dict(trust.anchors)
    new[kid] = point
    if revoke is not None:
        new.pop(revoke, None)
    if len(new) > MAX_ANCHORS:
        raise SignatureError("too many anchors")
    _store(data_dir, new, seq)
    trust.anchors = new
    return seq
