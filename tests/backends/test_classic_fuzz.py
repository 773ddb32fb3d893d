"""Mutation fuzz of the classic ops (§11) across the three readers: seeded mutations (hash kept valid) of the
classic vectors and of an iris SVC, each either rejected by the host reader, the C loader and the MicroPython
loader alike, or accepted by all three and then run to the end by the reference executor, the C runtime and the
MicroPython VM (whose uctypes views do no bounds checks: a table rule the loader missed would crash the VM).
300 cases by default; `--fuzz-long` runs 5,000."""

import hashlib
import random
import struct
import sys
from pathlib import Path

import numpy as np

from tinymlaas.blob import format as F
from tinymlaas.blob.reader import BlobFormatError, parse
from tinymlaas.blob.reference import NP_DTYPE, Executor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
from test_reader_fuzz import HOST_STRICTER_THAN_C, HOST_STRICTER_THAN_MPY, disagreement, mutate  # noqa: E402

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
EDGES = (0, 1, -1, 2, 3, 4, 5, 6, 7, 16, 17, 0x7F800000, 0x7FC00000, -(2 ** 31), 2 ** 31 - 1)

DEVICE = """
import sys, tinyml
with open(sys.argv[1], 'rb') as f:
    while True:
        head = f.read(4)
        if len(head) < 4:
            break
        data = f.read(int.from_bytes(head, 'little'))
        try:
            m = tinyml.load(data, kernels='viper')
        except tinyml.BlobError as e:
            print('REJ', e)
            continue
        try:
            m.invoke()
            print('OK')
        except Exception as e:
            print('CRASH', type(e).__name__, e)
"""


def seeds():
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    from tinymlaas.backends.classic import compile_estimator
    x, y = load_iris(return_X_y=True)
    blobs = [(VECTORS / (n + ".blob")).read_bytes() for n in
             ("classic_svc_rbf", "classic_knn_manhattan", "classic_gnb_affine", "classic_poly_votes")]
    return blobs + [compile_estimator(SVC(kernel="poly").fit(x[::6], y[::6]))[0],
                    compile_estimator(KNeighborsClassifier(4).fit(x[::8], y[::8]))[0]]


def mutate_values(rng, blob):
    """Overwrite an aligned int32 of the OPS or CONST section (op params, starts, labels, table shapes' data) with
    an edge value, hash fixed."""
    b = bytearray(blob)
    n = struct.unpack_from("<H", b, 14)[0]
    spans = [struct.unpack_from("<III", b, F.HEADER_BYTES + 16 * i)[:3] for i in range(n)]
    spans = [(off, size) for kind, off, size in spans if kind in (F.SECTION_OPS, F.SECTION_CONST, F.SECTION_TENSORS)]
    for _ in range(rng.randint(1, 3)):
        off, size = rng.choice(spans)
        pos = off + 4 * rng.randrange(size // 4)
        struct.pack_into("<i", b, pos, rng.choice(EDGES))
    b[F.SHA256_OFFSET:F.SHA256_OFFSET + 32] = hashlib.sha256(bytes(b[F.HEADER_BYTES:])).digest()
    return bytes(b)


def cases(request, seed):
    count = 5000 if request.config.getoption("--fuzz-long") else 300
    rng = random.Random(seed)
    base = seeds()
    return [(mutate_values if rng.random() < 0.6 else mutate)(rng, rng.choice(base)) for _ in range(count)]


def host_verdict(data):
    try:
        blob = parse(data)
    except BlobFormatError as e:
        return str(e)
    if blob.arena_bytes <= 1 << 20:
        with np.errstate(all="ignore"):
            Executor(blob).run([np.zeros(blob.tensors[t].shape, NP_DTYPE[blob.tensors[t].dtype]) for t in blob.inputs])
    return None


def test_host_and_c_agree_and_accepted_blobs_run(request, tmp_path):
    """The C loader built with AddressSanitizer + UBSan (tests/c/tml_run.c) on every mutated blob; each accepted one
    then runs once in that build (exact-size heap buffers: any out-of-bounds read is reported)."""
    import subprocess

    from tinymlaas.devices import cruntime
    runner = cruntime.build(cruntime.BUILD / "tml_run_asan")
    blobs = cases(request, 1511)
    paths = []
    for k, b in enumerate(blobs):
        paths.append(tmp_path / ("m%05d.tmlb" % k))
        paths[-1].write_bytes(b)
    proc = subprocess.run([str(runner), "--validate"] + [str(p) for p in paths], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(blobs)
    found, accepted = [], 0
    for data, path, line in zip(blobs, paths, lines):
        code, _, reason = line.partition(" ")
        host = host_verdict(data)
        c = None if code == "0" else reason
        if c is None and host is None:
            accepted += 1
            blob = parse(data)
            zeros = b"".join(b"\0" * blob.tensors[t].nbytes for t in blob.inputs)
            (tmp_path / "in.bin").write_bytes(zeros)
            run = subprocess.run([str(runner), str(path), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr[-3000:]
        d = disagreement(host, c, HOST_STRICTER_THAN_C)
        if d:
            found.append(d)
    assert not found, found[:5]
    assert 0 < accepted < len(blobs)        # both sides exercised


def test_host_and_micropython_agree_and_accepted_blobs_run(request, tmp_path):
    from tinymlaas.devices import unixport
    blobs = cases(request, 2711)
    (tmp_path / "blobs.bin").write_bytes(b"".join(len(b).to_bytes(4, "little") + b for b in blobs))
    lines = unixport.run(code=DEVICE, heap="2m", args=[tmp_path / "blobs.bin"], timeout=900).stdout.decode()
    lines = lines.splitlines()
    assert len(lines) == len(blobs)
    crashes = [ln for ln in lines if ln.startswith("CRASH")]
    assert not crashes, crashes[:5]
    found = [d for d in (disagreement(host_verdict(b), None if ln == "OK" else ln[4:], HOST_STRICTER_THAN_MPY)
                         for b, ln in zip(blobs, lines)) if d]
    assert not found, found[:5]
