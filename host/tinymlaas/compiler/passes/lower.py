"""Pass 5: lowering to blob ops with integer parameters.

Each TFLite op becomes one blob op (docs/blob-format.md §5): its extra constant operands (bias, per-channel
multipliers and shifts, SOFTMAX exp table) are added to the graph as int32 constants, and `op.params` gets the
op table's params in order, computed as TFLite Micro's Prepare() computes them (compiler/quantization.py).
"""

import numpy as np

from ...blob import format as F
from .. import quantization as Q
from ..errors import CompileError, op_where


def _out_size(padding, in_size, filt, stride, dil):
    eff = (filt - 1) * dil + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size - eff + stride) // stride
    raise ValueError(padding)


def _pad_before(stride, dil, in_size, filt, out_size):
    """TFLite ComputePaddingWithOffset: total padding // 2 goes before (top/left)."""
    eff = (filt - 1) * dil + 1
    total = (out_size - 1) * stride + eff - in_size
    return max(total, 0) // 2


def _spatial(op, graph, in_h, in_w, kh, kw, sh, sw, dh, dw):
    """pad_top, pad_left for a conv/pool, checking that TFLite's output size agrees with the model's."""
    y = graph.tensors[op.outputs[0]]
    padding = op.options.get("padding", "SAME")
    if padding not in ("SAME", "VALID"):
        raise CompileError("%s: padding %s is not supported" % (op_where(op), padding))
    pre = op.options.get("pre_pad")
    ph, pw = (pre[2], pre[3]) if pre else (in_h, in_w)
    oh, ow = _out_size(padding, ph, kh, sh, dh), _out_size(padding, pw, kw, sw, dw)
    if (oh, ow) != (y.shape[1], y.shape[2]):
        raise CompileError("%s: output %dx%d does not match %s padding of a %dx%d input (expected %dx%d)"
                           % (op_where(op), y.shape[1], y.shape[2], padding, ph, pw, oh, ow))
    top = _pad_before(sh, dh, ph, kh, oh)
    left = _pad_before(sw, dw, pw, kw, ow)
    if pre:
        top += pre[0]
        left += pre[1]
    return top, left


def _act_range(op, y):
    lo, hi = Q.activation_range(op.options.get("fusedActivationFunction", "NONE"), y.s, y.zp)
    elo, ehi = op.options.get("extra_act_range", (-128, 127))
    lo, hi = max(lo, elo), min(hi, ehi)
    if lo > hi:
        raise CompileError("%s: empty activation range" % op_where(op))
    return lo, hi


def _i32(graph, name, values):
    return graph.add_const(name, np.asarray(values, dtype=np.int64).astype(np.int32))


def _need(op, cond, what):
    if not cond:
        raise CompileError("%s: %s" % (op_where(op), what))


def _check_int8(op, graph, idx, what):
    t = graph.tensors[idx]
    _need(op, t.dtype == "int8", "%s is %s; only int8 is supported" % (what, t.dtype))
    _need(op, t.quantized, "%s is int8 without quantization parameters" % what)
    _need(op, not t.per_channel, "%s has per-channel quantization" % what)
    _need(op, t.s > 0, "%s has quantization scale %g" % (what, t.s))


def _weights(op, graph, idx):
    w = graph.tensors[idx]
    _need(op, w.is_const, "weights %r are not constant (weights must be constants)" % w.name)
    _need(op, w.dtype == "int8", "weights %r are %s; only int8 weights are supported" % (w.name, w.dtype))
    _need(op, all(z == 0 for z in w.zero_point), "weights %r have a non-zero zero point" % w.name)
    _need(op, w.quantized and all(s > 0 for s in w.scale), "weights %r have no positive quantization scale" % w.name)
    return w


def _bias(op, graph, channels, y):
    idx = op.inputs[2] if len(op.inputs) > 2 else -1
    if idx < 0:
        return _i32(graph, "%s/zero_bias" % y.name, np.zeros(channels))
    b = graph.tensors[idx]
    _need(op, b.is_const, "bias %r is not constant" % b.name)
    _need(op, b.dtype == "int32", "bias %r is %s; only int32 bias is supported" % (b.name, b.dtype))
    _need(op, b.elements == channels, "bias has %d values for %d channels" % (b.elements, channels))
    if b.shape != (channels,):
        return _i32(graph, b.name, b.data.reshape(-1))
    return idx


