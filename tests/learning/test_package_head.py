"""A trainable head's package: build_package(head=...) puts the checked head config in the metadata, and the
golden vectors carry the embedding output too (the device's self-test compares every graph output)."""

import numpy as np
import pytest

from tinymlaas.blob import reference
from tinymlaas.compiler import compile_tflite
from tinymlaas.package import PackageError, build_package, head_config, read_package
from tinymlaas.paths import REPO

MODEL = REPO / "tests" / "compiler" / "models" / "mbv2_block.tflite"


@pytest.fixture(scope="module")
def blob_and_vectors():
    blob = bytes(compile_tflite(MODEL, embedding_output=True).blob)
    rng = np.random.default_rng(5)
    vectors = []
    for _ in range(3):
        x = rng.integers(-128, 128, size=(1, 32, 32, 3), dtype=np.int8)
        vectors.append(([x], reference.run(blob, [x])))
    return blob, vectors


def test_head_goes_in_the_metadata_and_vectors_hold_the_embedding(blob_and_vectors):
    blob, vectors = blob_and_vectors
    pkg = build_package(blob, "m", "1", vectors, head={"kind": "ncm", "lr": 0.1, "save_every": 5, "output": 1})
    p = read_package(pkg)
    assert p["meta"]["head"] == {"kind": "ncm", "lr": 0.1, "save_every": 5, "output": 1}
    for (ins, outs), (vi, vo) in zip(vectors, p["vectors"]):
        assert len(vo) == 2 and vo[1] == np.asarray(outs[1]).tobytes() and len(vo[1]) == outs[1].size
    assert "head" not in read_package(build_package(blob, "m", "1", vectors))["meta"]


def test_defaults():
    assert head_config({"kind": "softmax"}) == {"kind": "softmax", "lr": 0.05, "save_every": 10, "output": 1}


@pytest.mark.parametrize("head, match", [
    ({"kind": "knn"}, "softmax or ncm"),
    ({"kind": "softmax", "lr": 0}, "above 0"),
    ({"kind": "softmax", "lr": -0.1}, "above 0"),
    ({"kind": "softmax", "lr": float("nan")}, "finite"),
    ({"kind": "softmax", "lr": float("inf")}, "finite"),
    ({"kind": "softmax", "lr": "0.1"}, "finite"),
    ({"kind": "softmax", "save_every": 0}, "save_every"),
    ({"kind": "softmax", "save_every": 2.5}, "save_every"),
    ({"kind": "softmax", "output": 0}, "output"),
    ({"kind": "softmax", "output": 2}, "embedding_output"),
    ({"kind": "softmax", "rate": 1}, "unknown"),
    ("softmax", "dict"),
])
def test_bad_head_is_refused(blob_and_vectors, head, match):
    blob, vectors = blob_and_vectors
    with pytest.raises(PackageError, match=match):
        build_package(blob, "m", "1", vectors, head=head)


def test_blob_without_embedding_output_cannot_carry_a_head():
    blob = bytes(compile_tflite(MODEL).blob)
    x = np.zeros((1, 32, 32, 3), np.int8)
    with pytest.raises(PackageError, match="embedding_output"):
        build_package(blob, "m", "1", [([x], reference.run(blob, [x]))], head={"kind": "softmax"})


def test_micropython_runtime_gives_both_outputs_bit_exact(blob_and_vectors):
    from tinymlaas.verify.micropython import MicroPythonRuntime
    blob, vectors = blob_and_vectors
    got = MicroPythonRuntime(heap="512k").run(blob, [ins for ins, _ in vectors])
    for g, (_, want) in zip(got, vectors):
        assert len(g) == 2
        for a, b in zip(g, want):
            assert np.array_equal(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1))
