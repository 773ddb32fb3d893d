"""LUT lowering: every table equals what the real TFLite Micro interpreter computes, on all 256 int8 inputs."""

import numpy as np
import pytest
from tflite_builder import run_tflm, unary_model

from tinymlaas.compiler import compile_tflite
from tinymlaas.compiler import quantization as Q
from tinymlaas.compiler.passes.lut import lut_clamp_range
from tinymlaas.compiler.tflite_schema import schema as S

BO = S.BuiltinOperator
ALL_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)

# (input scale, input zero point) pairs: small/large scales, zero points at both ends.
INPUT_QUANT = [(0.1, 3), (0.02, -10), (0.5, 0), (0.0037, -128), (0.2, 127), (1.3, -5), (0.0625, 64)]


def _tflm_table(model):
    return run_tflm(model, ALL_INT8)[0].reshape(-1).astype(np.int64)


def _our_table(model):
    """Compile the model and read the LUT's table out of the compiled graph's blob via the compiler API."""
    from tinymlaas.blob import reference

    cm = compile_tflite(model)
    assert cm.ops == ["LUT"]
    return np.asarray(reference.run(cm.blob, [ALL_INT8])[0]).reshape(-1).astype(np.int64)


@pytest.mark.parametrize("in_scale,in_zp", INPUT_QUANT)
def test_logistic_table_matches_tflm(in_scale, in_zp):
    m = unary_model(BO.LOGISTIC, in_scale, in_zp, 1 / 256, -128)
    want = _tflm_table(m)
    assert np.array_equal(np.array(Q.logistic_table(Q.f32(in_scale), in_zp)), want)
    assert np.array_equal(_our_table(m), want)


@pytest.mark.parametrize("in_scale,in_zp", INPUT_QUANT)
def test_tanh_table_matches_tflm(in_scale, in_zp):
    m = unary_model(BO.TANH, in_scale, in_zp, 1 / 128, 0)
    want = _tflm_table(m)
    assert np.array_equal(np.array(Q.tanh_table(Q.f32(in_scale), in_zp)), want)
    assert np.array_equal(_our_table(m), want)


@pytest.mark.parametrize("q", [(0.1, 3, 0.05, -20), (0.02, -10, 0.02, -10), (0.5, 0, 0.25, -128),
                               (0.03, 100, 0.07, 5)])
def test_relu_table_matches_tflm(q):
    m = unary_model(BO.RELU, *q)
    assert np.array_equal(_our_table(m), _tflm_table(m))


@pytest.mark.parametrize("q", [(0.1, 3, 0.05, -20), (0.02, -10, 0.02, -10), (0.03, -128, 0.03, -128)])
def test_relu6_table_matches_tflm(q):
    m = unary_model(BO.RELU6, *q)
    assert np.array_equal(_our_table(m), _tflm_table(m))


@pytest.mark.parametrize("alpha", [0.2, 0.01, 0.5, -0.3])
@pytest.mark.parametrize("q", [(0.1, 3, 0.05, -20), (0.02, -10, 0.03, 7)])
def test_leaky_relu_table_matches_tflm(q, alpha):
    opts = S.LeakyReluOptionsT()
    opts.alpha = alpha
    m = unary_model(BO.LEAKY_RELU, *q, options_type=S.BuiltinOptions.LeakyReluOptions, options=opts)
    assert np.array_equal(_our_table(m), _tflm_table(m))


@pytest.mark.parametrize("q", [(0.1, 3, 0.05, -20), (0.02, -10, 0.03, 7), (0.05, -128, 0.04, -100),
                               (0.3, 20, 0.2, -60)])
def test_hard_swish_table_matches_tflm(q):
    m = unary_model(BO.HARD_SWISH, *q)
    assert np.array_equal(_our_table(m), _tflm_table(m))


@pytest.mark.parametrize("q", [(0.1, 3, 0.05, -20), (0.02, -10, 0.2, 7), (0.05, -128, 0.05, 0)])
def test_requantize_table_matches_tflm(q):
    m = unary_model(BO.QUANTIZE, *q)
    assert np.array_equal(_our_table(m), _tflm_table(m))


def test_clamp_detection():
    assert lut_clamp_range([max(-5, min(100, i)) for i in range(-128, 128)]) == (-5, 100)
    assert lut_clamp_range(list(range(-128, 128))) == (-128, 127)
    assert lut_clamp_range([0] * 256) == (0, 0)
    assert lut_clamp_range(list(range(127, -129, -1))) is None
    t = list(range(-128, 128))
    t[200] += 1
    assert lut_clamp_range(t) is None


def _litert_table(model):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], ALL_INT8)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1).astype(np.int64)


@pytest.mark.parametrize("q", [(0.01, 3, 0.01, 3), (0.02, -10, 0.01, 0), (0.005, 0, 0.008, -5)])
def test_relu_n1_to_1_table_matches_tflite(q):
    """TFLite Micro has no RELU_N1_TO_1 kernel; TFLite's (ReluX on int8) is the reference. Our table is TFLM's
    ReluQuantized (double rounding) with the [-1, 1] range; TFLite's wheels round once, so they may differ by
    1 LSB where requantization rounds a tie, and are equal where input and output quantization are equal."""
    m = unary_model(BO.RELU_N1_TO_1, *q)
    ours, theirs = _our_table(m), _litert_table(m)
    assert np.abs(ours - theirs).max() <= 1
    if q[:2] == q[2:]:
        assert np.array_equal(ours, theirs)