def _lower_conv(op, graph, depthwise):
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _check_int8(op, graph, op.inputs[0], "input")
    _check_int8(op, graph, op.outputs[0], "output")
    w = _weights(op, graph, op.inputs[1])
    _need(op, len(x.shape) == 4 and len(w.shape) == 4 and len(y.shape) == 4, "expects 4-D input, filter, output")
    o = op.options
    sh, sw = o.get("strideH", 1), o.get("strideW", 1)
    dh, dw = o.get("dilationHFactor", 1), o.get("dilationWFactor", 1)
    co = y.shape[3]
    if depthwise:
        _need(op, w.shape[0] == 1 and w.shape[3] == co, "filter shape %s does not match output channels %d"
              % (w.shape, co))
        _need(op, co % x.shape[3] == 0, "output channels %d not a multiple of input channels %d" % (co, x.shape[3]))
        depth_multiplier = co // x.shape[3]
    else:
        _need(op, w.shape[0] == co and w.shape[3] == x.shape[3], "filter shape %s does not match input %s / "
              "output %s (grouped convolution is not supported)" % (w.shape, x.shape, y.shape))
    kh, kw = w.shape[1], w.shape[2]
    _need(op, min(sh, sw, dh, dw) >= 1, "strides %dx%d / dilations %dx%d must be >= 1" % (sh, sw, dh, dw))
    top, left = _spatial(op, graph, x.shape[1], x.shape[2], kh, kw, sh, sw, dh, dw)
    _need(op, len(w.scale) in (1, co), "filter has %d scales for %d channels" % (len(w.scale), co))
    mults, shifts = Q.conv_multipliers(x.s, w.scale, y.s, co)
    lo, hi = _act_range(op, y)
    b = _bias(op, graph, co, y)
    op.inputs = [op.inputs[0], op.inputs[1], b, _i32(graph, y.name + "/mult", mults),
                 _i32(graph, y.name + "/shift", shifts)]
    op.params = [sh, sw, dh, dw, top, left, -x.zp, y.zp, lo, hi]
    if depthwise:
        op.params.append(depth_multiplier)
        op.macs = y.elements * kh * kw
    else:
        op.macs = y.elements * kh * kw * x.shape[3]


def _lower_fc(op, graph):
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _check_int8(op, graph, op.inputs[0], "input")
    _check_int8(op, graph, op.outputs[0], "output")
    w = _weights(op, graph, op.inputs[1])
    _need(op, op.options.get("weightsFormat", 0) == 0, "shuffled weight formats are not supported")
    _need(op, len(w.shape) == 2, "filter must be 2-D, got %s" % (w.shape,))
    co, ci = w.shape
    _need(op, x.elements % ci == 0, "input %s is not a whole number of rows of %d" % (x.shape, ci))
    rows = x.elements // ci
    _need(op, y.elements == rows * co, "output %s is not %d rows of %d" % (y.shape, rows, co))
    if w.per_channel:
        _need(op, len(w.scale) == co, "filter has %d scales for %d channels" % (len(w.scale), co))
        mults, shifts = Q.conv_multipliers(x.s, w.scale, y.s, co)
    else:
        m, s = Q.fully_connected_multiplier(x.s, w.s, y.s)
        mults, shifts = [m], [s]
    lo, hi = _act_range(op, y)
    b = _bias(op, graph, co, y)
    op.inputs = [op.inputs[0], op.inputs[1], b, _i32(graph, y.name + "/mult", mults),
                 _i32(graph, y.name + "/shift", shifts)]
    op.params = [-x.zp, -w.zp, y.zp, lo, hi]
    op.macs = rows * co * ci


