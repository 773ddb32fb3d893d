"""Signed model manifests (docs/manifest.md): ES256 keys (keys.py), the SUIT-shaped manifest (manifest.py) and its
COSE_Sign1 envelope (cose.py). The device-side verifiers are inference_module/tinyml/cose.py (MicroPython) and
inference_module/c/tml_cose.c (C); all three give the same answer for the same bytes."""

from .cose import SignatureError, sign_manifest, verify_manifest
from .keys import FileSigner, Signer, generate_key, key_id, load_public_point, load_signer
from .manifest import Manifest, ManifestError, class_id, vendor_id

__all__ = ["FileSigner", "Manifest", "ManifestError", "SignatureError", "Signer", "class_id", "generate_key",
           "key_id", "load_public_point", "load_signer", "sign_manifest", "vendor_id", "verify_manifest"]
