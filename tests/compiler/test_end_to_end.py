"""Compile, then run the blob in the NumPy reference executor and the model in TFLite Micro: outputs identical.

(The verify engineer's `tinymlaas verify` does this at scale; here one or two inputs per model catch a parameter
bug in the compiler right where it is made.)"""

import numpy as np
import pytest
from conftest import CORPUS, MLPERF_MACS
from tflite_builder import run_tflm

from tinymlaas.blob import reference
from tinymlaas.compiler import compile_tflite

# Models TFLite Micro cannot load (it has no REDUCE_PROD kernel for the unfolded shape sub-graph): compared with
# the TFLite interpreter instead, whose wheels round requantization once (TFLITE_SINGLE_ROUNDING) where TFLM and
# the blob round twice, so a 1 LSB difference is allowed there.
NOT_IN_TFLM = {"fc_rows_dynamic_batch"}


def _random_inputs(cm, rng):
    xs = []
    for i in cm.inputs:
        if i["dtype"] == "int8":
            xs.append(rng.integers(-128, 128, size=i["shape"], dtype=np.int8))
        else:
            xs.append((rng.normal(size=i["shape"]) * 3).astype(np.float32))
    return xs


def _run_litert(model, xs):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), xs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def _check(model, name, rng, n=2):
    cm = compile_tflite(model)
    for _ in range(n):
        xs = _random_inputs(cm, rng)
        want = _run_litert(model, xs) if name in NOT_IN_TFLM else run_tflm(model, *xs)
        got = reference.run(cm.blob, xs)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            g = np.asarray(g).reshape(w.shape)
            if name in NOT_IN_TFLM:
                assert np.abs(g.astype(np.int64) - w).max() <= 1, name
            else:
                assert np.array_equal(g, w), name
    return cm


@pytest.mark.parametrize("name", sorted(p.stem for p in CORPUS.glob("*.tflite")))
def test_corpus_model_bit_exact(name, rng):
    _check((CORPUS / (name + ".tflite")).read_bytes(), name, rng)


@pytest.mark.parametrize("key", sorted(MLPERF_MACS))
def test_mlperf_model_bit_exact(mlperf, key, rng):
    cm = _check(mlperf(key).read_bytes(), key, rng, n=1)
    assert cm.macs == MLPERF_MACS[key]


def test_ad_real_sample_bit_exact(mlperf):
    model = mlperf("ad").read_bytes()
    raw = np.fromfile(mlperf("ad").parent / "ad01_sample_input.bin", dtype=np.int8)
    cm = compile_tflite(model)
    x = raw[:640].reshape(1, 640)
    assert np.array_equal(np.asarray(reference.run(cm.blob, [x])[0]).reshape(1, 640), run_tflm(model, x)[0])