def _lower_pool(op, graph):
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _check_int8(op, graph, op.inputs[0], "input")
    _check_int8(op, graph, op.outputs[0], "output")
    _need(op, len(x.shape) == 4 and len(y.shape) == 4, "expects 4-D input and output")
    _need(op, x.same_quant(y), "input and output quantization differ (TFLite's int8 pools keep them equal)")
    o = op.options
    sh, sw, fh, fw = o.get("strideH", 1), o.get("strideW", 1), o.get("filterHeight", 1), o.get("filterWidth", 1)
    _need(op, min(sh, sw, fh, fw) >= 1, "strides %dx%d / filter %dx%d must be >= 1" % (sh, sw, fh, fw))
    top, left = _spatial(op, graph, x.shape[1], x.shape[2], fh, fw, sh, sw, 1, 1)
    lo, hi = _act_range(op, y)
    op.params = [sh, sw, fh, fw, top, left, lo, hi]


def _broadcastable(op, graph):
    y = graph.tensors[op.outputs[0]]
    for i in op.inputs:
        t = graph.tensors[i]
        _need(op, len(t.shape) <= 4, "input rank %d > 4" % len(t.shape))
        try:
            b = np.broadcast_shapes(t.shape, y.shape)
        except ValueError:
            b = None
        _need(op, b == tuple(y.shape), "input %s does not broadcast to output %s" % (t.shape, y.shape))


def _lower_add(op, graph):
    a, b, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    for i, what in ((op.inputs[0], "input 1"), (op.inputs[1], "input 2"), (op.outputs[0], "output")):
        _check_int8(op, graph, i, what)
    _broadcastable(op, graph)
    am, ash, bm, bsh, om, osh = Q.add_params(a.s, b.s, y.s)
    lo, hi = _act_range(op, y)
    op.params = [-a.zp, am, ash, -b.zp, bm, bsh, Q.ADD_LEFT_SHIFT, om, osh, y.zp, lo, hi]


def _lower_mul(op, graph):
    a, b, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    for i, what in ((op.inputs[0], "input 1"), (op.inputs[1], "input 2"), (op.outputs[0], "output")):
        _check_int8(op, graph, i, what)
    _broadcastable(op, graph)
    m, s = Q.mul_params(a.s, b.s, y.s)
    lo, hi = _act_range(op, y)
    op.params = [-a.zp, -b.zp, m, s, y.zp, lo, hi]


def _lower_softmax(op, graph):
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _check_int8(op, graph, op.inputs[0], "input")
    _check_int8(op, graph, op.outputs[0], "output")
    _need(op, y.zp == -128 and y.s == Q.f32(1.0 / 256), "int8 output must have scale 1/256 and zero point -128")
    table = Q.softmax_exp_table(Q.f32(op.options.get("beta", 1.0)), x.s)
    op.inputs = [op.inputs[0], _i32(graph, y.name + "/exp_table", table)]
    op.params = []


def _axis4(op, axis, rank):
    axis = axis + rank if axis < 0 else axis
    _need(op, 0 <= axis < rank, "axis %d out of range for rank %d" % (axis, rank))
    return axis + (4 - rank)


def _lower_pad(op, graph):
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _check_int8(op, graph, op.inputs[0], "input")
    _need(op, x.same_quant(y), "input and output quantization differ")
    pads = graph.tensors[op.inputs[1]]
    _need(op, pads.is_const, "paddings are not constant")
    p = np.asarray(pads.data, dtype=np.int64).reshape(-1, 2)
    _need(op, p.shape[0] == len(x.shape) and (p >= 0).all(), "bad paddings %s" % p.tolist())
    full = [[0, 0]] * (4 - len(x.shape)) + p.tolist()
    value = y.zp
    if op.kind == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        cv = graph.tensors[op.inputs[2]]
        _need(op, cv.is_const, "pad value is not constant")
        value = int(np.asarray(cv.data).reshape(-1)[0])
    op.kind = "PAD"
    op.inputs = [op.inputs[0]]
    op.params = [int(v) for pair in full for v in pair] + [value]


