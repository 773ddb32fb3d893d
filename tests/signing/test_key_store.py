"""The service's key store and signed install packages on the host (signing/store.py, package.py version 2)."""

import hashlib
import os
import struct

import pytest

from tinymlaas.db import Database
from tinymlaas.package import PackageError, build_package, package_envelope, read_package
from tinymlaas.paths import INFERENCE_MODULE
from tinymlaas.signing.store import DEFAULT_CLASS, DEFAULT_VENDOR, KeyStore, last_sequence, next_sequence



def small_blob():
    from tinymlaas.paths import REPO

    return (REPO / "tests" / "vectors" / "softmax_rows.blob").read_bytes()


def anchors_of(store):
    return {bytes.fromhex(k): bytes.fromhex(v) for k, v in store.anchor_config().items()}


def test_first_use_creates_one_private_key_and_keeps_it(tmp_path):
    store = KeyStore(tmp_path / "keys")
    assert store.key_ids() == [] and store.current_kid() is None
    signer = store.signer()
    kid = signer.key_id.hex()
    assert store.key_ids() == [kid] and store.current_kid() == kid
    assert os.stat(tmp_path / "keys").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "keys" / (kid + ".pem")).st_mode & 0o777 == 0o600
    assert KeyStore(tmp_path / "keys").signer().public_point == signer.public_point   # the same key next time
    newer = store.new_key()
    assert store.current_kid() == kid and len(store.key_ids()) == 2       # a new key signs only when made current
    assert list(store.anchor_config()) == [kid, newer.key_id.hex()]      # every key trusted, the current first
    store.set_current(newer.key_id.hex())
    assert store.signer().key_id == newer.key_id


def test_sequence_numbers_only_grow_per_class_and_above_a_floor(tmp_path):
    db = Database(tmp_path / "t.db")
    assert [next_sequence(db, "aa") for _ in range(3)] == [1, 2, 3]
    assert next_sequence(db, "bb") == 1                   # per class
    assert next_sequence(db, "aa", floor=10) == 11        # above what a device has installed
    assert next_sequence(db, "aa") == 12 and last_sequence(db, "aa") == 12
    assert next_sequence(Database(tmp_path / "t.db"), "aa") == 13   # kept in the database


def test_package_version_2_carries_a_verified_manifest_of_its_sections(tmp_path):
    store = KeyStore(tmp_path / "keys")
    blob = small_blob()
    pkg = build_package(blob, "sm", "3", [], signer=store.signer(), sequence=7)
    assert struct.unpack_from("<H", pkg, 4)[0] == 2
    env = package_envelope(pkg)
    assert struct.unpack_from("<I", pkg, 28)[0] == len(env) <= 512 and pkg[32:32 + len(env)] == env
    r = read_package(pkg, anchors_of(store))
    m = r["manifest"]
    assert (m.sequence, m.name, m.version, m.component) == (7, "sm", "3", "model")
    assert m.blob_sha256 == hashlib.sha256(blob).digest() and m.blob_bytes == len(blob)
    assert (m.vendor_id, m.class_id) == (DEFAULT_VENDOR, DEFAULT_CLASS)
    assert r["envelope"] == env and r["blob_offset"] % 16 == 0 and r["blob"] == blob
    with pytest.raises(PackageError, match="unknown key"):
        read_package(pkg, anchors_of(KeyStore(tmp_path / "other")))
    v1 = pkg[:4] + struct.pack("<H", 1) + pkg[6:]
    with pytest.raises(PackageError, match=r"unsigned package \(version 1\)"):
        read_package(v1)


def test_device_defaults_are_the_hosts():
    """The MicroPython trust module's default vendor and class ids are signing.store's."""
    src = (INFERENCE_MODULE / "tinyml" / "trust.py").read_text()
    assert 'DEFAULT_VENDOR_HEX = "%s"' % DEFAULT_VENDOR.hex() in src
    assert 'DEFAULT_CLASS_HEX = "%s"' % DEFAULT_CLASS.hex() in src


def _first_signer(directory, start, out):
    start.wait()
    out.put(KeyStore(directory).signer().key_id.hex())


def test_processes_asking_for_the_first_key_at_once_share_one(tmp_path):
    """Test workers and the nodes of a group share a key store: the first key is made once, not once per process
    (each would have become an anchor that devices are given)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_first_signer, args=(tmp_path / "keys", start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    start.set()
    kids = {out.get(timeout=60) for _ in procs}
    for p in procs:
        p.join(10)
    assert len(kids) == 1 and KeyStore(tmp_path / "keys").key_ids() == sorted(kids)


def test_explain_reads_the_sequence_counter_of_the_devices_own_class(tmp_path):
    """Sequence numbers count per (class, component): what explain shows a device is its class's counter, not the
    default class's (a TFLM-firmware device's packages are numbered apart from the MicroPython module's)."""
    from tinymlaas.service.signing import PackageSigning, class_for_runtime

    db = Database(tmp_path / "t.db")
    tflm = class_for_runtime("tflm").hex()
    assert [next_sequence(db, tflm) for _ in range(5)][-1] == 5
    assert next_sequence(db, DEFAULT_CLASS.hex()) == 1
    caps = {"trust": {"key_ids": [], "vendor_id": DEFAULT_VENDOR.hex(), "class_id": tflm, "sequence": 3}}
    assert PackageSigning(db, tmp_path).sequence_note(caps) == {"installed": 3, "last_signed": 5, "next": 6,
                                                                 "behind": False}
