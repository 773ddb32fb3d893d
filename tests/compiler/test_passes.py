"""Each pass as a unit: constant folding, views, PAD and activation fusion."""

import numpy as np
from tflite_builder import ModelBuilder, run_tflm

from tinymlaas.blob import reference
from tinymlaas.compiler import compile_tflite
from tinymlaas.compiler.frontend import parse_tflite
from tinymlaas.compiler.passes.fold_constants import fold_constants
from tinymlaas.compiler.passes.fuse import fuse_activations, fuse_pads
from tinymlaas.compiler.passes.lut import lower_to_lut
from tinymlaas.compiler.passes.views import make_views
from tinymlaas.compiler.tflite_schema import schema as S

BO = S.BuiltinOperator
SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK", "GATHER", "REDUCE_PROD", "CONCATENATION"}


def test_keras_flatten_shape_subgraph_folds(corpus):
    g = parse_tflite(corpus("flatten_dense").read_bytes())
    assert {"SHAPE", "STRIDED_SLICE", "PACK"} <= {op.kind for op in g.ops}
    assert fold_constants(g) == 3
    assert [op.kind for op in g.ops] == ["RESHAPE", "FULLY_CONNECTED"]
    reshape = g.ops[0]
    assert g.tensors[reshape.inputs[1]].is_const
    assert make_views(g) == 1 and g.ops[0].kind == "VIEW"


def test_dynamic_batch_shape_subgraph_folds_and_reshapes(corpus):
    """Exported with a dynamic batch: SHAPE/GATHER/REDUCE_PROD/CONCATENATION/PACK feed two RESHAPEs, and the
    model stores a placeholder [1, 1] shape for the first RESHAPE's output."""
    g = parse_tflite(corpus("fc_rows_dynamic_batch").read_bytes())
    assert SHAPE_OPS - {"STRIDED_SLICE"} <= {op.kind for op in g.ops}
    fold_constants(g)
    assert not SHAPE_OPS & {op.kind for op in g.ops}
    assert [op.kind for op in g.ops] == ["RESHAPE", "FULLY_CONNECTED", "RESHAPE", "ADD"]
    assert g.tensors[g.ops[0].outputs[0]].shape == (3, 5)
    assert g.tensors[g.ops[1].outputs[0]].shape == (3, 4)


def test_pad_fuses_into_conv(corpus):
    g = parse_tflite(corpus("pad_conv").read_bytes())
    assert [op.kind for op in g.ops] == ["PAD", "CONV_2D"]
    assert fuse_pads(g) == 1
    assert [op.kind for op in g.ops] == ["CONV_2D"]
    assert g.ops[0].options["pre_pad"][:2] != (0, 0)
    cm = compile_tflite(corpus("pad_conv"))
    assert cm.ops == ["CONV_2D"]


