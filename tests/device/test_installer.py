"""Installer (LwM2M object 5 back end): happy path, every failure result code, and crash safety -- a reboot at
any point leaves either the old or the new model active, and that model passes its golden vectors."""

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import time

import numpy as np
import pytest

import zoo
from blobkit import BlobBuilder, INT8, COPY, rehash
from tinymlaas.blob import reference
from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import device_trust
from tinymlaas.package import build_package, read_package, PackageError
from tinymlaas.signing import cose as host_cose, manifest as host_manifest
from tinymlaas.signing.store import default_store

# What the emulated devices are provisioned with: the test session's key store (tests/conftest.py)
TRUST = "from tinyml.trust import Trust\nTRUST = Trust.from_config(%r)\n" % (device_trust(),)


def _vectors(blob, seed, n=2):
    rng = np.random.default_rng(seed)
    from tinymlaas.blob.reader import parse
    b = parse(blob)
    out = []
    for _ in range(n):
        ins = [rng.integers(-128, 128, size=b.tensors[i].shape, dtype=np.int8) for i in b.inputs]
        out.append((ins, reference.run(blob, ins)))
    return out


def net_package(seed, version=None, vectors=None, sequence=None, **signing):
    blob = dict(zoo.all_cases(seed))["small_net"].build()
    return build_package(blob, "net%d" % seed, version or "1.%d" % seed,
                         _vectors(blob, seed) if vectors is None else vectors, sequence=sequence, **signing)


def raw_package(blob, meta, vec=b"", nvec=0, magic=b"TMLP", version=2, manifest_blob=None):
    """A package assembled by hand (the host writer refuses what these tests need), signed by the session's key
    for `manifest_blob` (default: the blob itself); version 1 has no envelope."""
    meta_raw = json.dumps(meta).encode()
    env = b""
    if version == 2:
        m = host_manifest.for_package(blob if manifest_blob is None else manifest_blob, vec, "x", "1",
                                      time.time_ns() // 1000 + 10 ** 9,  # newer than what build_package signs
                                      host_manifest.vendor_id("tinymlaas.example"),
                                      host_manifest.class_id(host_manifest.vendor_id("tinymlaas.example"),
                                                             "tinyml-micropython"))
        env = host_cose.sign_manifest(m, default_store().signer())
    meta_raw += b" " * ((-(32 + len(env) + len(meta_raw) + len(vec))) % 16)
    body = struct.pack("<4sHHIIIIII", magic, version, 32, len(meta_raw), len(vec), len(blob), nvec, 0, len(env))
    body += env + meta_raw + vec + blob
    return body + hashlib.sha256(body).digest()


INSTALL = TRUST.replace("%", "%%") + """
import sys
import tinyml.installer as I
root = %r
inst = I.Installer(root, trust=TRUST)
def install(path, chunk=512, size=True):
    f = open(path, 'rb'); f.seek(0, 2); n = f.tell(); f.seek(0)
    inst.begin(n if size else None)
    off = 0
    while True:
        b = f.read(chunk)
        if not b:
            break
        inst.write(off, b)
        off += len(b)
    f.close()
    inst.finish()
    return inst.activate()
def attempt(path, **kw):
    try:
        install(path, **kw)
        print('INSTALLED', inst.active()['name'])
    except I.InstallError as e:
        print('RESULT', e.result, e.message)
    a = inst.active()
    print('ACTIVE', a and a['name'], a and a['version'])
"""


@pytest.fixture
def flash(tmp_path):
    d = tmp_path / "flash"
    return d


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_host_writer_round_trip_and_checks():
    pkg = net_package(1)
    r = read_package(pkg)
    assert r["meta"]["name"] == "net1" and r["meta"]["vectors"] == 2 and r["blob_offset"] % 16 == 0
    assert len(r["vectors"]) == 2 and len(r["vectors"][0][0][0]) == 96
    with pytest.raises(PackageError, match="SHA-256"):
        read_package(pkg[:100] + bytes([pkg[100] ^ 1]) + pkg[101:])
    blob = dict(zoo.all_cases(1))["small_net"].build()
    with pytest.raises(PackageError, match="takes 96 bytes"):
        build_package(blob, "x", "1", [([b"\0" * 5], [b"\0" * 3])])


