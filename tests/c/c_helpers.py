"""Helpers shared by the C runtime tests (compiled blobs, resealing, the sanitized loader)."""

import functools
import hashlib
import json
import subprocess

import numpy as np

from tinymlaas.paths import REPO, VECTORS, mlperf_model

CORPUS = REPO / "tests" / "corpus" / "models"


@functools.lru_cache(maxsize=None)
def compiled(path):
    from tinymlaas.compiler import compile_tflite

    return compile_tflite(str(path)).blob


def mlperf_blob(key):
    return compiled(mlperf_model(key))


def reseal(blob):
    """Recompute the header's SHA-256 so a deliberately corrupted blob reaches the checks after the hash."""
    b = bytearray(blob)
    b[24:56] = hashlib.sha256(bytes(b[64:])).digest()
    return bytes(b)


def validate_many(runner, blobs, tmp_path):
    """Run the sanitized loader over many blobs in one process -> list of (status, reason)."""
    paths = []
    for i, b in enumerate(blobs):
        p = tmp_path / ("b%05d.blob" % i)
        p.write_bytes(b)
        paths.append(str(p))
    proc = subprocess.run([str(runner), "--validate"] + paths, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "sanitizer report:\n" + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(blobs), proc.stderr[-2000:]
    out = []
    for line in lines:
        code, _, reason = line.partition(" ")
        out.append((int(code), reason))
    return out


def vector_sets(entry):
    """Shared vector `entry` of tests/vectors/manifest.json -> (blob bytes, input sets, expected output sets)."""
    blob = (VECTORS / entry["blob"]).read_bytes()
    raw_in = (VECTORS / entry["inputs"]).read_bytes()
    raw_out = (VECTORS / entry["outputs"]).read_bytes()
    sets_in, sets_out, pi, po = [], [], 0, 0
    for _ in range(entry["count"]):
        one = []
        for n, dt in zip(entry["input_bytes"], entry["input_dtypes"]):
            one.append(np.frombuffer(raw_in[pi: pi + n], dtype=dt))
            pi += n
        sets_in.append(one)
        outs = []
        for n, dt in zip(entry["output_bytes"], entry["output_dtypes"]):
            outs.append(np.frombuffer(raw_out[po: po + n], dtype=dt))
            po += n
        sets_out.append(outs)
    return blob, sets_in, sets_out


def manifest():
    return json.loads((VECTORS / "manifest.json").read_text())
