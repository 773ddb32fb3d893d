"""The per-op rules of the blob spec (docs/blob-format.md §5-§7) for the reader (blob/reader.py): dtypes,
shapes, parameters and arena aliasing of each op, and the constant tables some ops carry (requantization
multipliers, SOFTMAX's exp table, tree ensembles' node tables). Each rule raises BlobFormatError naming the op.
The MicroPython runtime's inference_module/tinyml/opcheck.py and the C loader's check_op apply the same rules.
"""

import math

from . import classic
from . import format as F
from . import patch
from .format import fail as _fail

# Bounds shared with the C loader (inference_module/c/tml_load.c). Strides, dilations and pool filters above 65535
# occur in no real model and would let a corrupt blob request absurd work. ADD's left shift: (x + off) spans
# [-255, 255], so shifting by more than 22 can leave int32 (TFLite uses 20).
MAX_WINDOW_PARAM = 65535
MAX_ADD_LEFT_SHIFT = 22


def check_exp_table(op, tensors, table):
    """exp_table holds Q0.31 values in [0, 2^31). The row sum (Q12.19) must stay below 2^28 so that SOFTMAX's final
    RDBPOT exponent (12 - headroom) + 23 stays <= 31 -- TFLite's own kernel has undefined behaviour beyond that
    (e.g. 512 or more equal values in a row); a device must not be asked to compute it."""
    if int(table.min()) < 0:
        _fail("op %d (SOFTMAX): exp_table has a negative entry", op.index)
    depth = tensors[op.inputs[0]].dims4[3]
    per = (int(table.max()) + (1 << 11)) >> 12  # the largest RDBPOT(entry, 12)
    if depth * per >= 1 << 28:
        _fail("op %d (SOFTMAX): %d classes can overflow the Q12.19 sum of exponentials (limit %d)", op.index, depth,
              ((1 << 28) - 1) // max(per, 1))


def check_multipliers(op, mult, shift):
    """MBQM's preconditions (§5): m in [2^30, 2^31) or 0, s in [-31, 30]. Outside them a C runtime would shift by
    32 or more -- undefined behaviour -- so the reader refuses instead of trusting the compiler."""
    import numpy as np

    m = np.asarray(mult, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    bad_m = (m != 0) & (m < (1 << 30))
    bad_s = (s < -31) | (s > 30)
    if np.any(bad_m):
        i = int(np.argmax(bad_m))
        _fail("op %d (%s): multiplier %d at channel %d is not 0 or in [2^30, 2^31)", op.index, op.name, m[i], i)
    if np.any(bad_s):
        i = int(np.argmax(bad_s))
        _fail("op %d (%s): shift %d at channel %d is outside -31..30", op.index, op.name, s[i], i)


def const_i32(data, const_off, t):
    import numpy as np

    return np.frombuffer(data, dtype="<i4", count=t.elements, offset=const_off + t.offset).reshape(t.shape)


def check_tree_tables(op, tensors, data, const_off):
    """The table rules of spec §10, in one pass over the node and tree tables (vectorized)."""
    import numpy as np

    x, nodes_t, leaves_t, trees_t, init_t = (tensors[i] for i in op.inputs)
    n_features = x.shape[1]
    n_leaves, width = leaves_t.shape
    n_classes = init_t.elements
    nodes = const_i32(data, const_off, nodes_t).astype(np.int64)
    trees = const_i32(data, const_off, trees_t).astype(np.int64)

    def bad(msg, *args):
        _fail("op %d (TREE_ENSEMBLE): " % op.index + msg, *args)

    idx = np.arange(len(nodes))
    feat, key, children = nodes[:, 0], nodes[:, 1], nodes[:, 2:]
    if np.any((feat < 0) | (feat >= n_features)):
        i = int(np.argmax((feat < 0) | (feat >= n_features)))
        bad("node %d reads feature %d of %d", i, feat[i], n_features)
    if np.any(np.abs(key) > 0x7F800000):
        bad("node %d threshold key is beyond +-inf", int(np.argmax(np.abs(key) > 0x7F800000)))
    node_child = children >= 0
    wrong = (node_child & ((children <= idx[:, None]) | (children >= len(nodes)))) | (
        ~node_child & ((-1 - children) >= n_leaves))
    if np.any(wrong):
        i = int(np.argmax(wrong.any(axis=1)))
        bad("node %d has an invalid child %s (children must come after their parent; leaves < %d)", i,
            list(children[i]), n_leaves)
    root, first = trees[:, 0], trees[:, 1]
    wrong = ((root >= 0) & (root >= len(nodes))) | ((root < 0) & ((-1 - root) >= n_leaves))
    if np.any(wrong):
        bad("tree %d has an invalid root %d", int(np.argmax(wrong)), root[int(np.argmax(wrong))])
    wrong = (first < 0) | (first > n_classes - width)
    if np.any(wrong):
        bad("tree %d adds to classes %d.. beyond the %d classes", int(np.argmax(wrong)),
            first[int(np.argmax(wrong))], n_classes)


def _broadcastable(a, y):
    return all(da == dy or da == 1 for da, dy in zip(a, y))


CONST_OPERAND_OPS = ("ADD", "MUL", "CONCATENATION")


def check_op(op, tensors):
    """Dtype, shape and aliasing rules of §5 for one op."""
    name = op.name
    T = [tensors[i] for i in op.inputs]
    y = tensors[op.outputs[0]]

    def bad(msg, *args):
        _fail("op %d (%s): " % (op.index, name) + msg, *args)

    def need(t, dtype, what, const=None):
        if t.dtype != dtype:
            bad("%s must be %s, is %s", what, F.DTYPE_NAMES[dtype], F.DTYPE_NAMES[t.dtype])
        if const is not None and t.is_const != const:
            bad("%s must be %s", what, "const" if const else "an arena tensor")

    def need_requantized(x, w, b, mult, shift, weights):
        """int8 in and out, int8 weights and int32 bias and per-channel requantization, all four const."""
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        need(w, F.DTYPE_INT8, weights, const=True)
        need(b, F.DTYPE_INT32, "bias", const=True)
        need(mult, F.DTYPE_INT32, "mult", const=True)
        need(shift, F.DTYPE_INT32, "shift", const=True)

    if y.is_const:
        bad("output tensor %d is const", y.index)
    if name not in CONST_OPERAND_OPS and T and T[0].is_const:
        # Only ADD, MUL and CONCATENATION may take constant data operands (§5); elsewhere "x" is an activation.
        bad("data input tensor %d is not in the arena", T[0].index)
    P = dict(zip(op.spec.params, op.params))
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x, w, b, mult, shift = T
        need_requantized(x, w, b, mult, shift, "filter")
        if len(w.shape) != 4:
            bad("filter must be rank 4, is %s", list(w.shape))
        xn, xh, xw, xc = x.dims4
        yn, yh, yw, yc = y.dims4
        if name == "CONV_2D":
            co = w.shape[0]
            if w.shape[3] != xc:
                bad("filter Ci=%d differs from input C=%d", w.shape[3], xc)
        else:
            co = w.shape[3]
            if w.shape[0] != 1:
                bad("depthwise filter must be [1,Kh,Kw,Co], is %s", list(w.shape))
            if P["depth_multiplier"] < 1 or xc * P["depth_multiplier"] != co:
                bad("input C=%d x depth_multiplier=%d != Co=%d", xc, P["depth_multiplier"], co)
        if yc != co or yn != xn:
            bad("output %s does not match N=%d, Co=%d", list(y.dims4), xn, co)
        for t, what in ((b, "bias"), (mult, "mult"), (shift, "shift")):
            if t.elements != co:
                bad("%s has %d elements, needs Co=%d", what, t.elements, co)
        for k in ("stride_h", "stride_w", "dil_h", "dil_w"):
            if not 1 <= P[k] <= MAX_WINDOW_PARAM:
                bad("%s=%d outside 1..%d", k, P[k], MAX_WINDOW_PARAM)
        if P["pad_top"] < 0 or P["pad_left"] < 0:
            bad("negative padding")
        _check_offsets(bad, P, ("in_off",), ("out_off",))
        # TFLite padding never exceeds the dilated filter extent minus one; more would create output positions
        # that read no input at all (and lets a corrupt blob ask for absurd output sizes).
        kh, kw = w.shape[1], w.shape[2]
        if P["pad_top"] > (kh - 1) * P["dil_h"] or P["pad_left"] > (kw - 1) * P["dil_w"]:
            bad("padding (%d, %d) exceeds the filter extent", P["pad_top"], P["pad_left"])
        # The last output row/column's window must start inside the input.
        if (yh - 1) * P["stride_h"] - P["pad_top"] >= xh or (yw - 1) * P["stride_w"] - P["pad_left"] >= xw:
            bad("output %dx%d does not fit input %dx%d with these strides and padding", yh, yw, xh, xw)
        _check_act(bad, P)
    elif name == "FULLY_CONNECTED":
        x, w, b, mult, shift = T
        need_requantized(x, w, b, mult, shift, "weights")
        if len(w.shape) != 2:
            bad("weights must be [Co,Ci], are %s", list(w.shape))
        co, ci = w.shape
        if x.elements % ci:
            bad("input has %d elements, not a multiple of Ci=%d", x.elements, ci)
        if y.elements != (x.elements // ci) * co:
            bad("output has %d elements, needs rows x Co = %d", y.elements, (x.elements // ci) * co)
        if b.elements != co:
            bad("bias has %d elements, needs %d", b.elements, co)
        if mult.elements not in (1, co) or shift.elements != mult.elements:
            bad("mult/shift have %d/%d elements, need 1 or %d", mult.elements, shift.elements, co)
        _check_offsets(bad, P, ("in_off", "w_off"), ("out_off",))
        _check_act(bad, P)
    elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        (x,) = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        if x.dims4[0] != y.dims4[0] or x.dims4[3] != y.dims4[3]:
            bad("output %s must keep N and C of input %s", list(y.dims4), list(x.dims4))
        for k in ("stride_h", "stride_w", "filter_h", "filter_w"):
            if not 1 <= P[k] <= MAX_WINDOW_PARAM:
                bad("%s=%d outside 1..%d", k, P[k], MAX_WINDOW_PARAM)
        if P["pad_top"] < 0 or P["pad_left"] < 0:
            bad("negative padding")
        if P["pad_top"] >= P["filter_h"] or P["pad_left"] >= P["filter_w"]:
            bad("padding (%d, %d) is not smaller than the filter", P["pad_top"], P["pad_left"])
        yh, yw = y.dims4[1], y.dims4[2]
        if (yh - 1) * P["stride_h"] - P["pad_top"] >= x.dims4[1] or \
                (yw - 1) * P["stride_w"] - P["pad_left"] >= x.dims4[2]:
            bad("output %dx%d does not fit input %dx%d with these strides and padding", yh, yw, x.dims4[1],
                x.dims4[2])
        _check_act(bad, P)
    elif name in ("ADD", "MUL"):
        a, b = T
        for t, what in ((a, "a"), (b, "b"), (y, "output")):
            need(t, F.DTYPE_INT8, what)
        if not (_broadcastable(a.dims4, y.dims4) and _broadcastable(b.dims4, y.dims4)):
            bad("inputs %s and %s do not broadcast to %s", list(a.dims4), list(b.dims4), list(y.dims4))
        for k in ("a_shift", "b_shift", "out_shift"):
            lo_s, hi_s = (-31, 0) if name == "ADD" else (-31, 30)
            if k in P and not lo_s <= P[k] <= hi_s:
                bad("%s=%d outside %d..%d", k, P[k], lo_s, hi_s)
        _check_offsets(bad, P, ("a_off", "b_off"), ("out_off",))
        for k in ("a_mult", "b_mult", "out_mult"):
            if k in P and P[k] != 0 and P[k] < (1 << 30):
                bad("%s=%d is not 0 or in [2^30, 2^31)", k, P[k])
        if "left_shift" in P and not 0 <= P["left_shift"] <= MAX_ADD_LEFT_SHIFT:
            bad("left_shift=%d outside 0..%d", P["left_shift"], MAX_ADD_LEFT_SHIFT)
        _check_act(bad, P)
    elif name in ("SOFTMAX", "LUT"):
        x, table = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        if name == "SOFTMAX":
            need(table, F.DTYPE_INT32, "exp_table", const=True)
            if x.shape != y.shape:
                bad("output shape %s differs from input %s", list(y.shape), list(x.shape))
        else:
            need(table, F.DTYPE_INT8, "table", const=True)
            if x.elements != y.elements:
                bad("output has %d elements, input %d", y.elements, x.elements)
        if table.elements != 256:
            bad("table has %d entries, needs 256", table.elements)
    elif name == "PAD":
        (x,) = T
        if x.dtype != y.dtype:
            bad("input and output dtypes differ")
        for k in range(4):
            lo, hi = P["before_%d" % k], P["after_%d" % k]
            if lo < 0 or hi < 0 or x.dims4[k] + lo + hi != y.dims4[k]:
                bad("axis %d: %d + %d + %d != output %d", k, lo, x.dims4[k], hi, y.dims4[k])
        if x.dtype == F.DTYPE_INT8 and not -128 <= P["pad_value"] <= 127:
            bad("pad_value %d outside int8", P["pad_value"])
    elif name == "MEAN":
        (x,) = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        mask = P["axis_mask"]
        if not 1 <= mask <= 15:
            bad("axis_mask %d outside 1..15", mask)
        kept = 1
        for k in range(4):
            if not mask >> k & 1:
                kept *= x.dims4[k]
        if y.elements != kept:
            bad("output has %d elements, reducing axes 0x%x of %s leaves %d", y.elements, mask, list(x.dims4),
                kept)
        if not -31 <= P["shift"] <= 30:
            bad("shift %d outside -31..30", P["shift"])
        if P["mult"] < 0:
            # MEAN's multiplier is not normalised (spec §5 MEAN): any value in [0, 2^31).
            bad("mult %d is negative", P["mult"])
        _check_offsets(bad, P, (), ("in_zp", "out_zp"))
    elif name == "CONCATENATION":
        axis = P["axis"]
        if not 0 <= axis <= 3:
            bad("axis %d outside 0..3", axis)
        total = 0
        for t in T:
            if t.dtype != y.dtype:
                bad("input %d dtype differs from output", t.index)
            for k in range(4):
                if k != axis and t.dims4[k] != y.dims4[k]:
                    bad("input %d shape %s does not match output %s off axis %d", t.index, list(t.dims4),
                        list(y.dims4), axis)
            total += t.dims4[axis]
        if total != y.dims4[axis]:
            bad("inputs sum to %d along axis %d, output has %d", total, axis, y.dims4[axis])
    elif name == "QUANTIZE":
        (x,) = T
        need(x, F.DTYPE_FLOAT32, "input")
        need(y, F.DTYPE_INT8, "output")
        if x.elements != y.elements:
            bad("element counts differ")
        if not (y.scale > 0 and math.isfinite(y.scale)) or not -128 <= y.zero_point <= 127:
            bad("output scale %r / zero point %d invalid", y.scale, y.zero_point)
    elif name == "DEQUANTIZE":
        (x,) = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_FLOAT32, "output")
        if x.elements != y.elements:
            bad("element counts differ")
        if not math.isfinite(x.scale) or not -128 <= x.zero_point <= 127:
            bad("input scale %r / zero point %d invalid", x.scale, x.zero_point)
    elif name == "COPY":
        (x,) = T
        if x.nbytes != y.nbytes:
            bad("input is %d bytes, output %d", x.nbytes, y.nbytes)
    elif name in classic.OP_NAMES:
        classic.check_op(op, T, y, P, bad, need, F.DTYPE_FLOAT32, F.DTYPE_INT32)
    elif name == "PATCH":
        patch.check_op(T, y, P, bad, need, F.DTYPE_INT8, F.DTYPE_INT32)
    elif name == "TREE_ENSEMBLE":
        x, nodes, leaves, trees, init = T
        need(x, F.DTYPE_FLOAT32, "input", const=False)
        need(y, F.DTYPE_INT32, "output")
        for t, what in ((nodes, "nodes"), (leaves, "leaves"), (trees, "trees"), (init, "init")):
            need(t, F.DTYPE_INT32, what, const=True)
        if len(x.shape) != 2 or x.shape[0] != 1:
            bad("input must be [1,F], is %s", list(x.shape))
        if len(nodes.shape) != 2 or nodes.shape[1] != 4:
            bad("nodes must be [N,4], are %s", list(nodes.shape))
        if len(leaves.shape) != 2:
            bad("leaves must be [L,W], are %s", list(leaves.shape))
        if len(trees.shape) != 2 or trees.shape[1] != 2:
            bad("trees must be [T,2], are %s", list(trees.shape))
        if len(init.shape) != 1 or init.elements != y.elements:
            bad("init must be [C] with C = output elements %d, is %s", y.elements, list(init.shape))
        if leaves.shape[0] >= 1 << 24:
            bad("%d leaves, must be < 2^24", leaves.shape[0])
        if leaves.shape[1] > y.elements:
            bad("leaf width %d exceeds the %d classes", leaves.shape[1], y.elements)
        if x.offset % 4 or y.offset % 4:
            bad("input and output arena offsets must be multiples of 4")

    if name not in F.INPLACE_OPS:
        for t in T[1:] if name == "PATCH" else T:  # PATCH's output may lie over its input (§12)
            if not t.is_const and t.offset < y.offset + y.nbytes and y.offset < t.offset + t.nbytes:
                bad("input tensor %d overlaps output tensor %d in the arena", t.index, y.index)


def _check_offsets(bad, P, input_offsets, output_offsets):
    """Input offsets are -zero_point (so -127..128, and -128 is tolerated), output offsets are zero points."""
    for k in input_offsets:
        if not -128 <= P[k] <= 128:
            bad("%s=%d outside the int8 zero-point range", k, P[k])
    for k in output_offsets:
        if not -128 <= P[k] <= 127:
            bad("%s=%d outside the int8 zero-point range", k, P[k])


def _check_act(bad, P):
    lo, hi = P["act_min"], P["act_max"]
    if not -128 <= lo <= hi <= 127:
        bad("activation range [%d, %d] is not inside int8", lo, hi)