def test_install_upgrade_and_load_active(tmp_path, flash, mpy_script):
    p1, p2 = _write(tmp_path, "a.pkg", net_package(1)), _write(tmp_path, "b.pkg", net_package(2))
    out = mpy_script(INSTALL % str(flash) + """
print('EMPTY', inst.active(), inst.load_active())
attempt(%r)
attempt(%r, chunk=97, size=False)
a = inst.active()
print('INFO', a['sha256'][:8], a['arena_bytes'], a['blob_bytes'], a['state'])
m = inst.load_active()
print('OPS', len(m.ops), 'VECTORS', inst.self_test_active())
print('STATE', inst.state)
""" % (p1, p2), heap="256k").stdout
    assert "EMPTY None None" in out
    assert "INSTALLED net1" in out and "INSTALLED net2" in out and "ACTIVE net2 1.2" in out
    meta = read_package(open(p2, "rb").read())["meta"]
    assert "INFO %s %d %d active" % (meta["sha256"][:8], meta["arena_bytes"], meta["blob_bytes"]) in out
    assert "OPS 5 VECTORS 2" in out and "STATE Idle" in out
    assert sorted(os.listdir(flash)) == ["active", "slot0.pkg", "slot1.pkg"]


def test_mlperf_kws_package_with_tflm_golden_vectors(tmp_path, flash, mlperf, mpy_script):
    from tflite_micro.python.tflite_micro import runtime
    blob_path = tmp_path / "kws.blob"
    subprocess.run(["tinymlaas", "compile", str(mlperf("kws")), "-o", str(blob_path)], check=True,
                   capture_output=True)
    it = runtime.Interpreter.from_file(str(mlperf("kws")))
    vecs = []
    for s in range(2):
        x = np.random.default_rng(s).integers(-128, 128, size=(1, 49, 10, 1), dtype=np.int8)
        it.set_input(x, 0)
        it.invoke()
        vecs.append(([x], [it.get_output(0).copy()]))
    pkg = _write(tmp_path, "kws.pkg", build_package(blob_path.read_bytes(), "kws", "1.0", vecs))
    out = mpy_script(INSTALL % str(flash) + "attempt(%r)\n" % pkg, heap="256k").stdout
    assert "INSTALLED kws" in out, out


def _attempt_cases(tmp_path, flash, mpy_script, good, files, each="", tail=""):
    """Install `good`, then attempt each of `files` ({case: package bytes}) after it (running `each` after every
    attempt) and `tail` -> {case: what the device printed for it}; `tail` may print more 'CASE name' blocks."""
    paths = {k: _write(tmp_path, k + ".pkg", v) for k, v in files.items()}
    good_path = _write(tmp_path, "good.pkg", good)
    out = mpy_script(INSTALL % str(flash) + """
attempt(%r)
for name in %r:
    print('CASE', name)
    attempt(%r[name])
""" % (good_path, list(files), paths) + each + tail.replace("GOOD", repr(good_path)), heap="256k").stdout
    return {block.split("\n", 1)[0]: block.split("\n", 1)[1] for block in out.split("CASE ")[1:]}


