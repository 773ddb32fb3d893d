"""Per-op dtype, shape, parameter and memory rules (docs/blob-format.md §5), checked before execution."""

import struct

from .errors import BlobError
from . import ops as O
from .blob import (T_DTYPE, T_STORAGE, T_DIMS, T_OFF, T_BYTES, T_ZP, T_SCALE, INT8, INT32, FLOAT32, ARENA, CONST,
                   DTYPE_NAME, elements)


def _fail(i, code, msg):
    raise BlobError("op %d (%s): %s" % (i, O.OPS[code][0], msg))


def _int32s(src, t, buf_n=64):
    """Yield the values of an int32 const tensor, reading at most buf_n values at a time."""
    off, n = t[T_OFF], t[T_BYTES] // 4
    for k in range(0, n, buf_n):
        m = min(buf_n, n - k)
        for v in struct.unpack("<%di" % m, src.read(off + 4 * k, 4 * m)):
            yield v


def _check_requant(src, i, code, tm, ts, co):
    sizes = (1, co) if code == O.FULLY_CONNECTED else (co,)  # per-tensor only for FULLY_CONNECTED (§5)
    for t, nm in ((tm, "mult"), (ts, "shift")):
        n = elements(t)
        if t[T_DTYPE] != INT32 or t[T_STORAGE] != CONST or n not in sizes:
            _fail(i, code, "%s must be a const int32 vector of %s values" % (nm, " or ".join(str(k) for k in sizes)))
    for m in _int32s(src, tm):
        if m != 0 and not 0x40000000 <= m <= 0x7FFFFFFF:
            _fail(i, code, "multiplier %d outside [2^30, 2^31)" % m)
    for s in _int32s(src, ts):
        if not -31 <= s <= 30:
            _fail(i, code, "shift %d outside [-31, 30]" % s)


def _range(i, code, v, lo, hi, what):
    if not lo <= v <= hi:
        _fail(i, code, "%s %d outside [%d, %d]" % (what, v, lo, hi))


def _window_ok(out, inp, stride, k_eff, pad):
    # Every output position must see at least one input position (else a pool would divide by zero).
    return pad < k_eff and (out - 1) * stride - pad < inp


