"""Trust-anchor updates: how a key rotation reaches devices without re-provisioning (docs/manifest.md, "Key
rotation").

An anchor update is a COSE_Sign1 (the manifest's profile: ES256, kid header, deterministic CBOR, <= 512 bytes)
signed by a key the device trusts now, over

    anchor-update = {1 => 1,               ; version
                     2 => uint,            ; anchor sequence: the device takes only one above its last
                     3 => bstr .size 16,   ; vendor id: the device's
                     4 => bstr .size 65,   ; the new trust anchor, SEC 1 uncompressed point
                     ? 5 => bstr .size 8}  ; kid of an anchor to drop (e.g. the signer's own)

A device that verifies it adds the new anchor, drops the revoked one, and keeps the result and the sequence
number power-safely (inference_module/tinyml/anchors.py). A rotation makes one update, signed by the key it
replaces; a device some rotations behind gets the chain in sequence order, each one signed by a key the previous
one gave it. The updates are kept in the key store (DATA/keys/anchor-updates/<sequence>.cose) for the service to
push to the devices that still trust only older keys.
"""

import os
from dataclasses import dataclass

import cbor2

from ..errors import UserError
from .cose import SignatureError, open_envelope, sign1, verify1
from .keys import KEY_ID_BYTES, POINT_BYTES, key_id, load_public_point
from .manifest import ManifestError, strict_loads
from .store import DEFAULT_VENDOR

UPDATE_VERSION = 1
K_VERSION, K_SEQUENCE, K_VENDOR, K_ANCHOR, K_REVOKE = 1, 2, 3, 4, 5
MAX_ANCHORS = 8  # what a device keeps at most (its config and RAM); an update that would exceed it is refused
UPDATES_DIR = "anchor-updates"

R_MALFORMED = "malformed anchor update"  # the device's words (tinyml/anchors.py)


@dataclass(frozen=True)
class AnchorUpdate:
    sequence: int
    vendor_id: bytes
    anchor: bytes  # 65-byte point
    revoke: bytes = None  # 8-byte kid, or None

    def encode(self):
        m = {K_VERSION: UPDATE_VERSION, K_SEQUENCE: self.sequence, K_VENDOR: bytes(self.vendor_id),
             K_ANCHOR: bytes(self.anchor)}
        if self.revoke is not None:
            m[K_REVOKE] = bytes(self.revoke)
        return cbor2.dumps(m, canonical=True)

    @property
    def anchor_kid(self):
        return key_id(self.anchor)


def decode(payload):
    """AnchorUpdate from verified payload bytes; raises SignatureError(R_MALFORMED)."""
    try:
        m = strict_loads(payload, R_MALFORMED)
    except ManifestError:
        raise SignatureError(R_MALFORMED, "not deterministically encoded CBOR") from None
    if (not isinstance(m, dict) or tuple(m) not in ((1, 2, 3, 4), (1, 2, 3, 4, 5)) or m[K_VERSION] != UPDATE_VERSION
            or type(m[K_SEQUENCE]) is not int or not 0 < m[K_SEQUENCE] < 1 << 64
            or type(m[K_VENDOR]) is not bytes or len(m[K_VENDOR]) != 16
            or type(m[K_ANCHOR]) is not bytes or len(m[K_ANCHOR]) != POINT_BYTES
            or K_REVOKE in m and (type(m[K_REVOKE]) is not bytes or len(m[K_REVOKE]) != KEY_ID_BYTES)):
        raise SignatureError(R_MALFORMED, "must be {1: 1, 2: sequence, 3: vendor (16), 4: point (65), ?5: kid (8)}")
    try:
        load_public_point(m[K_ANCHOR])
    except UserError:  # a point off the curve is no anchor: the devices' words for it
        raise SignatureError(R_MALFORMED, "the new anchor is not a P-256 point") from None
    return AnchorUpdate(m[K_SEQUENCE], m[K_VENDOR], m[K_ANCHOR], m.get(K_REVOKE))


def describe(envelope):
    """(signer kid, AnchorUpdate) of an update envelope, structure checked, signature not verified (what the key
    store keeps it made itself)."""
    kid, _, payload, _ = open_envelope(envelope)
    return kid, decode(payload)


def sign_update(update, signer):
    return sign1(update.encode(), signer)