def test_failure_result_codes_keep_the_old_model(tmp_path, flash, mpy_script):
    good = net_package(1)
    blob2 = dict(zoo.all_cases(2))["small_net"].build()
    v2 = _vectors(blob2, 2)
    bad_sha = bytearray(good)
    bad_sha[200] ^= 0xFF
    wrong_golden = build_package(blob2, "net2", "2.0", [(v2[0][0], [np.zeros(3, np.int8)])])
    abi2 = rehash(blob2[:12] + struct.pack("<H", 2) + blob2[14:])
    abi_pkg = raw_package(abi2, {"name": "x", "version": "1", "sha256": hashlib.sha256(abi2).hexdigest()})
    manifest_sha = raw_package(blob2, {"name": "x"}, manifest_blob=blob2[:-1] + bytes([blob2[-1] ^ 1]))
    unsigned = raw_package(blob2, {"name": "x", "version": "1", "sha256": hashlib.sha256(blob2).hexdigest()},
                           version=1)
    # a model whose arena cannot be allocated on a 128 KB heap
    b = BlobBuilder()
    x = b.arena(INT8, (1, 200000))
    y = b.arena(INT8, (1, 200000))
    b.op(COPY, [x], y)
    b.graph([x], [y])
    big = b.build()
    big_pkg = build_package(big, "big", "1", [])
    files = {
        "bad_sha": bytes(bad_sha), "wrong_golden": wrong_golden, "abi": abi_pkg, "manifest_sha": manifest_sha,
        "unsigned": unsigned,
        "magic": b"ZZZZ" + good[4:], "pkgver": good[:4] + struct.pack("<H", 9) + good[6:], "big": big_pkg,
        "short": good[:40],
    }
    cases = _attempt_cases(tmp_path, flash, mpy_script, good, files, tail="""
print('CASE size')
try:
    inst.begin(inst.free_bytes() * 4)
except I.InstallError as e:
    print('RESULT', e.result, e.message)
print('CASE offset')
inst.begin(100)
inst.write(0, b'x' * 10)
try:
    inst.write(20, b'y')
except I.InstallError as e:
    print('RESULT', e.result, e.message)
print('CASE overflow')
inst.begin(10)
try:
    inst.write(0, b'z' * 11)
except I.InstallError as e:
    print('RESULT', e.result, e.message)
print('CASE announced')
inst.begin(len(open(GOOD, 'rb').read()) + 5)
inst.write(0, open(GOOD, 'rb').read())
try:
    inst.finish()
except I.InstallError as e:
    print('RESULT', e.result, e.message)
print('CASE activate-idle')
try:
    inst.activate()
except I.InstallError as e:
    print('RESULT', e.result, e.message)
print('FINAL', inst.active()['name'], inst.self_test_active())
""")
    expect = {
        "bad_sha": (5, "package SHA-256 mismatch"),
        "wrong_golden": (8, "golden test failed: vector 0: output 0 differs"),
        "abi": (6, "model rejected: unsupported kernel ABI 2"),
        "manifest_sha": (5, "model blob does not match the signed manifest"),
        "unsigned": (6, "unsigned package (version 1): this device accepts only signed packages (version 2)"),
        "magic": (6, "not a tinymlaas package"),
        "pkgver": (6, "unsupported package version 9"),
        "big": (3, "not enough RAM"),
        "short": (6, "package too short"),
        "size": (2, "does not fit"),
        "offset": (8, "chunk at offset 20, expected 10"),
        "overflow": (8, "more data than the announced 10 bytes"),
        "announced": (5, "received"),
        "activate-idle": (8, "nothing downloaded"),
    }
    for name, (code, fragment) in expect.items():
        line = [l for l in cases[name].splitlines() if l.startswith("RESULT")]
        assert line and line[0].startswith("RESULT %d " % code) and fragment in line[0], (name, cases[name])
        if "ACTIVE" in cases[name]:
            assert "ACTIVE net1 1.1" in cases[name], (name, cases[name])
    assert "FINAL net1 2" in cases["activate-idle"]


CRASH = INSTALL + """
class Crash(BaseException):
    pass
budget = [%d]
def tick(what):
    budget[0] -= 1
    if budget[0] < 0:
        raise Crash(what)
import os as real_os
class CrashOS:
    def __getattr__(self, name):
        return getattr(real_os, name)
    def rename(self, a, b):
        tick('rename'); real_os.rename(a, b)
    def remove(self, p):
        tick('remove'); real_os.remove(p)
class CrashFile:
    def __init__(self, f):
        self.f = f
    def write(self, b):
        tick('write'); return self.f.write(b)
    def close(self):
        tick('close'); self.f.close()
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.close()
    def __getattr__(self, name):
        return getattr(self.f, name)
def crash_open(path, mode='r'):
    tick('open ' + mode)
    f = open(path, mode)
    return CrashFile(f) if 'w' in mode else f
I.os = CrashOS()
I.open = crash_open
try:
    install(%r, chunk=4096)
    print('COMPLETED')
except Crash as e:
    print('CRASHED', e)
"""

