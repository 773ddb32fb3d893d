"""Real Keras 3 -> TFLite exports (tests/compiler/keras_models.py): the passes fire on converter output and the
blobs are bit-exact with TFLite Micro."""

from pathlib import Path

import numpy as np
import pytest
from tflite_builder import run_tflm

from tinymlaas.blob import reference
from tinymlaas.compiler import CompileError, compile_tflite

MODELS = Path(__file__).resolve().parent / "models"


def _load(name):
    p = MODELS / (name + ".tflite")
    if not p.is_file():
        pytest.fail("%s missing: run python tests/compiler/keras_models.py" % p)
    return p.read_bytes()


def _exact(model, cm, rng, n=4, judge=run_tflm, tolerance=0):
    """Bit-exact against TFLite Micro. LiteRT (the judge where TFLM cannot load a model) rounds requantization
    once where TFLM rounds twice, and its LUT ops differ too: 1-2 LSB through a few layers (ANCHORS.md)."""
    ex = reference.Executor(cm.blob)
    for _ in range(n):
        xs = [rng.integers(-128, 128, size=i["shape"], dtype=np.int8) for i in cm.inputs]
        want = judge(model, *xs)
        got = ex.run(xs)
        for g, w in zip(got, want):
            diff = np.abs(np.asarray(g).reshape(w.shape).astype(np.int64) - w).max()
            assert diff <= tolerance


def test_mobilenet_v2_block_fuses_both_pads(rng):
    m = _load("mbv2_block")
    cm = compile_tflite(m, patches=False)
    assert cm.source_ops.count("PAD") == 2 and cm.passes["fused_pads"] == 2
    assert cm.ops == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "MEAN",
                      "FULLY_CONNECTED", "SOFTMAX"]
    _exact(m, cm, rng)
    patched = compile_tflite(m)  # the first convolution row by row, its output over its input: 5,120 -> 3,232 B
    assert patched.ops == ["PATCH"] + cm.ops and patched.arena_bytes == 3232 < cm.arena_bytes == 5120
    _exact(m, patched, rng)


def test_conv1d_views_cost_nothing(rng):
    m = _load("conv1d")
    cm = compile_tflite(m)
    assert {"EXPAND_DIMS", "RESHAPE", "SHAPE", "STRIDED_SLICE"} <= set(cm.source_ops)
    assert cm.ops == ["CONV_2D", "CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "LUT"]
    _exact(m, cm, rng)


def test_hard_swish_avgpool_softmax(rng):
    m = _load("avg_hswish")
    cm = compile_tflite(m, patches=False)
    assert cm.ops == ["CONV_2D", "LUT", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"]
    _exact(m, cm, rng)


def _litert(model, *xs):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # TFLite's reference kernels, not the default XNNPACK delegate (which differs by several LSB).
    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), xs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def test_dense_on_sequences_gating_and_mean(rng):
    """Dense on a 3-D input exports shape sub-graphs with REDUCE_PROD (TFLite Micro cannot load the model, so the
    TFLite interpreter judges, within its 1-2 LSB rounding difference), an ADD of a constant bias, and MEAN
    with an un-normalized multiplier (spec §5 MEAN)."""
    m = _load("seq_gated")
    cm = compile_tflite(m)
    assert cm.passes["folded_constant_ops"] == 14
    assert cm.ops == ["FULLY_CONNECTED", "LUT", "LUT", "FULLY_CONNECTED", "LUT", "CONCATENATION",
                      "FULLY_CONNECTED", "LUT", "MUL", "MEAN", "FULLY_CONNECTED"]
    _exact(m, cm, rng, judge=_litert, tolerance=2)


def test_upsampling_is_refused_with_the_op_named():
    with pytest.raises(CompileError, match=r"EXPAND_DIMS \(op 1\): output has rank 5"):
        compile_tflite(_load("upsample"))


def test_options_change_ops_and_arena_not_results(rng):
    m = _load("mbv2_block")
    plain = compile_tflite(m, fuse=False, inplace=False)
    assert plain.ops.count("PAD") == 2 and plain.passes["inplace_ops"] == 0
    best = compile_tflite(m, patches=False)  # patches=True: test_mobilenet_v2_block_fuses_both_pads
    assert best.arena_bytes <= plain.arena_bytes and len(best.ops) == len(plain.ops) - 2
    for _ in range(3):
        x = rng.integers(-128, 128, size=(1, 32, 32, 3), dtype=np.int8)
        assert np.array_equal(np.asarray(reference.run(plain.blob, [x])[0]),
                              np.asarray(reference.run(best.blob, [x])[0]))
