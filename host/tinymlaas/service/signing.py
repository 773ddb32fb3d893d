"""The service's side of signed packages (docs/manifest.md): it signs every package it builds for a device with
its key store's current key, and says beforehand when a device would refuse one.

What a device accepts it reports in its TinyML object (/32770/0/24-28, docs/tinyml-object.md): the key ids it
trusts, its vendor and class ids, the sequence number of its active model. A package is signed for the class of
the variant's runtime (every MicroPython device runs a tmlb blob alike, TFLM firmware another format) and the
service's vendor; its sequence number is the next of that (class, component) counter, and above what the device
has installed, so a device the counter is behind (a restored database, another service) still takes it.
"""

from ..signing import class_id
from ..signing.anchors import chain_for
from ..signing.store import DEFAULT_CLASS, DEFAULT_VENDOR, KeyStore, keys_dir, last_sequence, next_sequence
from .selection import RUNTIME_ARTIFACTS

COMPONENT = "model"


def class_for_runtime(runtime, vendor=DEFAULT_VENDOR):
    """The device class a variant of `runtime` is signed for: the MicroPython inference module (its viper, C and
    co-processor kernels run the same blobs) or the TFLM firmware."""
    return class_id(vendor, "tflm") if runtime == "tflm" else DEFAULT_CLASS


def reported_trust(key):
    """What a device reported about the packages it accepts, from its TinyML object's values keyed by normalized
    name (core.normalize_capabilities): {"key_ids", "vendor_id", "class_id", "sequence"}; None when it reports
    nothing of it (a client from before signed packages)."""
    if key.get("class_id") in (None, ""):
        return None
    anchors = str(key.get("trust_anchors") or "")
    return {"key_ids": [k for k in anchors.split(",") if k], "vendor_id": str(key.get("vendor_id") or ""),
            "class_id": str(key["class_id"]), "sequence": int(key.get("installed_sequence") or 0)}


class PackageSigning:
    def __init__(self, db, data_dir):
        self.db = db
        self.keys = KeyStore(keys_dir(data_dir))

    def judge(self, caps):
        """What capabilities carry for the selection and explain: {"refusals": {runtime: [reason]}, "sequence":
        sequence_note, "key_id": the signing key's id}; selection.judge rejects a variant its runtime's reasons
        name. The key and vendor reasons are the same for every runtime: worked out once per device."""
        kid = self.keys.signer().key_id.hex()
        trust = caps.get("trust")
        if trust is None:
            unsigned = ["device reports no signed-package support (TinyML /32770/0/24-28): it refuses "
                        "version 2 packages"]
            refusals = {rt: list(unsigned) for rt in RUNTIME_ARTIFACTS}
        else:
            common = self._key_refusals(trust, kid)
            refusals = {rt: common + self._class_refusals(trust, rt) for rt in RUNTIME_ARTIFACTS}
        return {"refusals": refusals, "sequence": self.sequence_note(caps), "key_id": kid}

    def _key_refusals(self, trust, kid):
        """Why a device that reported `trust` would refuse any package signed now by key `kid`, in the device's
        refusal words (docs/manifest.md)."""
        reasons = []
        if kid not in trust["key_ids"]:
            reason = "unknown key: the device trusts %s, not this service's key %s" % (
                ", ".join(trust["key_ids"]) or "no key", kid)
            pending = chain_for(self.keys, trust["key_ids"])   # a rotation it can follow (service/rotation.py)
            reasons.append(reason + ("; the service sends it %d anchor update(s) that lead to it" % len(pending)
                                     if pending else "; no anchor update leads there: provision it again"))
        if trust["vendor_id"] != DEFAULT_VENDOR.hex():
            reasons.append("wrong vendor: device vendor %s, this service signs as %s"
                           % (trust["vendor_id"], DEFAULT_VENDOR.hex()))
        return reasons

    @staticmethod
    def _class_refusals(trust, runtime):
        want = class_for_runtime(runtime).hex()
        if trust["class_id"] != want:
            return ["wrong device class: device class %s, a %s variant is signed for %s"
                    % (trust["class_id"], runtime, want)]
        return []

    def sequence_note(self, caps):
        """The sequence numbers explain shows: the device's installed one, the last one signed and the one the
        next package gets (above both: `behind` says the service's counter was behind the device)."""
        trust = caps.get("trust")
        installed = trust["sequence"] if trust else 0
        last = last_sequence(self.db, trust["class_id"] if trust else DEFAULT_CLASS.hex(), COMPONENT)
        return {"installed": installed, "last_signed": last, "next": max(last, installed) + 1,
                "behind": last < installed}

    def build(self, blob, name, version, vectors, runtime, floor=0, anomaly=None, head=None):
        """Package bytes signed by the current key, with the next sequence number of the variant's class above
        `floor` (the device's installed sequence number); anomaly: an anomaly model's score and threshold."""
        from ..package import build_package

        klass = class_for_runtime(runtime)
        seq = next_sequence(self.db, klass.hex(), COMPONENT, floor)
        return build_package(blob, name, version, vectors, signer=self.keys.signer(), sequence=seq,
                             vendor=DEFAULT_VENDOR, klass=klass, anomaly=anomaly,
                             head=head), seq

    def device_config(self):
        """The device config keys that make a device trust this service (emulated devices, provisioning)."""
        from ..signing.anchors import device_anchors  # all keys but those an anchor update revoked

        return {"trust_anchors": device_anchors(self.keys)}