AFTER_REBOOT = """
import tinyml.installer as I
inst = I.Installer(%r)
a = inst.active()
print('ACTIVE', a and a['name'], inst.self_test_active(), 'SEQUENCE', inst.installed_sequence())
"""


def _sequence(after):
    return int(after.split("SEQUENCE")[1].split()[0])


def test_crash_at_every_step_leaves_old_or_new(tmp_path, flash, mpy_script):
    """... and the anti-rollback state (the active model's manifest sequence number) never goes down."""
    p1 = _write(tmp_path, "a.pkg", net_package(1, sequence=100))
    mpy_script(INSTALL % str(flash) + "attempt(%r)\n" % p1)
    seen, low = set(), 100
    for k in range(200):
        # a newer net2 for this crash point; net1 signed newer still puts the old model back
        p2 = _write(tmp_path, "b.pkg", net_package(2, sequence=101 + 2 * k))
        out = mpy_script(CRASH % (str(flash), k, p2)).stdout
        after = mpy_script(AFTER_REBOOT % str(flash)).stdout
        assert "ACTIVE net1 2" in after or "ACTIVE net2 2" in after, (k, out, after)
        assert _sequence(after) >= low, (k, after)
        low = _sequence(after)
        seen.add(after.split()[1])
        if "COMPLETED" in out:
            break
        if "net2" in after:
            p1 = _write(tmp_path, "a.pkg", net_package(1, sequence=102 + 2 * k))
            mpy_script(INSTALL % str(flash) + "attempt(%r)\n" % p1)
            low = 102 + 2 * k
    assert "COMPLETED" in out and seen == {"net1", "net2"} and k > 5


