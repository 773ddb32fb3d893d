"""Fuzzing the C loader. libFuzzer (clang, ASan + UBSan) when clang is installed, else seeded random mutations
through the sanitized loader. Short by default; `pytest -m fuzz --fuzz-long` runs the 1,000,000-input campaign."""

import random
import shutil
import subprocess

import pytest

from tinymlaas.devices import cruntime
from tinymlaas.paths import VECTORS

from c_helpers import reseal, validate_many

REPO_TESTS = VECTORS.parent / "c"

pytestmark = pytest.mark.fuzz


def seeds():
    return sorted(VECTORS.glob("*.blob"))


def test_loader_fuzz(request, tmp_path, asan_tools):
    long = request.config.getoption("--fuzz-long")
    runs = 1_000_000 if long else 20_000
    if shutil.which("clang"):
        fuzzer = cruntime.build(cruntime.BUILD / "tml_fuzz")
        corpus = tmp_path / "corpus"
        corpus.mkdir()
        for s in seeds():
            shutil.copy(s, corpus / s.name)
        proc = subprocess.run([str(fuzzer), "-runs=%d" % runs, "-max_len=4096", "-seed=1", "-print_final_stats=1",
                               "-artifact_prefix=%s/" % tmp_path, str(corpus)],
                              capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "stat::number_of_executed_units: %d" % runs in proc.stderr
        return
    # without clang: mutate the shared vector blobs, reseal half of them so the post-hash checks are reached
    _, runner = asan_tools
    rng = random.Random(1)
    base = [s.read_bytes() for s in seeds()]
    count = runs // 10
    blobs = []
    for _ in range(count):
        b = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            i = rng.randrange(len(b))
            if op < 0.6:
                b[i] ^= 1 << rng.randrange(8)
            elif op < 0.8:
                b[i] = rng.choice([0, 0xFF, 0x7F, 0x80, 1])
            else:
                del b[i:]
                if not b:
                    b = bytearray(1)
        blobs.append(reseal(bytes(b)) if rng.random() < 0.5 and len(b) > 64 else bytes(b))
    results = validate_many(runner, blobs, tmp_path)
    assert len(results) == count


def test_fuzz_findings_stay_fixed(asan_tools, tmp_path):
    """Inputs that once crashed the sanitized build (kept in tests/c/fuzz_regressions/), resealed with a valid hash
    and run through load + invoke: e.g. a CONV_2D whose output rows lie entirely in the padding formed a pointer
    before its buffer."""
    import hashlib

    _, runner = asan_tools
    for path in sorted((REPO_TESTS / "fuzz_regressions").glob("*.blob")):
        blob = bytearray(path.read_bytes())
        blob[24:56] = hashlib.sha256(bytes(blob[64:])).digest()
        (tmp_path / "b.blob").write_bytes(bytes(blob))
        # graph inputs are zero-filled: the runner reads exactly the bytes the inputs need
        (tmp_path / "in.bin").write_bytes(bytes(1 << 20))
        proc = subprocess.run([str(runner), str(tmp_path / "b.blob"), str(tmp_path / "in.bin"),
                               str(tmp_path / "out.bin")], capture_output=True, text=True, timeout=120)
        assert "runtime error" not in proc.stderr and "AddressSanitizer" not in proc.stderr, proc.stderr[-3000:]
        assert proc.returncode == 0, (path.name, proc.returncode, proc.stderr[-2000:])  # valid once resealed
