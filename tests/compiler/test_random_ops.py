"""Seeded random single-op models (shapes, strides, dilations, padding, per-channel scales, activations) compiled
and compared with the real TFLite Micro interpreter. `--fuzz-long` runs many more cases."""

import zlib

import numpy as np
import pytest
from tflite_builder import ModelBuilder, run_tflm

from tinymlaas.blob import reference
from tinymlaas.compiler import compile_tflite
from tinymlaas.compiler.tflite_schema import schema as S

BO = S.BuiltinOperator
ACTS = [S.ActivationFunctionType.NONE, S.ActivationFunctionType.RELU, S.ActivationFunctionType.RELU6]


def _out(n, k, s, d, same):
    eff = (k - 1) * d + 1
    return (n + s - 1) // s if same else (n - eff + s) // s


def _conv_model(r, depthwise):
    h, w, ci = int(r.integers(3, 10)), int(r.integers(3, 10)), int(r.integers(1, 5))
    kh, kw = int(r.integers(1, 4)), int(r.integers(1, 4))
    sh, sw = int(r.integers(1, 3)), int(r.integers(1, 3))
    dh, dw = (1, 1) if sh > 1 or sw > 1 else (int(r.integers(1, 3)), int(r.integers(1, 3)))
    same = bool(r.integers(0, 2))
    oh, ow = _out(h, kh, sh, dh, same), _out(w, kw, sw, dw, same)
    if oh < 1 or ow < 1:
        return None
    dm = int(r.integers(1, 3)) if depthwise else 1
    co = ci * dm if depthwise else int(r.integers(1, 6))
    mb = ModelBuilder()
    x = mb.tensor([1, h, w, ci], "int8", float(r.uniform(0.01, 0.2)), int(r.integers(-128, 128)))
    wshape = [1, kh, kw, co] if depthwise else [co, kh, kw, ci]
    wscales = r.uniform(0.002, 0.05, size=co)
    wt = mb.tensor(wshape, "int8", wscales, np.zeros(co, np.int64), quant_dim=3 if depthwise else 0,
                   data=r.integers(-127, 128, size=wshape).astype(np.int8))
    b = mb.tensor([co], "int32", data=r.integers(-2000, 2000, size=co).astype(np.int32))
    y = mb.tensor([1, oh, ow, co], "int8", float(r.uniform(0.02, 0.3)), int(r.integers(-128, 128)))
    opts = S.DepthwiseConv2DOptionsT() if depthwise else S.Conv2DOptionsT()
    opts.padding = S.Padding.SAME if same else S.Padding.VALID
    opts.strideH, opts.strideW, opts.dilationHFactor, opts.dilationWFactor = sh, sw, dh, dw
    opts.fusedActivationFunction = ACTS[int(r.integers(0, 3))]
    if depthwise:
        opts.depthMultiplier = dm
        mb.op(BO.DEPTHWISE_CONV_2D, [x, wt, b], [y], S.BuiltinOptions.DepthwiseConv2DOptions, opts)
    else:
        mb.op(BO.CONV_2D, [x, wt, b], [y], S.BuiltinOptions.Conv2DOptions, opts)
    mb.inputs, mb.outputs = [x], [y]
    return mb.build(), (1, h, w, ci)


def _pool_model(r, builtin):
    h, w, c = int(r.integers(2, 9)), int(r.integers(2, 9)), int(r.integers(1, 4))
    fh, fw, sh, sw = int(r.integers(1, 4)), int(r.integers(1, 4)), int(r.integers(1, 3)), int(r.integers(1, 3))
    same = bool(r.integers(0, 2))
    oh, ow = _out(h, fh, sh, 1, same), _out(w, fw, sw, 1, same)
    if oh < 1 or ow < 1:
        return None
    q = (float(r.uniform(0.01, 0.2)), int(r.integers(-128, 128)))
    mb = ModelBuilder()
    x = mb.tensor([1, h, w, c], "int8", *q)
    y = mb.tensor([1, oh, ow, c], "int8", *q)
    opts = S.Pool2DOptionsT()
    opts.padding = S.Padding.SAME if same else S.Padding.VALID
    opts.strideH, opts.strideW, opts.filterHeight, opts.filterWidth = sh, sw, fh, fw
    opts.fusedActivationFunction = ACTS[int(r.integers(0, 3))]
    mb.op(builtin, [x], [y], S.BuiltinOptions.Pool2DOptions, opts)
    mb.inputs, mb.outputs = [x], [y]
    return mb.build(), (1, h, w, c)