def test_sigkill_during_installs(tmp_path, flash, mpy_script):
    """Real kills at random moments of a loop that keeps installing two models in turn, each package signed with
    a higher sequence number than the one before; after a kill the loop goes on from the first package newer than
    what the device has. The sequence never goes down."""
    paths = [_write(tmp_path, "p%d.pkg" % k, net_package(1 + k % 2, sequence=10 + k)) for k in range(400)]
    mpy_script(INSTALL % str(flash) + "attempt(%r)\n" % paths[0])
    script = tmp_path / "loop.py"
    script.write_text(INSTALL % str(flash) + """
for k, p in enumerate(%r):
    if 10 + k <= inst.installed_sequence():
        continue  # what the device has already: a server would not send it again
    install(p, chunk=256)
    print("installed", 10 + k)
""" % (paths,))
    rng = random.Random(5)
    names, low = set(), 10
    for trial in range(8):
        proc = subprocess.Popen(unixport.command(script, "256k"), env=unixport.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        # the kill lands a random moment after the first install of this run (on a loaded machine the VM's start
        # alone can take longer than the random delay, and nothing would ever be installed)
        proc.stdout.readline()
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = mpy_script(AFTER_REBOOT % str(flash)).stdout
        assert "ACTIVE net1 2" in after or "ACTIVE net2 2" in after, after
        assert _sequence(after) >= low, (low, after)
        low = _sequence(after)
        names.add(after.split()[1])
    assert names and low > 10  # both usually appear; either is correct


def test_mutated_packages_only_ever_give_result_codes(tmp_path, flash, mpy_script):
    """300 seeded mutations of a package (half with the SHA-256 trailer recomputed, so header, metadata, vector
    and blob checks are reached): every outcome is an InstallError with an LwM2M code or a good install, never
    another exception, and a working model stays active."""
    p1 = _write(tmp_path, "a.pkg", net_package(1))
    pkg = net_package(2)
    out = mpy_script(INSTALL % str(flash) + """
import random, hashlib
attempt(%r)
pkg = %r
random.seed(77)
codes = {}
for it in range(300):
    b = bytearray(pkg)
    for _ in range(1 + random.getrandbits(2)):
        pos = random.getrandbits(16) %% len(b)
        b[pos] = random.getrandbits(8)
    if it %% 2:
        b[-32:] = hashlib.sha256(b[:-32]).digest()
    inst.begin(len(b))
    inst.write(0, bytes(b))
    try:
        inst.finish()
        inst.activate()
        codes['ok'] = codes.get('ok', 0) + 1
    except I.InstallError as e:
        codes[e.result] = codes.get(e.result, 0) + 1
    a = inst.active()
    assert a['name'] in ('net1', 'net2'), a
print('CODES', sorted(codes.items(), key=str))
print('FINAL', inst.self_test_active())
""" % (p1, pkg), heap="256k", timeout=600).stdout
    line = [l for l in out.splitlines() if l.startswith("CODES")][0]
    codes = dict(eval(line[6:]))
    assert sum(codes.values()) == 300
    assert set(codes) <= {"ok", 5, 6, 8}, codes
    assert codes.get(5, 0) >= 150  # every unhashed mutation is an integrity failure
    assert "FINAL 2" in out



# The inference module's code resident from the start, as an emulated board keeps it (lwm2m_client/hal.py
# keep_resident; a board has it frozen in flash): imported by a first install instead, it would sit in the middle of
# the heap.
BOOT_IMPORTS = "import hal\nhal.keep_resident(('tinyml',))\n"
UPDATES = BOOT_IMPORTS + TRUST.replace("%", "%%") + """
import gc
import tinyml.installer as I
inst = I.Installer(%r, trust=TRUST)

def download(path):
    with open(path, 'rb') as f:
        f.seek(0, 2)
        inst.begin(f.tell())
        f.seek(0)
        while True:
            chunk = f.read(512)
            if not chunk:
                break
            inst.write(inst._written, chunk)
    inst.finish()

def check(model):
    p = inst._pointer()
    I.run_vectors(model, inst.root + '/' + p['slot'], p['vec_offset'], p['n_vectors'])  # raises if it differs
    return p['name']

running = None
for k in range(12):
    download(%r[k])
    if running is not None:
        running.close()  # what object 5 does: the running model goes first
    running = None
    gc.collect()
    running = inst.activate_model()
    largest = hal.largest_free_block()
    print('UPDATE', check(running), largest)
"""


BOOT = BOOT_IMPORTS + TRUST.replace("%", "%%") + """
import tinyml.installer as I
inst = I.Installer(%r, trust=TRUST)
running = inst.load_active()
largest = hal.largest_free_block()
print('BOOT', inst.active()['name'], largest)
"""


def test_updates_hand_over_the_tested_model_and_leave_the_heap_as_they_found_it(tmp_path, flash, mlperf,
                                                                                   mpy_build):
    """What object 5 does on each Update, 12 times, a streamed KWS (its blob's checks leave ~100 KB of garbage)
    alternating with a small net: the running model closed, activate_model() self-tests the new one and hands it
    over to run. Each model finds the largest free block it found the first time (within 5 %), no less than a
    boot with it leaves, and the model handed over is the active one and passes its golden vectors."""
    from tinymlaas.compiler import compile_tflite
    from tinymlaas.service.core import reference_vectors

    kws = bytes(compile_tflite(mlperf("kws")).blob)
    kws_vectors = reference_vectors(kws, count=2)
    # the two models in turn, each package signed newer than the one before it (anti-rollback)
    paths = [_write(tmp_path, "p%d.pkg" % k, build_package(kws, "kws", "1", kws_vectors, sequence=k + 1) if k % 2 == 0
                    else net_package(1, sequence=k + 1)) for k in range(12)]
    out = unixport.run(UPDATES % (str(flash), paths), heap="330k", path=[mpy_build]).stdout.decode()
    rows = [line.split() for line in out.splitlines() if line.startswith("UPDATE")]
    assert [r[1] for r in rows] == ["kws", "net1"] * 6, out
    boot = unixport.run(BOOT % str(flash), heap="330k", path=[mpy_build]).stdout.decode().split()
    assert boot[:2] == ["BOOT", "net1"], boot
    for name in ("kws", "net1"):
        blocks = [int(r[2]) for r in rows if r[1] == name]
        assert all(abs(b - blocks[0]) <= 0.05 * blocks[0] for b in blocks), (name, blocks)
    net1 = [int(r[2]) for r in rows if r[1] == "net1"]
    assert net1[-1] >= 0.95 * int(boot[2]), (net1, boot)   # no less than a boot with that model leaves


def _retrailed(pkg, pos):
    """`pkg` with the byte at `pos` flipped and the SHA-256 trailer made again: only the signature can tell."""
    b = bytearray(pkg)
    b[pos] ^= 0x01
    b[-32:] = hashlib.sha256(b[:-32]).digest()
    return bytes(b)


def test_signed_manifest_refusals_keep_the_old_model_and_its_sequence(tmp_path, flash, mpy_script):
    """Every way a package can fail the signed manifest, each refused before Downloaded with the Update Result
    and reason docs/manifest.md gives, the old model active and its sequence number unchanged; the very same
    package again is a re-install, accepted."""
    from tinymlaas.signing import class_id, vendor_id
    from tinymlaas.signing.store import DEFAULT_VENDOR, KeyStore

    good = net_package(1, sequence=50)
    env_n = struct.unpack_from("<I", good, 28)[0]
    r = read_package(good)
    vec_at = r["blob_offset"] - sum(len(x) for vi, vo in r["vectors"] for x in vi + vo)
    payload_at = 32 + env_n - 64 - 2 - 40   # a byte inside the signed manifest (the payload ends before the signature)
    files = {
        "unknown_key": net_package(2, sequence=60, signer=KeyStore(tmp_path / "other-keys").signer()),
        "replayed": net_package(2, sequence=49),
        "same_sequence_other_blob": net_package(2, sequence=50),
        "other_class": net_package(2, sequence=60, klass=class_id(DEFAULT_VENDOR, "another-board")),
        "other_vendor": net_package(2, sequence=60, vendor=vendor_id("elsewhere.example")),
        "signature_byte": _retrailed(good, 32 + env_n - 1),
        "manifest_byte": _retrailed(good, payload_at),
        "envelope_tag": _retrailed(good, 32),
        "blob_byte": _retrailed(good, r["blob_offset"] + 100),
        "vector_byte": _retrailed(good, vec_at),
        "no_envelope": good[:28] + struct.pack("<I", 0) + good[32:],
    }
    cases = _attempt_cases(tmp_path, flash, mpy_script, good, files,
                           each="    print('SEQUENCE', inst.installed_sequence(), 'REASON', inst.last_error)\n",
                           tail="""print('CASE again')
attempt(GOOD)
print('SEQUENCE', inst.installed_sequence(), 'REASON', repr(inst.last_error))
""")
    expect = {
        "unknown_key": (5, "unknown key"),
        "replayed": (5, "rollback (sequence 49, installed 50)"),
        "same_sequence_other_blob": (5, "rollback (sequence 50, installed 50)"),
        "other_class": (6, "wrong device class"),
        "other_vendor": (6, "wrong vendor"),
        "signature_byte": (5, "bad signature"),
        "manifest_byte": (5, "bad signature"),
        "envelope_tag": (6, "malformed COSE_Sign1"),
        "blob_byte": (5, "model blob does not match the signed manifest"),
        "vector_byte": (5, "golden vectors do not match the signed manifest"),
        "no_envelope": (6, "malformed COSE_Sign1: envelope of 0 bytes"),
    }
    for name, (code, reason) in expect.items():
        text = cases[name]
        assert "RESULT %d %s\n" % (code, reason) in text, (name, text)
        assert "ACTIVE net1 1.1" in text and "SEQUENCE 50 REASON %s" % reason in text, (name, text)
    assert "INSTALLED net1" in cases["again"] and "SEQUENCE 50 REASON ''" in cases["again"], cases["again"]
