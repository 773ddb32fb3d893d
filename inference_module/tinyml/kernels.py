"""Viper kernels (the fast path) and, below them, the op runners model.invoke() calls (RUN, PLANS). Each kernel
mirrors a plain-Python kernel in kernels_ref.py.

Conventions: tensors are int8 bytes read through ptr8 (unsigned), so a value v is sign-extended as
(v ^ 128) - 128. Scalar arguments travel in an int32 config array `c` (a viper function takes few arguments, and
creating memoryview slices per call would allocate); arena/weight positions are byte offsets into the buffers
passed. CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED are in conv.py (one fused kernel and its runner). Config values that may
be negative are sign-extended after loading (ptr32 loads are unsigned on 64-bit ports):
    v = ((((v >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16 | (v & 0xFFFF)
"""

import struct

import micropython

from . import ops as O
from . import requant as RQ
from . import conv as C
from .conv import ACC_N, setc
from .blob import elements, T_DIMS, T_OFF, T_BYTES, T_STORAGE, T_SCALE, T_ZP, CONST
from .fixedpoint import softmax_row
from .tensor_io import quantize


@micropython.viper
def pool(x: ptr8, y: ptr8, c: ptr32):
    # c: x_off y_off N H W C OH OW sh sw fh fw pt pl lo hi is_avg
    xo = int(c[0]); yo = int(c[1]); N = int(c[2]); H = int(c[3]); W = int(c[4]); C = int(c[5])
    OH = int(c[6]); OW = int(c[7]); sh = int(c[8]); sw = int(c[9]); fh = int(c[10]); fw = int(c[11])
    pt = int(c[12]); pl = int(c[13]); lo = int(c[14]); hi = int(c[15]); avg = int(c[16])
    lo = (((((lo >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (lo & 0xFFFF)
    hi = (((((hi >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (hi & 0xFFFF)
    o = yo
    for n in range(N):
        for oy in range(OH):
            y0 = oy * sh - pt
            y1 = y0 + fh
            if y0 < 0:
                y0 = 0
            if y1 > H:
                y1 = H
            for ox in range(OW):
                x0 = ox * sw - pl
                x1 = x0 + fw
                if x0 < 0:
                    x0 = 0
                if x1 > W:
                    x1 = W
                cnt = (y1 - y0) * (x1 - x0)
                for ch in range(C):
                    s = -128
                    if avg:
                        s = 0
                    for iy in range(y0, y1):
                        xp = xo + ((n * H + iy) * W + x0) * C + ch
                        for ix in range(x0, x1):
                            v = (int(x[xp]) ^ 128) - 128
                            if avg:
                                s += v
                            elif v > s:
                                s = v
                            xp += C
                    if avg:
                        if s > 0:
                            s = (s + cnt // 2) // cnt
                        else:
                            s = 0 - ((cnt // 2 - s) // cnt)
                    if s < lo:
                        s = lo
                    if s > hi:
                        s = hi
                    y[o] = s
                    o += 1


@micropython.viper
def lut(x: ptr8, y: ptr8, tab: ptr8, c: ptr32):
    # c: x_off y_off n tab_off
    xo = int(c[0]); yo = int(c[1]); n = int(c[2]); to = int(c[3])
    for i in range(n):
        y[yo + i] = tab[to + (int(x[xo + i]) ^ 128)]


@micropython.viper
def gather(x: ptr8, dst: ptr32, c: ptr32):
    """dst[i] = (x[idx(e0 + i)] + off) << ls for output elements e0.., idx via broadcast strides."""
    # c: x_off n e0 Y1 Y2 Y3 s0 s1 s2 s3 off ls
    xo = int(c[0]); n = int(c[1]); e = int(c[2]); Y1 = int(c[3]); Y2 = int(c[4]); Y3 = int(c[5])
    s0 = int(c[6]); s1 = int(c[7]); s2 = int(c[8]); s3 = int(c[9]); off = int(c[10]); ls = int(c[11])
    off = (((((off >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (off & 0xFFFF)
    i3 = e % Y3
    t = e // Y3
    i2 = t % Y2
    t = t // Y2
    i1 = t % Y1
    i0 = t // Y1
    for i in range(n):
        v = (int(x[xo + i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3]) ^ 128) - 128
        dst[i] = (v + off) << ls
        i3 += 1
        if i3 == Y3:
            i3 = 0
            i2 += 1
            if i2 == Y2:
                i2 = 0
                i1 += 1
                if i1 == Y1:
                    i1 = 0
                    i0 += 1


@micropython.viper
def add_vec(a: ptr32, b: ptr32, n: int):
    for i in range(n):
        a[i] = int(a[i]) + int(b[i])


@micropython.viper
def mul_vec(a: ptr32, b: ptr32, n: int):
    for i in range(n):
        u = int(a[i])
        v = int(b[i])
        u = (((((u >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (u & 0xFFFF)
        v = (((((v >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (v & 0xFFFF)
        a[i] = u * v


@micropython.viper
def store_vec(a: ptr32, y: ptr8, c: ptr32):
    """y[y_off + i] = clamp(a[i] + zp, lo, hi)."""
    # c: n y_off zp lo hi
    n = int(c[0]); yo = int(c[1]); zp = int(c[2]); lo = int(c[3]); hi = int(c[4])
    zp = (((((zp >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (zp & 0xFFFF)
    lo = (((((lo >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (lo & 0xFFFF)
    hi = (((((hi >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (hi & 0xFFFF)
    for i in range(n):
        v = int(a[i])
        v = (((((v >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (v & 0xFFFF)
        v += zp
        if v < lo:
            v = lo
        if v > hi:
            v = hi
        y[yo + i] = v


@micropython.viper
def mean_acc(x: ptr8, acc: ptr32, c: ptr32):
    """acc[i] = sum of (x - in_zp) over the reduced axes, for output elements o0 .. o0+n."""
    # c: x_off o0 n D0 D1 D2 D3 mask in_zp
    xo = int(c[0]); o = int(c[1]); n = int(c[2])
    D0 = int(c[3]); D1 = int(c[4]); D2 = int(c[5]); D3 = int(c[6]); mask = int(c[7]); zp = int(c[8])
    zp = (((((zp >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (zp & 0xFFFF)
    # Output extents E*: reduced axes have extent 1; R* are the extents summed over.
    E1 = D1; E2 = D2; E3 = D3
    R0 = 1; R1 = 1; R2 = 1; R3 = 1
    if mask & 1:
        R0 = D0
    if mask & 2:
        E1 = 1; R1 = D1
    if mask & 4:
        E2 = 1; R2 = D2
    if mask & 8:
        E3 = 1; R3 = D3
    for i in range(n):
        t = o + i
        j3 = t % E3
        t = t // E3
        j2 = t % E2
        t = t // E2
        j1 = t % E1
        j0 = t // E1
        s = 0
        for a in range(R0):
            for b in range(R1):
                for d in range(R2):
                    base = (((j0 + a) * D1 + (j1 + b)) * D2 + (j2 + d)) * D3 + j3
                    for e in range(R3):
                        s += ((int(x[xo + base + e]) ^ 128) - 128) - zp
        acc[i] = s


@micropython.viper
def fill(y: ptr8, yo: int, n: int, v: int):
    for i in range(n):
        y[yo + i] = v


# ----- op runners (viper path): RUN[code](model, op, plan) -----
# PLANS[code](model, op, pool) -> plan, built at load (conv configs taken from conv.configs' pool)

def _pool(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    xd, yd = x[T_DIMS], y[T_DIMS]
    setc(m._c, x[T_OFF], y[T_OFF], xd[0], xd[1], xd[2], xd[3], yd[1], yd[2], par[0], par[1], par[2], par[3],
         par[4], par[5], par[6], par[7], 1 if code == O.AVERAGE_POOL_2D else 0)
    pool(m.arena, m.arena, m._c)


def _strides(d):
    """Element strides of a 4-D shape, 0 along axes of extent 1 (numpy broadcasting)."""
    s2 = d[3]
    s1 = d[2] * s2
    s0 = d[1] * s1
    return (s0 if d[0] > 1 else 0, s1 if d[1] > 1 else 0, s2 if d[2] > 1 else 0, 1 if d[3] > 1 else 0)


def _operand(m, t):
    """(buffer, offset) of an ADD/MUL operand's bytes: in the arena, or a const tensor read whole (§5 allows
    const operands; the loader sized the weight buffer for the largest)."""
    if t[T_STORAGE] == CONST:
        return m._wview(t[T_OFF], t[T_BYTES])
    return m.arena, t[T_OFF]


def _add_mul(m, op, plan=None):
    code, ins, out, par = op
    T = m.tensors
    a, b, y = T[ins[0]], T[ins[1]], T[out]
    yd = y[T_DIMS]
    sa, sb = _strides(a[T_DIMS]), _strides(b[T_DIMS])
    if code == O.ADD:
        a_off, a_m, a_s, b_off, b_m, b_s, ls, o_m, o_s, o_off, lo, hi = par
    else:
        a_off, b_off, o_m, o_s, o_off, lo, hi = par
        ls = 0
    c, acc, acc2, arena = m._c, m._acc, m._acc2, m.arena
    # Each operand is read from (buffer, offset): the arena, or for a const operand the blob in RAM or the
    # streamed weight buffer. Two streamed const operands share that buffer, so they are re-read per chunk.
    both = m._wbuf is not None and a[T_STORAGE] == CONST and b[T_STORAGE] == CONST
    abuf, ao = _operand(m, a)
    bbuf, bo = (None, 0) if both else _operand(m, b)
    total = elements(y)
    for e0 in range(0, total, ACC_N):
        n = min(ACC_N, total - e0)
        if both and e0:
            abuf, ao = _operand(m, a)
        setc(c, ao, n, e0, yd[1], yd[2], yd[3], sa[0], sa[1], sa[2], sa[3], a_off, ls)
        gather(abuf, acc, c)
        if both:
            bbuf, bo = _operand(m, b)
        setc(c, bo, n, e0, yd[1], yd[2], yd[3], sb[0], sb[1], sb[2], sb[3], b_off, ls)
        gather(bbuf, acc2, c)
        if code == O.ADD:
            RQ.mbqm_vec(acc, n, a_m, a_s)
            RQ.mbqm_vec(acc2, n, b_m, b_s)
            add_vec(acc, acc2, n)
        else:
            mul_vec(acc, acc2, n)
        RQ.mbqm_vec(acc, n, o_m, o_s)
        setc(c, n, y[T_OFF] + e0, o_off, lo, hi)
        store_vec(acc, arena, c)


class _Table:
    """Indexable view of SOFTMAX's 256 int32 exp values (no copy)."""

    def __init__(self, buf, off):
        self.buf, self.off = buf, off

    def __getitem__(self, d):
        return struct.unpack_from("<i", self.buf, self.off + 4 * d)[0]


def _softmax(m, op, plan=None):
    code, ins, out, par = op
    x, tab, y = m.tensors[ins[0]], m.tensors[ins[1]], m.tensors[out]
    depth = x[T_DIMS][3]
    tb, to = m._wview(tab[T_OFF], 1024)
    table = _Table(tb, to)
    arena = m.arena
    for r in range(0, elements(x), depth):
        xs = struct.unpack_from("<%db" % depth, arena, x[T_OFF] + r)
        struct.pack_into("<%db" % depth, arena, y[T_OFF] + r, *softmax_row(xs, table))


def _lut(m, op, plan=None):
    code, ins, out, par = op
    x, tab, y = m.tensors[ins[0]], m.tensors[ins[1]], m.tensors[out]
    tb, to = m._wview(tab[T_OFF], 256)
    setc(m._c, x[T_OFF], y[T_OFF], elements(x), to)
    lut(m.arena, m.arena, tb, m._c)


def _pad(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    xd, yd = x[T_DIMS], y[T_DIMS]
    a = m._amv
    fill(m.arena, y[T_OFF], y[T_BYTES], par[8])
    if par[4] == par[5] == par[6] == par[7] == 0:
        run = xd[2] * xd[3]  # whole rows are contiguous in both
        ws = (0,)
    else:
        run = xd[3]
        ws = range(xd[2])
    for n in range(xd[0]):
        for h in range(xd[1]):
            for w in ws:
                xo = x[T_OFF] + ((n * xd[1] + h) * xd[2] + w) * xd[3]
                yo = y[T_OFF] + (((n + par[0]) * yd[1] + h + par[2]) * yd[2] + w + par[4]) * yd[3] + par[6]
                a[yo:yo + run] = a[xo:xo + run]


def _mean(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    xd = x[T_DIMS]
    mask, in_zp, out_zp, mu, sh = par
    total = elements(y)
    c, acc = m._c, m._acc
    for o0 in range(0, total, ACC_N):
        n = min(ACC_N, total - o0)
        setc(c, x[T_OFF], o0, n, xd[0], xd[1], xd[2], xd[3], mask, in_zp)
        mean_acc(m.arena, acc, c)
        RQ.mbqm_vec(acc, n, mu, sh)
        setc(c, n, y[T_OFF] + o0, out_zp, -128, 127)
        store_vec(acc, m.arena, c)


def _concat(m, op, plan=None):
    code, ins, out, par = op
    T = m.tensors
    y = T[out]
    yd = y[T_DIMS]
    outer = 1
    for k in range(par[0]):
        outer *= yd[k]
    row = y[T_BYTES] // outer
    a = m._amv
    src = m._src
    pos = 0
    for k in ins:
        x = T[k]
        inner = x[T_BYTES] // outer
        from_blob = x[T_STORAGE] == CONST
        for o in range(outer):
            xo, yo = x[T_OFF] + o * inner, y[T_OFF] + o * row + pos
            if not from_blob:
                a[yo:yo + inner] = a[xo:xo + inner]
            elif src.streaming:
                src.view(xo, inner, a[yo:yo + inner])  # read from the file straight into the output, no buffer
            else:
                a[yo:yo + inner] = src.mv[xo:xo + inner]
        pos += inner


def _quantize(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    scale, zp = y[T_SCALE], y[T_ZP]
    a = m.arena
    for i in range(elements(x)):
        a[y[T_OFF] + i] = quantize(struct.unpack_from("<f", a, x[T_OFF] + 4 * i)[0], scale, zp) & 0xFF


def _dequantize(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    scale, zp = x[T_SCALE], x[T_ZP]
    a = m.arena
    for i in range(elements(x)):
        v = a[x[T_OFF] + i]
        struct.pack_into("<f", a, y[T_OFF] + 4 * i, scale * ((v - 256 if v > 127 else v) - zp))


def _copy(m, op, plan=None):
    x, y = m.tensors[op[1][0]], m.tensors[op[2]]
    m._amv[y[T_OFF]:y[T_OFF] + y[T_BYTES]] = m._amv[x[T_OFF]:x[T_OFF] + x[T_BYTES]]


def _trees(m, op, plan=None):
    # Imported on first use: the module (viper code) costs RAM that models without trees should not pay.
    from .trees import run_model_op
    run_model_op(m, op)


def _classic(m, op, plan=None):
    # §11 (SVMs, k-NN, naive Bayes): imported on first use, as _trees.
    from .classic import run_model_op
    run_model_op(m, op)


def _run(m, op, plan):
    RUN[op[0]](m, op, plan)


def _patch(m, op, plan):
    # Imported on first use, like trees: models without a PATCH stage do not pay for the module.
    from .patch import run
    run(m, op, _run, plan)


def _patch_plan(m, op, pool):
    # One conv config per stage op, built once (rebuilding them per tile cost VWW's first stage ~3x its
    # layer-by-layer time); patch.run sets each tile's shapes and padding in them.
    return [C.plan(m, sop, pool) for sop in op[4]]


PLANS = {O.CONV_2D: C.plan, O.DEPTHWISE_CONV_2D: C.plan, O.FULLY_CONNECTED: C.plan,
         O.PATCH: _patch_plan}

RUN = {
    O.CONV_2D: C.run, O.DEPTHWISE_CONV_2D: C.run, O.FULLY_CONNECTED: C.run, O.AVERAGE_POOL_2D: _pool,
    O.MAX_POOL_2D: _pool, O.ADD: _add_mul, O.MUL: _add_mul, O.SOFTMAX: _softmax, O.LUT: _lut, O.PAD: _pad,
    O.MEAN: _mean, O.CONCATENATION: _concat, O.QUANTIZE: _quantize, O.DEQUANTIZE: _dequantize, O.COPY: _copy,
    O.TREE_ENSEMBLE: _trees, O.PATCH: _patch, O.KERNEL: _classic, O.SVM_VOTE: _classic, O.KNN_VOTE: _classic,
    O.GAUSSIAN_NB: _classic, O.AFFINE: _classic,
}