def check_op(src, p, i):
    code, ins, out, par = p.ops[i]
    if code == O.PATCH:  # its x and y may overlap; its rules, and its stage's, beside its tile loop
        from .patch import check_op as check_patch
        check_patch(src, p, i)
        return
    if code == O.TREE_ENSEMBLE:
        # float32 in, int32 out and four const tables: its own rules (§10), kept beside its kernel. Imported
        # here so that models without trees never load that module.
        from .trees import check_op as check_trees
        check_trees(src, p, i)
        return
    if code >= O.KERNEL:
        # §11's float ops (17..21), likewise beside their kernels in classic.py, loaded only for such models.
        from .classic import check_op as check_classic
        check_classic(src, p, i)
        return
    T = p.tensors
    y = T[out]
    if y[T_STORAGE] != ARENA:
        _fail(i, code, "output tensor %d is not in the arena" % out)
    x = T[ins[0]]
    data_ins = ins
    if code in (O.CONV_2D, O.DEPTHWISE_CONV_2D, O.FULLY_CONNECTED, O.SOFTMAX, O.LUT):
        data_ins = ins[:1]
    arena_ins = data_ins
    if code in O.CONST_OPERANDS:
        arena_ins = [k for k in data_ins if T[k][T_STORAGE] == ARENA]
        for k in data_ins:
            # A streaming runtime reads a const ADD/MUL operand whole into its weight buffer (broadcasting
            # indexes it freely); CONCATENATION copies its const inputs straight into the output.
            if T[k][T_STORAGE] == CONST and code != O.CONCATENATION and T[k][T_BYTES] > p.max_unit:
                p.max_unit = T[k][T_BYTES]
    else:
        for k in data_ins:
            if T[k][T_STORAGE] != ARENA:
                _fail(i, code, "data input tensor %d is not in the arena" % k)
    want_x = FLOAT32 if code == O.QUANTIZE else INT8
    want_y = FLOAT32 if code == O.DEQUANTIZE else INT8
    for k in data_ins:
        if T[k][T_DTYPE] != want_x:
            _fail(i, code, "input tensor %d is %s, expected %s" % (k, DTYPE_NAME[T[k][T_DTYPE]], DTYPE_NAME[want_x]))
    if y[T_DTYPE] != want_y:
        _fail(i, code, "output tensor %d is %s, expected %s" % (out, DTYPE_NAME[y[T_DTYPE]], DTYPE_NAME[want_y]))
    if code not in O.MAY_ALIAS:
        a0, a1 = y[T_OFF], y[T_OFF] + y[T_BYTES]
        for k in arena_ins:  # a const operand's offset is in the blob, not the arena
            t = T[k]
            if t[T_OFF] < a1 and a0 < t[T_OFF] + t[T_BYTES]:
                _fail(i, code, "input tensor %d overlaps the output in the arena" % k)
    xd, yd = x[T_DIMS], y[T_DIMS]

    if code in (O.CONV_2D, O.DEPTHWISE_CONV_2D, O.FULLY_CONNECTED):
        w, b = T[ins[1]], T[ins[2]]
        if w[T_DTYPE] != INT8 or w[T_STORAGE] != CONST:
            _fail(i, code, "filter must be a const int8 tensor")
        if b[T_DTYPE] != INT32 or b[T_STORAGE] != CONST:
            _fail(i, code, "bias must be a const int32 tensor")
        wd = w[T_DIMS]
        if code == O.FULLY_CONNECTED:
            co, ci = wd[2], wd[3]
            if wd[0] != 1 or wd[1] != 1 or len(w[7]) != 2:
                _fail(i, code, "filter must be [Co, Ci]")
            if elements(x) % ci or elements(y) != elements(x) // ci * co:
                _fail(i, code, "input %d / output %d elements do not fit a [%d, %d] filter" % (elements(x), elements(y), co, ci))
            in_off, w_off, out_off, amin, amax = par
            _range(i, code, w_off, -127, 128, "w_off")
            unit = ci
        else:
            stride_h, stride_w, dil_h, dil_w, pad_t, pad_l, in_off, out_off, amin, amax = par[:10]
            for v, nm in ((stride_h, "stride_h"), (stride_w, "stride_w"), (dil_h, "dil_h"), (dil_w, "dil_w")):
                _range(i, code, v, 1, 0xFFFF, nm)
            _range(i, code, pad_t, 0, 0xFFFF, "pad_top")
            _range(i, code, pad_l, 0, 0xFFFF, "pad_left")
            if code == O.CONV_2D:
                co = wd[0]
                if wd[3] != xd[3]:
                    _fail(i, code, "filter Ci %d != input C %d" % (wd[3], xd[3]))
                unit = wd[1] * wd[2] * wd[3]
            else:
                co = wd[3]
                dm = par[10]
                if wd[0] != 1 or dm < 1 or co != xd[3] * dm:
                    _fail(i, code, "filter [1,Kh,Kw,%d] does not match C %d x depth_multiplier %d" % (co, xd[3], dm))
                unit = wd[1] * wd[2] * co  # channels interleave: the whole filter is one unit
            if yd[0] != xd[0] or yd[3] != co:
                _fail(i, code, "output shape %r does not match batch %d and %d channels" % (yd, xd[0], co))
        if elements(b) != co:
            _fail(i, code, "bias has %d values for %d output channels" % (elements(b), co))
        _check_requant(src, i, code, T[ins[3]], T[ins[4]], co)
        _range(i, code, in_off, -127, 128, "in_off")
        _range(i, code, out_off, -128, 127, "out_off")
        _range(i, code, amin, -128, 127, "act_min")
        _range(i, code, amax, amin, 127, "act_max")
        if unit > p.max_unit:
            p.max_unit = unit

    elif code in (O.AVERAGE_POOL_2D, O.MAX_POOL_2D):
        sh, sw, fh, fw, pt, pl, amin, amax = par
        for v, nm in ((sh, "stride_h"), (sw, "stride_w"), (fh, "filter_h"), (fw, "filter_w")):
            _range(i, code, v, 1, 0xFFFF, nm)
        _range(i, code, pt, 0, 0xFFFF, "pad_top")
        _range(i, code, pl, 0, 0xFFFF, "pad_left")
        if yd[0] != xd[0] or yd[3] != xd[3]:
            _fail(i, code, "input %r and output %r differ in batch or channels" % (xd, yd))
        if not (_window_ok(yd[1], xd[1], sh, fh, pt) and _window_ok(yd[2], xd[2], sw, fw, pl)):
            _fail(i, code, "some output position's window lies entirely in the padding")
        _range(i, code, amin, -128, 127, "act_min")
        _range(i, code, amax, amin, 127, "act_max")

    elif code in (O.ADD, O.MUL):
        b = T[ins[1]]
        for k in range(4):
            for d in (xd[k], b[T_DIMS][k]):
                if d != 1 and d != yd[k]:
                    _fail(i, code, "operand shapes %r, %r do not broadcast to %r" % (xd, b[T_DIMS], yd))
        if code == O.ADD:
            a_off, a_m, a_s, b_off, b_m, b_s, ls, o_m, o_s, o_off, amin, amax = par
            for m in (a_m, b_m, o_m):
                if m != 0 and not 0x40000000 <= m <= 0x7FFFFFFF:
                    _fail(i, code, "multiplier %d outside [2^30, 2^31)" % m)
            for s in (a_s, b_s, o_s):
                _range(i, code, s, -31, 0, "shift")
            _range(i, code, ls, 0, 22, "left_shift")  # (a + off) x 2^22 still fits int32
            offs = (a_off, b_off)
        else:
            a_off, b_off, o_m, o_s, o_off, amin, amax = par
            if o_m != 0 and not 0x40000000 <= o_m <= 0x7FFFFFFF:
                _fail(i, code, "multiplier %d outside [2^30, 2^31)" % o_m)
            _range(i, code, o_s, -31, 30, "shift")
            offs = (a_off, b_off)
        for v in offs:
            _range(i, code, v, -127, 128, "input offset")
        _range(i, code, o_off, -128, 127, "out_off")
        _range(i, code, amin, -128, 127, "act_min")
        _range(i, code, amax, amin, 127, "act_max")

    elif code in (O.SOFTMAX, O.LUT):
        tab = T[ins[1]]
        want = (INT32, 1024) if code == O.SOFTMAX else (INT8, 256)
        if tab[T_STORAGE] != CONST or tab[T_DTYPE] != want[0] or tab[T_BYTES] != want[1]:
            _fail(i, code, "table must be a const %s tensor of 256 values" % DTYPE_NAME[want[0]])
        if y[T_DIMS] != xd if code == O.SOFTMAX else elements(y) != elements(x):
            _fail(i, code, "output shape %r does not match input %r" % (yd, xd))
        if code == O.SOFTMAX:
            for v in _int32s(src, tab):
                if v < 0:
                    _fail(i, code, "exp_table holds a negative value")
        if tab[T_BYTES] > p.max_unit:
            p.max_unit = tab[T_BYTES]  # a streaming runtime reads the whole table into its weight buffer

    elif code == O.PAD:
        for k in range(4):
            bf, af = par[2 * k], par[2 * k + 1]
            if bf < 0 or af < 0 or xd[k] + bf + af != yd[k]:
                _fail(i, code, "axis %d: %d + %d + %d != output dim %d" % (k, bf, xd[k], af, yd[k]))
        _range(i, code, par[8], -128, 127, "pad_value")

    elif code == O.MEAN:
        mask, in_zp, out_zp, m, s = par
        _range(i, code, mask, 0, 15, "axis_mask")
        n = 1
        for k in range(4):
            if not mask & (1 << k):
                n *= xd[k]
        if elements(y) != n:
            _fail(i, code, "output has %d elements, reducing %r over mask %d leaves %d" % (elements(y), xd, mask, n))
        _range(i, code, in_zp, -128, 127, "in_zp")
        _range(i, code, out_zp, -128, 127, "out_zp")
        # MEAN's multiplier is not normalized (§5 MEAN): TFLite Micro folds 1/count into it, which can leave it
        # anywhere below 2^30. requant.mbqm_vec is exact for every m in [0, 2^31) on both word sizes.
        _range(i, code, m, 0, 0x7FFFFFFF, "multiplier")
        _range(i, code, s, -31, 30, "shift")

    elif code == O.CONCATENATION:
        axis = par[0]
        _range(i, code, axis, 0, 3, "axis")
        total = 0
        for k in ins:
            d = T[k][T_DIMS]
            for a in range(4):
                if a != axis and d[a] != yd[a]:
                    _fail(i, code, "input %d shape %r does not match output %r off axis %d" % (k, d, yd, axis))
            total += d[axis]
        if total != yd[axis]:
            _fail(i, code, "inputs sum to %d along axis %d, output has %d" % (total, axis, yd[axis]))

    elif code in (O.QUANTIZE, O.DEQUANTIZE):
        if elements(x) != elements(y):
            _fail(i, code, "input and output element counts differ")
        q = y if code == O.QUANTIZE else x
        sc = q[T_SCALE]
        if code == O.QUANTIZE and (not sc > 0 or sc == sc * 2):  # QUANTIZE divides: no 0, negative, NaN, inf
            _fail(i, code, "output scale %r" % sc)
        if code == O.DEQUANTIZE and (sc != sc or (sc != 0 and sc == sc * 2)):  # finite
            _fail(i, code, "input scale %r" % sc)
        _range(i, code, q[T_ZP], -128, 127, "zero point")

    elif code == O.COPY:
        if x[T_BYTES] != y[T_BYTES]:
            _fail(i, code, "input %d bytes, output %d bytes" % (x[T_BYTES], y[T_BYTES]))
