"""MEAN lowering (int8): sum over the reduced axes of the 4-D view, then TFLM's folded 1/count requantization."""

import numpy as np

from .. import quantization as Q
from ..errors import CompileError, op_where


def lower_mean(op, graph):
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    for t, what in ((x, "input"), (y, "output")):
        if t.dtype != "int8" or not t.quantized or t.per_channel:
            raise CompileError("%s: %s must be per-tensor int8, is %s" % (op_where(op), what, t.dtype))
    axes_t = graph.tensors[op.inputs[1]]
    if not axes_t.is_const:
        raise CompileError("%s: reduction axes are not constant" % op_where(op))
    rank = len(x.shape)
    if rank > 4:
        raise CompileError("%s: input rank %d > 4" % (op_where(op), rank))
    mask = 0
    count = 1
    for a in np.asarray(axes_t.data).reshape(-1):
        a = int(a) + rank if int(a) < 0 else int(a)
        if not 0 <= a < rank:
            raise CompileError("%s: axis %d out of range" % (op_where(op), a))
        if not mask & (1 << (a + 4 - rank)):
            count *= x.shape[a]
        mask |= 1 << (a + 4 - rank)
    kept = [d for k, d in enumerate(x.shape) if not mask & (1 << (k + 4 - rank))]
    if int(np.prod(kept)) != y.elements:
        raise CompileError("%s: output %s does not match reducing %s" % (op_where(op), y.shape, x.shape))
    m, s = Q.mean_params(x.s, y.s, count)
    op.inputs = [op.inputs[0]]
    op.params = [mask, x.zp, y.zp, m, s]
