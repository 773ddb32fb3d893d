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

from tinymlaas.blob import format as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
from blob_fuzz import check_micropython, check_sanitized_c  # noqa: E402
from test_reader_fuzz import mutate  # noqa: E402

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
EDGES = (0, 1, -1, 2, 3, 4, 5, 6, 7, 16, 17, 0x7F800000, 0x7FC00000, -(2 ** 31), 2 ** 31 - 1)

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


def test_host_and_c_agree_and_accepted_blobs_run(request, tmp_path):
    """The C loader built with AddressSanitizer + UBSan (tests/c/tml_run.c) on every mutated blob; each accepted one
    then runs once in that build (exact-size heap buffers: any out-of-bounds read is reported)."""
    blobs = cases(request, 1511)
    found, accepted = check_sanitized_c(blobs, tmp_path)
    assert not found, found[:5]
    assert 0 < accepted < len(blobs)        # both sides exercised


def test_host_and_micropython_agree_and_accepted_blobs_run(request, tmp_path):
    found, _ = check_micropython(cases(request, 2711), tmp_path, kernels="viper")
    assert not found, found[:5]
