"""Requantization parameters: SOFTMAX tables, ADD/MUL/MEAN parameters, checked through the real TFLM interpreter."""

import numpy as np
import pytest
from tflite_builder import ModelBuilder, run_tflm

from tinymlaas.blob import reference
from tinymlaas.blob.fixedpoint import quantize_multiplier
from tinymlaas.compiler import CompileError, compile_tflite
from tinymlaas.compiler import quantization as Q
from tinymlaas.compiler.tflite_schema import schema as S

BO = S.BuiltinOperator


def _run_both(model, inputs):
    cm = compile_tflite(model)
    want = run_tflm(model, *inputs)
    got = reference.run(cm.blob, inputs)
    return cm, [np.asarray(g).reshape(w.shape) for g, w in zip(got, want)], want


@pytest.mark.parametrize("in_scale,in_zp,beta", [(0.1, 3, 1.0), (0.02, -10, 1.0), (0.5, 0, 1.0), (1 / 16, 0, 2.0),
                                                 (0.003, -128, 1.0), (0.25, 20, 0.5)])
def test_softmax_matches_tflm(in_scale, in_zp, beta, rng):
    mb = ModelBuilder()
    x = mb.tensor([8, 12], "int8", in_scale, in_zp)
    y = mb.tensor([8, 12], "int8", 1 / 256, -128)
    opts = S.SoftmaxOptionsT()
    opts.beta = beta
    mb.op(BO.SOFTMAX, [x], [y], S.BuiltinOptions.SoftmaxOptions, opts)
    mb.inputs, mb.outputs = [x], [y]
    m = mb.build()
    for _ in range(3):
        xs = rng.integers(-128, 128, size=(8, 12), dtype=np.int8)
        xs[0] = 127  # a row of ties
        xs[1, :] = -128
        xs[1, 3] = 127  # a row with differences below diff_min
        cm, got, want = _run_both(m, [xs])
        assert np.array_equal(got[0], want[0])


def test_softmax_exp_table_shape():
    t = Q.softmax_exp_table(1.0, Q.f32(0.1))
    assert len(t) == 256 and t[0] == 2 ** 31 - 1  # exp(0) saturates to the Q0.31 maximum
    assert all(a >= b for a, b in zip(t, t[1:]))  # exp of a larger negative difference is never larger
    assert t[-1] == 0  # -25.5 is below diff_min


def _binary_model(builtin, a_shape, b_shape, y_shape, qa, qb, qy, act=S.ActivationFunctionType.NONE):
    mb = ModelBuilder()
    a = mb.tensor(a_shape, "int8", *qa)
    b = mb.tensor(b_shape, "int8", *qb)
    y = mb.tensor(y_shape, "int8", *qy)
    if builtin == BO.ADD:
        opts, ot = S.AddOptionsT(), S.BuiltinOptions.AddOptions
    else:
        opts, ot = S.MulOptionsT(), S.BuiltinOptions.MulOptions
    opts.fusedActivationFunction = act
    mb.op(builtin, [a, b], [y], ot, opts)
    mb.inputs, mb.outputs = [a, b], [y]
    return mb.build()


@pytest.mark.parametrize("builtin", [BO.ADD, BO.MUL])
@pytest.mark.parametrize("shapes", [([1, 4, 4, 3], [1, 4, 4, 3], [1, 4, 4, 3]),
                                    ([1, 4, 4, 3], [3], [1, 4, 4, 3]),
                                    ([1, 4, 1, 3], [1, 1, 5, 1], [1, 4, 5, 3])])
@pytest.mark.parametrize("quant", [((0.1, 3), (0.05, -7), (0.12, 2)), ((0.02, -128), (0.3, 127), (0.25, -1))])
def test_add_mul_with_broadcasting_match_tflm(builtin, shapes, quant, rng):
    m = _binary_model(builtin, *shapes, *quant, act=S.ActivationFunctionType.RELU)
    xs = [rng.integers(-128, 128, size=s, dtype=np.int8) for s in shapes[:2]]
    cm, got, want = _run_both(m, xs)
    assert np.array_equal(got[0], want[0])


def _mean_model(axes, keep):
    mb = ModelBuilder()
    x = mb.tensor([1, 5, 3, 4], "int8", 0.07, -4)
    ax = mb.tensor([len(axes)], "int32", data=np.array(axes, np.int32))
    out_shape = [1 if (k in axes) else d for k, d in enumerate([1, 5, 3, 4])]
    if not keep:
        out_shape = [d for k, d in enumerate([1, 5, 3, 4]) if k not in axes]
    y = mb.tensor(out_shape, "int8", 0.03, 9)
    opts = S.ReducerOptionsT()
    opts.keepDims = keep
    mb.op(BO.MEAN, [x, ax], [y], S.BuiltinOptions.ReducerOptions, opts)
    mb.inputs, mb.outputs = [x], [y]
    return mb.build()


MEAN_CASES = [([1, 2], True), ([1, 2], False), ([3], True), ([1], False), ([1, 2, 3], False)]


@pytest.mark.parametrize("axes,keep", MEAN_CASES)
def test_mean_parameters_match_tflm(axes, keep, rng):
    """The spec's MEAN formula with the compiler's (mult, shift) equals TFLM, for counts 15, 5, 4, 60."""
    from tinymlaas.blob.fixedpoint import mbqm

    m = _mean_model(axes, keep)
    xs = rng.integers(-128, 128, size=(1, 5, 3, 4), dtype=np.int8)
    want = run_tflm(m, xs)[0].reshape(-1)
    count = int(np.prod([[1, 5, 3, 4][a] for a in axes]))
    mult, shift = Q.mean_params(Q.f32(0.07), Q.f32(0.03), count)
    acc = (xs.astype(np.int64) + 4).sum(axis=tuple(axes)).reshape(-1)
    got = [max(-128, min(127, mbqm(int(a), mult, shift) + 9)) for a in acc]
    assert np.array_equal(np.array(got), want)


@pytest.mark.parametrize("axes,keep", MEAN_CASES)
def test_mean_matches_tflm(axes, keep, rng):
    m = _mean_model(axes, keep)
    xs = rng.integers(-128, 128, size=(1, 5, 3, 4), dtype=np.int8)
    cm, got, want = _run_both(m, [xs])
    assert cm.ops == ["MEAN"]
    assert np.array_equal(got[0], want[0])


def test_quantize_multiplier_tflite_rounding():
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    # A value whose mantissa rounds up to 2^31 is renormalized.
    assert quantize_multiplier(1.0 - 2 ** -40) == (1 << 30, 1)
    assert quantize_multiplier(2 ** -40) == (0, 0)  # below 2^-31: flushed to zero


def test_huge_multiplier_is_a_compile_error():
    with pytest.raises(CompileError, match="too large"):
        Q.quantize_multiplier_checked(2.0 ** 40, "test")


def test_activation_ranges():
    assert Q.activation_range("NONE", 0.1, 5) == (-128, 127)
    assert Q.activation_range("RELU", 0.1, 5) == (5, 127)
    assert Q.activation_range("RELU6", 0.1, -128) == (-128, -68)
    assert Q.activation_range("RELU_N1_TO_1", 0.01, 0) == (-100, 100)
    with pytest.raises(CompileError):
        Q.activation_range("TANH", 0.1, 0)