def _fc_model(r):
    rows, ci, co = int(r.integers(1, 4)), int(r.integers(1, 20)), int(r.integers(1, 10))
    per_channel = bool(r.integers(0, 2))
    mb = ModelBuilder()
    x = mb.tensor([rows, ci], "int8", float(r.uniform(0.01, 0.2)), int(r.integers(-128, 128)))
    scales = r.uniform(0.002, 0.05, size=co if per_channel else 1)
    wt = mb.tensor([co, ci], "int8", scales, np.zeros(len(scales), np.int64),
                   data=r.integers(-127, 128, size=(co, ci)).astype(np.int8))
    has_bias = bool(r.integers(0, 2))
    in_scale = float(np.float32(mb.tensors[x].quantization.scale[0]))
    # TFLM checks that the bias scale is the input scale times the filter scale.
    b = mb.tensor([co], "int32", in_scale * scales, np.zeros(len(scales), np.int64),
                  data=r.integers(-2000, 2000, size=co).astype(np.int32)) if has_bias else -1
    y = mb.tensor([rows, co], "int8", float(r.uniform(0.02, 0.3)), int(r.integers(-128, 128)))
    opts = S.FullyConnectedOptionsT()
    opts.fusedActivationFunction = ACTS[int(r.integers(0, 3))]
    mb.op(BO.FULLY_CONNECTED, [x, wt, b], [y], S.BuiltinOptions.FullyConnectedOptions, opts)
    mb.inputs, mb.outputs = [x], [y]
    return mb.build(), (rows, ci)


MAKERS = {
    "conv": lambda r: _conv_model(r, False),
    "depthwise": lambda r: _conv_model(r, True),
    "avgpool": lambda r: _pool_model(r, BO.AVERAGE_POOL_2D),
    "maxpool": lambda r: _pool_model(r, BO.MAX_POOL_2D),
    "fc": _fc_model,
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_random_single_op_models_match_tflm(kind, request):
    cases = 300 if request.config.getoption("--fuzz-long") else 12
    r = np.random.default_rng(zlib.crc32(kind.encode()))
    done = 0
    while done < cases:
        built = MAKERS[kind](r)
        if built is None:
            continue
        model, shape = built
        cm = compile_tflite(model)
        x = r.integers(-128, 128, size=shape, dtype=np.int8)
        want = run_tflm(model, x)[0]
        got = np.asarray(reference.run(cm.blob, [x])[0]).reshape(want.shape)
        assert np.array_equal(got, want), "case %d of %s" % (done, kind)
        done += 1


def test_concat_with_different_input_quantization_is_requantized_by_a_lut(rng):
    """Our model: concat(a@qa, b@qy) -> y@qy. Its meaning: QUANTIZE(a -> qy) then an equal-scale concat, which
    TFLite Micro can run; the two must agree."""
    qa, qy = (0.07, 10), (0.1, -3)

    def build(explicit):
        mb = ModelBuilder()
        a = mb.tensor([1, 2, 3, 2], "int8", *qa)
        b = mb.tensor([1, 2, 3, 3], "int8", *qy)
        y = mb.tensor([1, 2, 3, 5], "int8", *qy)
        opts = S.ConcatenationOptionsT()
        opts.axis = -1
        src = a
        if explicit:
            src = mb.tensor([1, 2, 3, 2], "int8", *qy)
            mb.op(BO.QUANTIZE, [a], [src])
        mb.op(BO.CONCATENATION, [src, b], [y], S.BuiltinOptions.ConcatenationOptions, opts)
        mb.inputs, mb.outputs = [a, b], [y]
        return mb.build()

    cm = compile_tflite(build(False))
    assert cm.ops == ["LUT", "CONCATENATION"] and cm.passes["concat_requantizations"] == 1
    xs = [rng.integers(-128, 128, size=(1, 2, 3, 2), dtype=np.int8),
          rng.integers(-128, 128, size=(1, 2, 3, 3), dtype=np.int8)]
    want = run_tflm(build(True), *xs)[0]
    assert np.array_equal(np.asarray(reference.run(cm.blob, xs)[0]).reshape(want.shape), want)
