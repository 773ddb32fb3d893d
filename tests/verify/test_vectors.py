"""The shared vectors (tests/vectors) through the host reader and reference executor -- the same files the
MicroPython and C readers are tested against."""

import json

import numpy as np
import pytest

from tinymlaas.blob import format as F
from tinymlaas.blob.reader import BlobFormatError, parse
from tinymlaas.blob.reference import NP_DTYPE, Executor
from verify_paths import VECTORS

MANIFEST = json.loads((VECTORS / "manifest.json").read_text())


def split(raw, sizes, dtypes, count):
    sets, pos = [], 0
    for _ in range(count):
        one = []
        for n, d in zip(sizes, dtypes):
            one.append(np.frombuffer(raw, dtype=NP_DTYPE[F.DTYPE_BY_NAME[d]], count=n // np.dtype(
                NP_DTYPE[F.DTYPE_BY_NAME[d]]).itemsize, offset=pos))
            pos += n
        sets.append(one)
    assert pos == len(raw)
    return sets


def test_manifest_covers_models_and_corruptions():
    names = {m["name"] for m in MANIFEST["models"]}
    assert {"mlperf_ad", "softmax_fc", "softmax_rows", "float_io_cnn", "trees_forest"} <= names
    assert {"classic_svc_rbf", "classic_knn_manhattan", "classic_gnb_affine", "classic_poly_votes"} <= names
    assert {c["kind"] for c in MANIFEST["corrupt"]} >= {"magic", "format_version", "abi", "sha256", "total_bytes"}


@pytest.mark.parametrize("entry", MANIFEST["models"], ids=lambda m: m["name"])
def test_vector_reproduced_byte_for_byte(entry):
    import hashlib

    blob = (VECTORS / entry["blob"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
    ex = Executor(parse(blob))
    ins = split((VECTORS / entry["inputs"]).read_bytes(), entry["input_bytes"], entry["input_dtypes"],
                entry["count"])
    outs = split((VECTORS / entry["outputs"]).read_bytes(), entry["output_bytes"], entry["output_dtypes"],
                 entry["count"])
    for one_in, one_out in zip(ins, outs):
        got = ex.run(one_in)
        assert [g.tobytes() for g in got] == [o.tobytes() for o in one_out]


@pytest.mark.parametrize("entry", MANIFEST["corrupt"], ids=lambda c: c["name"])
def test_corrupt_vector_rejected_with_named_cause(entry):
    with pytest.raises(BlobFormatError) as e:
        parse((VECTORS / entry["blob"]).read_bytes())
    for word in entry["mentions"]:
        assert word in str(e.value)


@pytest.mark.parametrize("runtime", ["micropython", "c"])
def test_device_runtimes_reproduce_every_vector(runtime):
    """The MicroPython and C readers/runtimes against the same files, through their verify adapters."""
    from tinymlaas.verify.runtimes import get_runtime

    rt = get_runtime(runtime)
    for entry in MANIFEST["models"]:
        blob = (VECTORS / entry["blob"]).read_bytes()
        ins = split((VECTORS / entry["inputs"]).read_bytes(), entry["input_bytes"], entry["input_dtypes"],
                    entry["count"])
        outs = split((VECTORS / entry["outputs"]).read_bytes(), entry["output_bytes"], entry["output_dtypes"],
                     entry["count"])
        got = rt.run(blob, ins)
        for n, (g, o) in enumerate(zip(got, outs)):
            assert [x.tobytes() for x in g] == [x.tobytes() for x in o], "%s set %d" % (entry["name"], n)


@pytest.mark.parametrize("runtime", ["micropython", "c"])
@pytest.mark.parametrize("entry", MANIFEST["corrupt"], ids=lambda c: c["name"])
def test_device_runtimes_reject_every_corrupt_vector(runtime, entry):
    from tinymlaas.verify.runtimes import BlobRejected, get_runtime

    with pytest.raises(BlobRejected):
        get_runtime(runtime).run((VECTORS / entry["blob"]).read_bytes(), [[np.zeros((1, 9, 7, 2), np.int8)]])
