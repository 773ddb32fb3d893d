"""Pass 3: every int8 -> int8 elementwise op becomes a 256-entry lookup table.

The table is the op's TFLite Micro integer kernel evaluated on all 256 inputs (compiler/quantization.py ports each
kernel's integer algorithm), so the LUT is bit-exact by construction and the runtimes need one kernel for all of
them."""

import numpy as np

from .. import quantization as Q
from ..errors import CompileError, op_where

LUT_KINDS = ("LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "QUANTIZE", "HARD_SWISH")


def table_for(op, x, y):
    """The int8 table of `op` mapping x's 256 values to y."""
    k = op.kind
    if k == "RELU":
        return Q.relu_table(x.s, x.zp, y.s, y.zp)
    if k == "RELU6":
        return Q.relu6_table(x.s, x.zp)
    if k == "RELU_N1_TO_1":
        return Q.relu_n1_to_1_table(x.s, x.zp, y.s, y.zp)
    if k == "LEAKY_RELU":
        return Q.leaky_relu_table(x.s, x.zp, y.s, y.zp, op.options.get("alpha", 0.2))
    if k == "LOGISTIC":
        if y.zp != -128 or y.s != Q.f32(1.0 / 256):
            raise CompileError("%s: int8 LOGISTIC needs output scale 1/256, zero point -128" % op_where(op))
        return Q.logistic_table(x.s, x.zp)
    if k == "TANH":
        if y.zp != 0 or y.s != Q.f32(1.0 / 128):
            raise CompileError("%s: int8 TANH needs output scale 1/128, zero point 0" % op_where(op))
        return Q.tanh_table(x.s, x.zp)
    if k == "QUANTIZE":
        return Q.requantize_table(x.s, x.zp, y.s, y.zp)
    if k == "HARD_SWISH":
        return Q.hard_swish_table(x.s, x.zp, y.s, y.zp)
    raise CompileError("%s: int8 %s is not supported" % (op_where(op), k))


def lower_to_lut(graph):
    n = 0
    for op in graph.ops:
        if op.kind not in LUT_KINDS:
            continue
        x = graph.tensors[op.inputs[0]]
        y = graph.tensors[op.outputs[0]]
        if op.kind == "QUANTIZE" and x.dtype == "float32":
            continue  # float -> int8 QUANTIZE stays an op of its own
        if x.dtype != "int8" or y.dtype != "int8":
            raise CompileError("%s: %s -> %s is not supported (int8 only)" % (op_where(op), x.dtype, y.dtype))
        if x.per_channel or y.per_channel:
            raise CompileError("%s: per-channel quantized activations are not supported" % op_where(op))
        if not (x.s > 0 and y.s > 0):
            raise CompileError("%s: input and output need positive quantization scales" % op_where(op))
        table = np.array(table_for(op, x, y), dtype=np.int8)
        t = graph.add_const("%s/lut" % y.name, table)
        op.options = dict(op.options, source_kind=op.kind)
        op.kind = "LUT"
        op.inputs = [op.inputs[0], t]
        n += 1
    return n


def lut_clamp_range(table):
    """(lo, hi) if the table is y = clamp(x, lo, hi) for every x, else None."""
    t = [int(v) for v in table]
    lo = t[0]
    hi = t[-1]
    if lo > hi:
        return None
    for i, v in enumerate(t):
        if v != max(lo, min(hi, i - 128)):
            return None
    return lo, hi


def requantize_concat_inputs(graph):
    """CONCATENATION joins bytes, so its inputs must share the output's scale and zero point (spec §5). TFLite's
    converter makes them equal; for an input that differs, insert a LUT that requantizes it exactly as an int8 ->
    int8 QUANTIZE op would (TFLite Micro itself refuses such a model)."""
    from ..ir import Op, Tensor

    n = 0
    for op in list(graph.ops):
        if op.kind != "CONCATENATION":
            continue
        y = graph.tensors[op.outputs[0]]
        if y.dtype != "int8" or not y.quantized or y.per_channel:
            continue
        for k, i in enumerate(op.inputs):
            x = graph.tensors[i]
            if x.dtype != "int8" or not x.quantized or x.per_channel or x.same_quant(y):
                continue
            table = np.array(Q.requantize_table(x.s, x.zp, y.s, y.zp), dtype=np.int8)
            t_table = graph.add_const("%s/requant_lut" % x.name, table)
            t_new = graph.add_tensor(Tensor(x.name + "/requantized", "int8", x.shape, y.scale, y.zero_point))
            lut = Op("LUT", [i, t_table], [t_new], {"source_kind": "QUANTIZE"}, op.index)
            graph.ops.insert(graph.ops.index(op), lut)
            op.inputs[k] = t_new
            n += 1
    return n