def verify_update(data, anchors):
    """The AnchorUpdate of an envelope that verifies under `anchors` ({kid: point})."""
    return decode(verify1(data, anchors))


def apply(anchors, last_sequence, update, vendor=DEFAULT_VENDOR):
    """The device's rule on the host (for `explain` and tests): -> (new {kid: point}, new sequence), or raises
    SignatureError with the device's reason."""
    if update.vendor_id != bytes(vendor):
        raise SignatureError("wrong vendor")
    if update.sequence <= last_sequence:
        raise SignatureError("rollback")
    out = dict(anchors)
    out[update.anchor_kid] = bytes(update.anchor)
    if update.revoke is not None:
        if update.revoke == update.anchor_kid:
            raise SignatureError(R_MALFORMED, "revokes the anchor it adds")
        out.pop(bytes(update.revoke), None)
    if len(out) > MAX_ANCHORS:
        raise SignatureError("too many anchors")
    return out, update.sequence


# --- the key store's side: rotation and the updates it made


def _updates_dir(store):
    return store.directory / UPDATES_DIR


def updates(store):
    """[(sequence, envelope bytes)] of every anchor update the store made, in sequence order."""
    d = _updates_dir(store)
    if not d.is_dir():
        return []
    out = []
    for p in d.glob("*.cose"):
        if p.stem.isdigit():
            out.append((int(p.stem), p.read_bytes()))
    return sorted(out)


def rotate(store, revoke_old=False, vendor=DEFAULT_VENDOR):
    """A new signing key, and the anchor update that hands it to devices, signed by the key it replaces (revoking
    that one when asked). -> (new signer, AnchorUpdate, envelope bytes). The update is written before the new key
    becomes current, so a service never signs with a key that no update announces."""
    old = store.signer()
    done = updates(store)
    seq = (done[-1][0] if done else 0) + 1
    new = store.new_key(make_current=False)
    update = AnchorUpdate(seq, bytes(vendor), new.public_point, old.key_id if revoke_old else None)
    envelope = sign_update(update, old)
    d = _updates_dir(store)
    d.mkdir(mode=0o700, exist_ok=True)
    tmp = d / (".%d-%d.tmp" % (seq, os.getpid()))
    tmp.write_bytes(envelope)
    os.link(tmp, d / ("%06d.cose" % seq))  # refuses to replace an update another rotation wrote
    tmp.unlink()
    store.set_current(new.key_id.hex())
    return new, update, envelope


def revoked(store):
    """Hex kids that an anchor update of the store revoked: devices that took it no longer trust them, and a
    device provisioned now is not given them."""
    return {describe(envelope)[1].revoke.hex() for _, envelope in updates(store)
            if describe(envelope)[1].revoke is not None}


def device_anchors(store):
    """{kid hex: point hex} a device is provisioned with: every key of the store but the revoked ones, the current
    first (store.anchor_config less revoked())."""
    gone = revoked(store)
    return {kid: point for kid, point in store.anchor_config().items() if kid not in gone}


def key_rows(store):
    """[{kid, current, revoked, created_at, announced_by_update}] of every key in the store (`keys list`, the
    console's keys page)."""
    current = store.current_kid()
    gone = revoked(store)
    announced = {describe(envelope)[1].anchor_kid.hex(): seq for seq, envelope in updates(store)}
    return [{"kid": kid, "current": kid == current, "revoked": kid in gone,
             "created_at": int((store.directory / (kid + ".pem")).stat().st_mtime),
             "announced_by_update": announced.get(kid)} for kid in store.key_ids()]


def chain_for(store, device_kids, device_sequence=0):
    """The anchor updates (envelope bytes, in order) a device must take to trust the current key: those above
    its anchor sequence, starting with the first one signed by a key it trusts. [] when it already trusts the
    current key, or when no chain reaches it (then it must be provisioned again)."""
    current = store.current_kid()
    have = {bytes.fromhex(k) for k in device_kids}
    if current is None or bytes.fromhex(current) in have:
        return []
    out = []
    for seq, envelope in updates(store):
        if seq <= device_sequence:
            continue
        kid, u = describe(envelope)
        if kid not in have:
            continue
        have.add(u.anchor_kid)
        if u.revoke is not None:
            have.discard(bytes(u.revoke))
        out.append(envelope)
    return out if bytes.fromhex(current) in have else []