def _lower_concat(op, graph):
    y = graph.tensors[op.outputs[0]]
    _check_int8(op, graph, op.outputs[0], "output")
    for i in op.inputs:
        _check_int8(op, graph, i, "input")
        _need(op, graph.tensors[i].same_quant(y), "input quantization differs from the output's (run the "
              "requantize_concat_inputs pass first)")
        _need(op, len(graph.tensors[i].shape) == len(y.shape), "inputs of different rank")
    op.params = [_axis4(op, op.options.get("axis", 0), len(y.shape))]


def _lower_quantize(op, graph):
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _need(op, x.dtype == "float32" and y.dtype == "int8" and y.quantized and not y.per_channel,
          "only float32 -> int8 (per-tensor) QUANTIZE is supported, got %s -> %s" % (x.dtype, y.dtype))
    op.params = []


def _lower_dequantize(op, graph):
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _need(op, x.dtype == "int8" and y.dtype == "float32" and x.quantized and not x.per_channel,
          "only int8 (per-tensor) -> float32 DEQUANTIZE is supported, got %s -> %s" % (x.dtype, y.dtype))
    _need(op, not x.is_const, "DEQUANTIZE of a constant (float weights) is not supported")
    op.params = []


def _lower_mean(op, graph):
    from .mean import lower_mean
    lower_mean(op, graph)


_LOWER = {
    "CONV_2D": lambda op, g: _lower_conv(op, g, False),
    "DEPTHWISE_CONV_2D": lambda op, g: _lower_conv(op, g, True),
    "FULLY_CONNECTED": _lower_fc,
    "AVERAGE_POOL_2D": _lower_pool,
    "MAX_POOL_2D": _lower_pool,
    "ADD": _lower_add,
    "MUL": _lower_mul,
    "SOFTMAX": _lower_softmax,
    "PAD": _lower_pad,
    "PADV2": _lower_pad,
    "CONCATENATION": _lower_concat,
    "QUANTIZE": _lower_quantize,
    "DEQUANTIZE": _lower_dequantize,
    "MEAN": _lower_mean,
    "LUT": lambda op, g: setattr(op, "params", []),
    "VIEW": lambda op, g: setattr(op, "params", []),
    "COPY": lambda op, g: setattr(op, "params", []),
}


# Ops whose data operands may be constants (spec §5); every other op reads its data input from the arena.
CONST_OPERAND_OPS = ("ADD", "MUL", "CONCATENATION")
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "LUT")


def _check_storage(op, graph):
    if op.kind == "VIEW":
        return
    data = op.inputs[:1] if op.kind in _WEIGHTED else op.inputs
    for i in data:
        if graph.tensors[i].is_const and op.kind not in CONST_OPERAND_OPS:
            raise CompileError("%s: a constant data input (%r) is not supported" % (op_where(op),
                                                                                 graph.tensors[i].name))
    if all(graph.tensors[i].is_const for i in data):
        raise CompileError("%s: every data input is constant (the op computes a constant)" % op_where(op))


def lower(graph):
    """Lower every op; raises CompileError naming the first op that is not supported."""
    for op in graph.ops:
        op.macs = 0
        fn = _LOWER.get(op.kind)
        if fn is None:
            raise CompileError("%s is not supported by the tinymlaas compiler (supported: %s)"
                               % (op_where(op), ", ".join(sorted(SUPPORTED_TFLITE_OPS))))
        for t in op.outputs:
            if len(graph.tensors[t].shape) > 4:
                raise CompileError("%s: output has rank %d; at most 4 is supported" % (op_where(op),
                                                                                       len(graph.tensors[t].shape)))
        fn(op, graph)
        _check_storage(op, graph)
        if op.kind != "VIEW":
            spec = F.OPS_BY_NAME[op.kind]
            assert spec.inputs is None or len(op.inputs) == len(spec.inputs), (op.kind, op.inputs)
            assert len(op.params) == spec.n_params, (op.kind, op.params)


SUPPORTED_TFLITE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD",
                        "MUL", "SOFTMAX", "PAD", "PADV2", "CONCATENATION", "QUANTIZE", "DEQUANTIZE", "MEAN",
                        "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1",
                        "LEAKY_RELU", "HARD_SWISH")
