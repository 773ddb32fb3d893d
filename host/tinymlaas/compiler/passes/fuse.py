"""Pass 4: fusion.

* A LUT whose table is a pure clamp (RELU / RELU6 on unchanged quantization) that follows CONV_2D,
  DEPTHWISE_CONV_2D, FULLY_CONNECTED or ADD narrows that op's activation range instead: clamp(clamp(v, a, b), c, d)
  == clamp(v, max(a, c), min(b, d)), so this is exact.
* PAD (zero padding in the real domain: pad value == zero point) followed by CONV_2D or DEPTHWISE_CONV_2D becomes
  extra top/left padding of the convolution: the convolution skips positions outside its input, which contributes
  exactly what (zero_point + in_off) == 0 contributes. Bottom/right padding is implied by the output size.
* The same PAD followed by MAX_POOL_2D, where exact: every pooling window still covers at least one real input
  position, and the pad value can never be the window's maximum after the activation clamp -- because it is
  <= the pool's act_min, or because the producer of PAD's input clamps to a range starting at >= the pad value
  (conv + RELU -> ZeroPadding2D -> MaxPool2D). AVERAGE_POOL_2D is never fused: it would stop counting the padded
  positions.
"""

import numpy as np

from .. import quantization as Q
from .lut import lut_clamp_range

ACT_RANGE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD")


def _sole_consumer(graph, t):
    if t in graph.outputs:
        return None
    users = [op for op in graph.ops if t in op.inputs]
    return users[0] if len(users) == 1 else None


def fuse_activations(graph):
    n = 0
    for op in list(graph.ops):
        if op.kind != "LUT" or op.options.get("source_kind") not in ("RELU", "RELU6", "RELU_N1_TO_1"):
            continue
        src = graph.producer(op.inputs[0])
        if src is None or src.kind not in ACT_RANGE_OPS or _sole_consumer(graph, op.inputs[0]) is not op:
            continue
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if not x.same_quant(y):
            continue
        rng = lut_clamp_range(graph.tensors[op.inputs[1]].data)
        if rng is None:
            continue
        lo, hi = src.options.get("extra_act_range", (-128, 127))
        src.options["extra_act_range"] = (max(lo, rng[0]), min(hi, rng[1]))
        src.outputs = [op.outputs[0]]
        graph.ops.remove(op)
        n += 1
    return n


def fuse_pads(graph):
    n = 0
    for op in list(graph.ops):
        if op.kind not in ("PAD", "PADV2"):
            continue
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        pads = graph.tensors[op.inputs[1]]
        if not pads.is_const or x.dtype != "int8" or len(x.shape) != 4 or not x.same_quant(y):
            continue
        pad_value = y.zp
        if op.kind == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            cv = graph.tensors[op.inputs[2]]
            if not cv.is_const:
                continue
            pad_value = int(np.asarray(cv.data).reshape(-1)[0])
        if pad_value != x.zp:
            continue
        if pads.data.size != 8:
            continue
        p = np.asarray(pads.data).reshape(4, 2)
        if p[0].any() or p[3].any() or (p < 0).any():
            continue
        conv = _sole_consumer(graph, op.outputs[0])
        if conv is None or conv.inputs[0] != op.outputs[0]:
            continue
        if conv.kind == "MAX_POOL_2D":
            if not _maxpool_fusable(graph, op, conv, x, y, p, pad_value):
                continue
        elif conv.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        top, left = conv.options.get("pre_pad", (0, 0, None, None))[:2]
        # The convolution's own padding is computed on the padded size it was exported with.
        conv.options["pre_pad"] = (top + int(p[1][0]), left + int(p[2][0]), y.shape[1], y.shape[2])
        conv.inputs = [op.inputs[0]] + conv.inputs[1:]
        graph.ops.remove(op)
        n += 1
    return n


def _windows_cover_input(in_size, padded, before, f, s, out, same):
    """True if every pooling window, placed on the padded size, overlaps the unpadded input."""
    total = max((out - 1) * s + f - padded, 0) if same else 0
    top = total // 2 + before
    return all(o * s - top + f - 1 >= 0 and o * s - top <= in_size - 1 for o in range(out))


def _producer_act_min(graph, t):
    """A lower bound of every value the producer of t can write: its activation clamp, or a LUT's smallest entry."""
    src = graph.producer(t)
    if src is not None and src.kind == "LUT":
        return int(np.min(graph.tensors[src.inputs[1]].data))
    if src is None or "fusedActivationFunction" not in src.options:
        return -128
    out = graph.tensors[t]
    try:
        lo, _ = Q.activation_range(src.options["fusedActivationFunction"], out.s, out.zp)
    except Exception:
        return -128
    return max(lo, src.options.get("extra_act_range", (-128, 127))[0])


def _maxpool_fusable(graph, pad_op, pool, x, y, p, pad_value):
    o = pool.options
    same = o.get("padding") == "SAME"
    out = graph.tensors[pool.outputs[0]]
    f_h, f_w, s_h, s_w = o.get("filterHeight", 1), o.get("filterWidth", 1), o.get("strideH", 1), o.get("strideW", 1)
    if not (_windows_cover_input(x.shape[1], y.shape[1], int(p[1][0]), f_h, s_h, out.shape[1], same) and
            _windows_cover_input(x.shape[2], y.shape[2], int(p[2][0]), f_w, s_w, out.shape[2], same)):
        return False
    try:
        pool_min, _ = Q.activation_range(o.get("fusedActivationFunction", "NONE"), out.s, out.zp)
    except Exception:
        return False
    return pad_value <= pool_min or _producer_act_min(graph, pad_op.inputs[0]) >= pad_value
