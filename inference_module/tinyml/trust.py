"""What a device accepts model packages from (docs/manifest.md): its trust anchors, vendor and class, and the check
the installer runs on a package's signed manifest before anything is marked Downloaded.

    trust = Trust.from_config(device_config)      # "trust_anchors", "vendor_id", "class_id"
    manifest, refusal = check(envelope, trust, installed)   # refusal: (LwM2M Update Result, reason) or None
"""

# signing.store's DEFAULT_VENDOR / DEFAULT_CLASS: UUID v5 of "tinymlaas.example", of "tinyml-micropython" in it
DEFAULT_VENDOR_HEX = "4f920749ba0c543ea1fbdcc51f34aca2"
DEFAULT_CLASS_HEX = "3d9edef1bf365372acd8ea6e51f95fb9"

INTEGRITY_FAILURE = 5
UNSUPPORTED_PACKAGE = 6
# Refusal reasons (cose.verify's, cose.admit's) -> Update Result: bytes from no trusted signer and a replayed
# older manifest are integrity failures; what this device cannot read or is not for it, an unsupported type
_RESULT_FOR_REASON = {"unknown key": INTEGRITY_FAILURE, "bad signature": INTEGRITY_FAILURE,
                      "rollback": INTEGRITY_FAILURE}


def _loaded():
    import sys

    return "tinyml.cose" in sys.modules


def _release(was_loaded):
    """Drop the verifier's modules until the next package, unless something had imported them before: on a port
    that loads code into the heap (unix, or .mpy files on a board's filesystem) they hold ~12 KB (x64) that a
    model's arena may need; frozen code costs next to nothing and stays (tinyml.unload)."""
    if not was_loaded:
        from . import unload

        unload("cose", "p256")


def intern_verifier():
    """Import the verifier once and drop it again. Its names stay interned: on the unix port, or with .mpy files on
    a board's filesystem, interned names live in the heap (~3.4 KB), where the import put them; a board with the
    verifier frozen has them in flash. Called before any model is loaded, the names sit below it; imported for the
    first time during an install, they land inside the block the next model's arena needs (esp32 profile,
    measured: 76 KB largest free block after updates instead of 91 KB). tinyml_device.py does not call it yet:
    at its boot it made a bootstrapped OSCORE device fail to come back after a restart (tests/e2e/
    test_bootstrap.py), not understood yet; the installer's heap test calls it, as a frozen verifier would be."""
    was = _loaded()
    from . import cose  # noqa: F401

    del cose
    _release(was)


class Trust:
    """{kid: 65-byte point} trust anchors, and this device's vendor and class ids (16 bytes each)."""

    def __init__(self, anchors, vendor_id, class_id):
        self.anchors = anchors
        self.vendor_id = vendor_id
        self.class_id = class_id

    @classmethod
    def from_config(cls, cfg):
        """From a device config: "trust_anchors" {kid hex: point hex} (signing.keys.anchor_config), "vendor_id"
        and "class_id" (hex; default tinymlaas's). Raises ValueError naming a bad anchor or id.

        Runs at boot, so it checks what it can without the verifier (hex, sizes, an uncompressed point, the kid
        its point's hash): importing tinyml.cose and p256 here and dropping them again left holes and interned
        names in the heap that cost the model's arena 17 KB of its largest free block (esp32 profile). Whether a
        point is on the curve the verifier judges when it first uses it (an off-curve anchor verifies nothing)."""
        from binascii import unhexlify
        from hashlib import sha256

        anchors = {}
        try:
            for kid_hex, point_hex in (cfg.get("trust_anchors") or {}).items():
                kid, point = unhexlify(kid_hex), unhexlify(point_hex)
                if len(point) != 65 or point[0] != 4 or sha256(point).digest()[:len(kid)] != kid or len(kid) != 8:
                    raise ValueError("device config: bad trust anchor")
                anchors[kid] = point
            vendor = unhexlify(cfg.get("vendor_id") or DEFAULT_VENDOR_HEX)
            klass = unhexlify(cfg.get("class_id") or DEFAULT_CLASS_HEX)
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(str(e) if str(e).startswith("device config") else "device config: bad trust anchor, "
                             "vendor_id or class_id (hex expected)")
        if len(vendor) != 16 or len(klass) != 16:
            raise ValueError("device config: vendor_id and class_id must be 16 bytes")
        return cls(anchors, vendor, klass)

    @classmethod
    def of_device(cls, cfg, data_dir):
        """What a device trusts: its config's anchors, or those a signed anchor update gave it (data_dir's
        trust-anchors.json, tinyml/anchors.py), which replace them; anchor_sequence = that update's number.
        ValueError when either is damaged: the device must then trust nothing."""
        from . import anchors as stored_anchors

        try:
            stored = stored_anchors.load(data_dir)
        finally:
            stored_anchors.release()
        trust = cls.from_config(dict(cfg, trust_anchors=stored[0]) if stored else cfg)
        trust.anchor_sequence = stored[1] if stored else 0
        return trust

    def key_ids(self):
        """Comma list of the anchors' key ids in hex, sorted (TinyML /32770/0/26)."""
        return ",".join(sorted("".join("%02x" % b for b in k) for k in self.anchors))


def check(envelope, trust, installed):
    """(manifest, None) when `envelope` verifies under `trust`'s anchors and cose.admit admits it against
    `installed` ((sequence, blob sha256) or None); else (None, (Update Result, reason))."""
    import gc

    if trust is None or not trust.anchors:
        return None, (INTEGRITY_FAILURE, "unknown key (this device has no trust anchors)")
    was = _loaded()
    from . import cose

    gc.collect()  # the verifier's big integers want small blocks, not what the hashing pass left
    try:
        cose.verify(envelope, trust.anchors)
        # the manifest kept from here on is made again after a collection, at the bottom of the heap: made right
        # after the verifier's ~1.4 MB of big-integer garbage, it would sit wherever that pushed the allocator,
        # often inside the free block the next model's arena needs (measured: up to 12 % of it)
        gc.collect()
        m = cose.decode_manifest(cose.open_envelope(envelope)[2])
        why = cose.admit(m, trust.vendor_id, trust.class_id, installed)
    except cose.SignatureError as e:
        return None, (_RESULT_FOR_REASON.get(e.reason, UNSUPPORTED_PACKAGE), e.reason)
    finally:
        del cose
        _release(was)
        gc.collect()
    if why == "rollback":
        return None, (INTEGRITY_FAILURE, "rollback (sequence %d, installed %d)" % (m.sequence, installed[0]))
    if why:
        return None, (UNSUPPORTED_PACKAGE, why)
    return m, None
