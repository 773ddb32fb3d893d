"""The service's key store: the ES256 keys it signs model manifests with, and the manifest sequence numbers.

Keys live in a directory beside the database (DATA/keys, mode 0700): one PKCS#8 PEM per key, named by its key id
(`<kid hex>.pem`, mode 0600, never replaced), and `current`, a one-line file with the kid of the key that signs
now (replaced by rename). The store creates a key the first time one is needed. Other keys stay in the store
(still trusted by devices that were given them) until removed by hand; `trust_anchors()` lists them all.

A PKCS#11 token would stand behind the same `Signer` seam (keys.py): `signer()` is the only place that turns
the current key id into something that signs.

Sequence numbers (docs/manifest.md) are per (class id, component) and live in the database, so that every
service process on one database signs from the same counter: `next_sequence` is one UPDATE ... RETURNING in a
transaction, never lower than a floor the caller knows of (e.g. what a device reports installed).
"""

import fcntl
import os
from pathlib import Path

from ..db import migration
from ..errors import UserError
from .keys import generate_key, key_id, load_signer
from .manifest import class_id, vendor_id

# The vendor a service signs as, and the device class of the MicroPython inference module (what runs a tmlb
# blob from a version 2 package). SUIT's recommendation: UUID v5 of a domain, then of a class name in it.
# ".example" (RFC 2606) because tinymlaas is not a vendor: an owner can set its own in the device config.
DEFAULT_VENDOR_DOMAIN = "tinymlaas.example"
DEFAULT_CLASS_NAME = "tinyml-micropython"
DEFAULT_VENDOR = vendor_id(DEFAULT_VENDOR_DOMAIN)
DEFAULT_CLASS = class_id(DEFAULT_VENDOR, DEFAULT_CLASS_NAME)

migration("signing", 1, """CREATE TABLE manifest_sequences (
    class_id TEXT NOT NULL,
    component TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    PRIMARY KEY (class_id, component))""")

CURRENT = "current"
LOCK = ".lock"       # held while the first key is made (signer())
KEYS_ENV = "TINYMLAAS_KEYS"  # a key store directory that overrides DATA/keys (one store for several data dirs)


def keys_dir(data_dir):
    """The key store of a service data directory: $TINYMLAAS_KEYS when set, else DATA/keys."""
    return Path(os.environ.get(KEYS_ENV) or Path(data_dir) / "keys")


def default_store():
    """The key store of the default data directory ($TINYMLAAS_DATA or ~/.tinymlaas)."""
    from ..service.config import DEFAULT_DATA

    return KeyStore(keys_dir(os.environ.get("TINYMLAAS_DATA") or DEFAULT_DATA))


class KeyStore:
    def __init__(self, directory):
        self.directory = Path(directory)

    def _ensure_dir(self):
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _pem(self, kid_hex):
        return self.directory / (kid_hex + ".pem")

    def key_ids(self):
        """Key ids (hex) of every key in the store, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.pem") if len(p.stem) == 16)

    def current_kid(self):
        """Hex key id of the signing key, or None before the first key."""
        try:
            kid = (self.directory / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        if not self._pem(kid).is_file():
            raise UserError("key store %s: current key %s has no key file" % (self.directory, kid))
        return kid

    def new_key(self, make_current=False):
        """A fresh P-256 key in the store -> its FileSigner. Becomes the signing key when asked (or when it is the
        first)."""
        self._ensure_dir()
        tmp = self.directory / (".new-%d.pem" % os.getpid())
        tmp.unlink(missing_ok=True)
        signer = generate_key(tmp)
        os.rename(tmp, self._pem(signer.key_id.hex()))
        if make_current or self.current_kid() is None:
            self.set_current(signer.key_id.hex())
        return signer

    def set_current(self, kid_hex):
        if not self._pem(kid_hex).is_file():
            raise UserError("no key %s in %s" % (kid_hex, self.directory))
        tmp = self.directory / (".current-%d" % os.getpid())
        tmp.write_text(kid_hex + "\n")
        os.replace(tmp, self.directory / CURRENT)

    def signer(self, kid_hex=None):
        """The Signer of `kid_hex` (default: the current key; created on first use)."""
        kid_hex = kid_hex or self.current_kid()
        if kid_hex is None:
            self._ensure_dir()
            # Processes sharing a store (the nodes of a group, the workers of a test run) may ask for the first key
            # at once: one creates it under the lock, the others find it. Without the lock each made a key of its
            # own, and every one of them became an anchor that devices were then given.
            with open(self.directory / LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                kid_hex = self.current_kid() or self.new_key().key_id.hex()
        signer = load_signer(self._pem(kid_hex))
        if signer.key_id.hex() != kid_hex:
            raise UserError("key file %s holds key %s" % (self._pem(kid_hex), signer.key_id.hex()))
        return signer

    def trust_anchors(self):
        """[65-byte point] of every key in the store, the current one first: what devices are given to trust (a
        first key is created when there is none, as the service would sign with it)."""
        current = self.current_kid() or self.signer().key_id.hex()
        kids = ([current] if current else []) + [k for k in self.key_ids() if k != current]
        return [self.signer(k).public_point for k in kids]

    def anchor_config(self):
        """{kid hex: point hex} of trust_anchors(), as a device config holds them (tinyml.cose.anchors)."""
        return {key_id(p).hex(): p.hex() for p in self.trust_anchors()}


def next_sequence(db, class_id_hex, component="model", floor=0):
    """The next manifest sequence number of (class, component): one more than the last one signed and more than
    `floor`. Atomic across processes on the same database."""
    # Insert-if-absent, then one UPDATE ... RETURNING: the UPDATE's row lock orders concurrent signers on
    # PostgreSQL (two service nodes signing the first package of a class at once: a SELECT-then-INSERT raised a
    # unique violation there), SQLite's write lock does on SQLite.
    floor = int(floor)
    with db.transaction() as tx:
        tx.execute("INSERT INTO manifest_sequences (class_id, component, sequence) VALUES (?, ?, 0) "
                   "ON CONFLICT (class_id, component) DO NOTHING", (class_id_hex, component))
        row = tx.execute("UPDATE manifest_sequences SET sequence = CASE WHEN sequence > ? THEN sequence + 1 "
                         "ELSE ? END WHERE class_id=? AND component=? RETURNING sequence",
                         (floor, floor + 1, class_id_hex, component)).fetchone()
    return row[0]


def last_sequence(db, class_id_hex, component="model"):
    """The last sequence number signed for (class, component), 0 when none."""
    row = db.query_one("SELECT sequence FROM manifest_sequences WHERE class_id=? AND component=?",
                       (class_id_hex, component))
    return row["sequence"] if row else 0