def _pad_model(pad_value_is_zero_point):
    """PADV2 -> MAX_POOL_2D / CONV_2D: PAD must stay when its value is not the zero point."""
    mb = ModelBuilder()
    x = mb.tensor([1, 4, 4, 2], "int8", 0.1, 5)
    pads = mb.tensor([4, 2], "int32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    val = mb.tensor([1], "int8", 0.1, 5, data=np.array([5 if pad_value_is_zero_point else 9], np.int8))
    p = mb.tensor([1, 6, 6, 2], "int8", 0.1, 5)
    w = mb.tensor([3, 3, 3, 2], "int8", [0.01, 0.02, 0.03], [0, 0, 0], quant_dim=0,
                  data=np.arange(54).reshape(3, 3, 3, 2).astype(np.int8) - 27)
    b = mb.tensor([3], "int32", data=np.array([10, -20, 30], np.int32))
    y = mb.tensor([1, 4, 4, 3], "int8", 0.05, -3)
    opts = S.Conv2DOptionsT()
    opts.padding, opts.strideH, opts.strideW = S.Padding.VALID, 1, 1
    opts.dilationHFactor = opts.dilationWFactor = 1
    mb.op(BO.PADV2, [x, pads, val], [p])
    mb.op(BO.CONV_2D, [p, w, b], [y], S.BuiltinOptions.Conv2DOptions, opts)
    mb.inputs, mb.outputs = [x], [y]
    return mb.build()


def test_padv2_fusion_is_exact_and_only_for_zero_point_padding(rng):
    for zp_pad, want_ops in ((True, ["CONV_2D"]), (False, ["PAD", "CONV_2D"])):
        m = _pad_model(zp_pad)
        cm = compile_tflite(m)
        assert cm.ops == want_ops
        x = rng.integers(-128, 128, size=(1, 4, 4, 2), dtype=np.int8)
        want = run_tflm(m, x)[0]
        got = np.asarray(reference.run(cm.blob, [x])[0]).reshape(want.shape)
        assert np.array_equal(got, want)


def _fc_relu_model(relu, out_q=(0.1, -1)):
    mb = ModelBuilder()
    x = mb.tensor([1, 16], "int8", 0.05, 3)
    w = mb.tensor([8, 16], "int8", 0.01, 0, data=(np.arange(128).reshape(8, 16) % 23 - 11).astype(np.int8))
    h = mb.tensor([1, 8], "int8", 0.1, -1)
    y = mb.tensor([1, 8], "int8", *out_q)
    mb.op(BO.FULLY_CONNECTED, [x, w, -1], [h], S.BuiltinOptions.FullyConnectedOptions,
          S.FullyConnectedOptionsT())
    mb.op(relu, [h], [y])
    mb.inputs, mb.outputs = [x], [y]
    return mb.build()


def test_standalone_relu_fuses_into_fully_connected_exactly(rng):
    for relu in (BO.RELU, BO.RELU6):
        m = _fc_relu_model(relu)
        g = parse_tflite(m)
        lower_to_lut(g)
        assert fuse_activations(g) == 1
        cm = compile_tflite(m)
        assert cm.ops == ["FULLY_CONNECTED"]
        for _ in range(5):
            x = rng.integers(-128, 128, size=(1, 16), dtype=np.int8)
            assert np.array_equal(np.asarray(reference.run(cm.blob, [x])[0]).reshape(1, 8), run_tflm(m, x)[0])


def test_relu_with_requantization_stays_a_lut(rng):
    m = _fc_relu_model(BO.RELU, out_q=(0.07, -128))
    cm = compile_tflite(m)
    assert cm.ops == ["FULLY_CONNECTED", "LUT"]
    x = rng.integers(-128, 128, size=(1, 16), dtype=np.int8)
    assert np.array_equal(np.asarray(reference.run(cm.blob, [x])[0]).reshape(1, 8), run_tflm(m, x)[0])


def test_views_share_bytes_and_emit_no_op(mlperf):
    cm = compile_tflite(mlperf("kws"))
    assert "RESHAPE" in cm.source_ops and "RESHAPE" not in cm.ops and "COPY" not in cm.ops


def test_reshape_of_graph_input_to_graph_output_becomes_copy():
    mb = ModelBuilder()
    x = mb.tensor([1, 2, 3], "int8", 0.1, 0)
    s = mb.tensor([2], "int32", data=np.array([1, 6], np.int32))
    y = mb.tensor([1, 6], "int8", 0.1, 0)
    mb.op(BO.RESHAPE, [x, s], [y])
    mb.inputs, mb.outputs = [x], [y]
    cm = compile_tflite(mb.build())
    assert cm.ops == ["COPY"]
    x = np.arange(6, dtype=np.int8).reshape(1, 2, 3)
    assert np.array_equal(np.asarray(reference.run(cm.blob, [x])[0]).reshape(-1), x.reshape(-1))


def test_squeeze_and_expand_dims_are_views(rng):
    mb = ModelBuilder()
    x = mb.tensor([1, 1, 6], "int8", 0.05, 2)
    s = mb.tensor([1, 6], "int8", 0.05, 2)
    w = mb.tensor([4, 6], "int8", 0.02, 0, data=(np.arange(24).reshape(4, 6) - 12).astype(np.int8))
    h = mb.tensor([1, 4], "int8", 0.1, -3)
    axis = mb.tensor([1], "int32", data=np.array([1], np.int32))
    y = mb.tensor([1, 1, 4], "int8", 0.1, -3)
    sq = S.SqueezeOptionsT()
    sq.squeezeDims = [1]
    mb.op(BO.SQUEEZE, [x], [s], S.BuiltinOptions.SqueezeOptions, sq)
    mb.op(BO.FULLY_CONNECTED, [s, w, -1], [h], S.BuiltinOptions.FullyConnectedOptions, S.FullyConnectedOptionsT())
    mb.op(BO.EXPAND_DIMS, [h, axis], [y])
    mb.inputs, mb.outputs = [x], [y]
    m = mb.build()
    cm = compile_tflite(m)
    assert cm.ops == ["FULLY_CONNECTED"] and cm.passes["views"] == 2
    xs = rng.integers(-128, 128, size=(1, 1, 6), dtype=np.int8)
    assert np.array_equal(np.asarray(reference.run(cm.blob, [xs])[0]).reshape(1, 1, 4), run_tflm(m, xs)[0])


def test_fully_connected_keep_num_dims(rng):
    mb = ModelBuilder()
    x = mb.tensor([1, 3, 5], "int8", 0.05, 2)
    w = mb.tensor([4, 5], "int8", 0.02, 0, data=(np.arange(20).reshape(4, 5) - 10).astype(np.int8))
    y = mb.tensor([1, 3, 4], "int8", 0.1, -3)
    opts = S.FullyConnectedOptionsT()
    opts.keepNumDims = True
    mb.op(BO.FULLY_CONNECTED, [x, w, -1], [y], S.BuiltinOptions.FullyConnectedOptions, opts)
    mb.inputs, mb.outputs = [x], [y]
    m = mb.build()
    cm = compile_tflite(m)
    assert cm.outputs[0]["shape"] == [1, 3, 4] and cm.macs == 3 * 4 * 5
    xs = rng.integers(-128, 128, size=(1, 3, 5), dtype=np.int8)
    assert np.array_equal(np.asarray(reference.run(cm.blob, [xs])[0]).reshape(1, 3, 4), run_tflm(m, xs)[0])


def _conv_pad_maxpool_model(conv_act, pads, pool_padding=S.Padding.VALID, pool_act=S.ActivationFunctionType.NONE,
                            standalone_relu=False):
    """conv (1x1, activation conv_act) [-> RELU] -> PAD (pads on H and W) -> MAX_POOL_2D 3x3 stride 2."""
    mb = ModelBuilder()
    q = (0.05, -20)
    x = mb.tensor([1, 6, 6, 2], "int8", 0.1, 3)
    w = mb.tensor([2, 1, 1, 2], "int8", [0.02, 0.03], [0, 0], data=np.array([[[[50, -40]]], [[[-30, 60]]]], np.int8))
    c = mb.tensor([1, 6, 6, 2], "int8", *q)
    pads_t = mb.tensor([4, 2], "int32", data=np.array([[0, 0], pads, pads, [0, 0]], np.int32))
    ph = 6 + sum(pads)
    p = mb.tensor([1, ph, ph, 2], "int8", *q)
    out = (ph - 3) // 2 + 1 if pool_padding == S.Padding.VALID else (ph + 1) // 2
    y = mb.tensor([1, out, out, 2], "int8", *q)
    co = S.Conv2DOptionsT()
    co.padding, co.strideH, co.strideW, co.fusedActivationFunction = S.Padding.VALID, 1, 1, conv_act
    co.dilationHFactor = co.dilationWFactor = 1
    po = S.Pool2DOptionsT()
    po.padding, po.strideH, po.strideW, po.filterHeight, po.filterWidth = pool_padding, 2, 2, 3, 3
    po.fusedActivationFunction = pool_act
    mb.op(BO.CONV_2D, [x, w, -1], [c], S.BuiltinOptions.Conv2DOptions, co)
    if standalone_relu:
        r = mb.tensor([1, 6, 6, 2], "int8", *q)
        mb.op(BO.RELU, [c], [r])
        c = r
    mb.op(BO.PAD, [c, pads_t], [p])
    mb.op(BO.MAX_POOL_2D, [p], [y], S.BuiltinOptions.Pool2DOptions, po)
    mb.inputs, mb.outputs = [x], [y]
    return mb.build()


def test_pad_fuses_into_max_pool_only_where_exact(rng):
    A = S.ActivationFunctionType
    cases = [
        (dict(conv_act=A.RELU, pads=[1, 1]), True),  # conv clamps at the zero point: padding never wins
        (dict(conv_act=A.NONE, pads=[1, 1], pool_act=A.RELU), True),  # the pool's own clamp hides it
        (dict(conv_act=A.NONE, pads=[1, 1]), False),  # a padded zero point could be a window's maximum
        (dict(conv_act=A.NONE, pads=[1, 1], standalone_relu=True), True),  # RELU folds into the conv first
        (dict(conv_act=A.RELU, pads=[3, 3]), False),  # some windows would hold only padding
        (dict(conv_act=A.RELU6, pads=[1, 0], pool_padding=S.Padding.SAME), True),
        (dict(conv_act=A.RELU6, pads=[1, 2], pool_padding=S.Padding.SAME), False),  # last window: padding only
    ]
    for kw, fused in cases:
        m = _conv_pad_maxpool_model(**kw)
        cm = compile_tflite(m, patches=False)  # the conv alone would become a patch-based stage
        assert cm.ops == (["CONV_2D", "MAX_POOL_2D"] if fused else ["CONV_2D", "PAD", "MAX_POOL_2D"]), kw
        for _ in range(3):
            x = rng.integers(-128, 128, size=(1, 6, 6, 2), dtype=np.int8)
            want = run_tflm(m, x)[0]
            assert np.array_equal(np.asarray(reference.run(cm.blob, [x])[0]).reshape(want.shape), want), kw
