"""Plain-Python reference kernels: the op semantics of docs/blob-format.md §5 written for reading, not speed.

They run whole tensors as Python lists with exact integers and fixedpoint.py's helpers; tests run models through
both these and the viper kernels (load(..., kernels="reference")) and compare the bytes. They allocate freely, so they
are for checking, not for devices.
"""

import struct

from . import ops as O
from .blob import T_DTYPE, T_STORAGE, T_DIMS, T_OFF, T_BYTES, T_SHAPE, T_ZP, T_SCALE, INT32, FLOAT32, elements
from .fixedpoint import mbqm, softmax_row


def _clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def read(m, t):
    """All values of tensor t as a list of ints (or floats)."""
    n = elements(t)
    if t[T_STORAGE]:
        raw = m._src.read(t[T_OFF], t[T_BYTES])
    else:
        raw = m.arena[t[T_OFF]:t[T_OFF] + t[T_BYTES]]
    fmt = "<%d%s" % (n, "f" if t[T_DTYPE] == FLOAT32 else "i" if t[T_DTYPE] == INT32 else "b")
    return list(struct.unpack(fmt, raw))


def write(m, t, vals):
    fmt = "<%d%s" % (len(vals), "f" if t[T_DTYPE] == FLOAT32 else "b")
    struct.pack_into(fmt, m.arena, t[T_OFF], *vals)


def _idx(d, n, h, w, c):
    return ((n * d[1] + h) * d[2] + w) * d[3] + c


def conv(m, code, ins, out, par):
    T = m.tensors
    x, w, b, mu, sh = [read(m, T[k]) for k in ins]
    xd, wd, yd = T[ins[0]][T_DIMS], T[ins[1]][T_DIMS], T[out][T_DIMS]
    s_h, s_w, d_h, d_w, p_t, p_l, in_off, out_off, lo, hi = par[:10]
    dw = code == O.DEPTHWISE_CONV_2D
    dm = par[10] if dw else 1
    kh, kw = wd[1], wd[2]
    y = []
    for n in range(yd[0]):
        for oy in range(yd[1]):
            for ox in range(yd[2]):
                for oc in range(yd[3]):
                    acc = b[oc]
                    for ky in range(kh):
                        for kx in range(kw):
                            iy = oy * s_h - p_t + ky * d_h
                            ix = ox * s_w - p_l + kx * d_w
                            if not (0 <= iy < xd[1] and 0 <= ix < xd[2]):
                                continue
                            if dw:
                                acc += (x[_idx(xd, n, iy, ix, oc // dm)] + in_off) * w[_idx(wd, 0, ky, kx, oc)]
                            else:
                                for ic in range(xd[3]):
                                    acc += (x[_idx(xd, n, iy, ix, ic)] + in_off) * w[_idx(wd, oc, ky, kx, ic)]
                    k = oc if len(mu) > 1 else 0
                    y.append(_clamp(mbqm(acc, mu[k], sh[k]) + out_off, lo, hi))
    write(m, T[out], y)


def fully_connected(m, code, ins, out, par):
    T = m.tensors
    x, w, b, mu, sh = [read(m, T[k]) for k in ins]
    co, ci = T[ins[1]][T_DIMS][2], T[ins[1]][T_DIMS][3]
    in_off, w_off, out_off, lo, hi = par
    y = []
    for r in range(len(x) // ci):
        for o in range(co):
            acc = b[o]
            for i in range(ci):
                acc += (x[r * ci + i] + in_off) * (w[o * ci + i] + w_off)
            k = o if len(mu) > 1 else 0
            y.append(_clamp(mbqm(acc, mu[k], sh[k]) + out_off, lo, hi))
    write(m, T[out], y)


def pool(m, code, ins, out, par):
    T = m.tensors
    x = read(m, T[ins[0]])
    xd, yd = T[ins[0]][T_DIMS], T[out][T_DIMS]
    s_h, s_w, f_h, f_w, p_t, p_l, lo, hi = par
    y = []
    for n in range(yd[0]):
        for oy in range(yd[1]):
            for ox in range(yd[2]):
                for c in range(yd[3]):
                    win = []
                    for iy in range(oy * s_h - p_t, oy * s_h - p_t + f_h):
                        for ix in range(ox * s_w - p_l, ox * s_w - p_l + f_w):
                            if 0 <= iy < xd[1] and 0 <= ix < xd[2]:
                                win.append(x[_idx(xd, n, iy, ix, c)])
                    if code == O.MAX_POOL_2D:
                        v = max(win)
                    else:
                        acc, cnt = sum(win), len(win)
                        v = (acc + cnt // 2) // cnt if acc > 0 else -((cnt // 2 - acc) // cnt)
                    y.append(_clamp(v, lo, hi))
    write(m, T[out], y)


def _broadcast_index(d, n, h, w, c):
    return _idx(d, n if d[0] > 1 else 0, h if d[1] > 1 else 0, w if d[2] > 1 else 0, c if d[3] > 1 else 0)


def add_mul(m, code, ins, out, par):
    T = m.tensors
    a, b = read(m, T[ins[0]]), read(m, T[ins[1]])
    ad, bd, yd = T[ins[0]][T_DIMS], T[ins[1]][T_DIMS], T[out][T_DIMS]
    y = []
    for n in range(yd[0]):
        for h in range(yd[1]):
            for w in range(yd[2]):
                for c in range(yd[3]):
                    va = a[_broadcast_index(ad, n, h, w, c)]
                    vb = b[_broadcast_index(bd, n, h, w, c)]
                    if code == O.ADD:
                        a_off, a_m, a_s, b_off, b_m, b_s, ls, o_m, o_s, o_off, lo, hi = par
                        sa = mbqm((va + a_off) << ls, a_m, a_s)
                        sb = mbqm((vb + b_off) << ls, b_m, b_s)
                        v = mbqm(sa + sb, o_m, o_s) + o_off
                    else:
                        a_off, b_off, o_m, o_s, o_off, lo, hi = par
                        v = mbqm((va + a_off) * (vb + b_off), o_m, o_s) + o_off
                    y.append(_clamp(v, lo, hi))
    write(m, T[out], y)


def softmax(m, code, ins, out, par):
    T = m.tensors
    x, table = read(m, T[ins[0]]), read(m, T[ins[1]])
    depth = T[ins[0]][T_DIMS][3]
    y = []
    for r in range(0, len(x), depth):
        y.extend(softmax_row(x[r:r + depth], table))
    write(m, T[out], y)


def lut(m, code, ins, out, par):
    table = read(m, m.tensors[ins[1]])
    write(m, m.tensors[out], [table[v + 128] for v in read(m, m.tensors[ins[0]])])


def pad(m, code, ins, out, par):
    T = m.tensors
    x, xd, yd = read(m, T[ins[0]]), T[ins[0]][T_DIMS], T[out][T_DIMS]
    y = [par[8]] * elements(T[out])
    for n in range(xd[0]):
        for h in range(xd[1]):
            for w in range(xd[2]):
                for c in range(xd[3]):
                    y[_idx(yd, n + par[0], h + par[2], w + par[4], c + par[6])] = x[_idx(xd, n, h, w, c)]
    write(m, T[out], y)


def mean(m, code, ins, out, par):
    T = m.tensors
    x, xd = read(m, T[ins[0]]), T[ins[0]][T_DIMS]
    mask, in_zp, out_zp, mu, sh = par
    od = [1 if mask & (1 << k) else xd[k] for k in range(4)]
    sums = [0] * (od[0] * od[1] * od[2] * od[3])
    for n in range(xd[0]):
        for h in range(xd[1]):
            for w in range(xd[2]):
                for c in range(xd[3]):
                    o = [n, h, w, c]
                    for k in range(4):
                        if mask & (1 << k):
                            o[k] = 0
                    sums[_idx(od, o[0], o[1], o[2], o[3])] += x[_idx(xd, n, h, w, c)] - in_zp
    write(m, T[out], [_clamp(mbqm(s, mu, sh) + out_zp, -128, 127) for s in sums])


def concatenation(m, code, ins, out, par):
    T = m.tensors
    axis = par[0]
    yd = T[out][T_DIMS]
    outer = 1
    for k in range(axis):
        outer *= yd[k]
    parts = [read(m, T[k]) for k in ins]
    y = []
    for o in range(outer):
        for vals in parts:
            inner = len(vals) // outer
            y.extend(vals[o * inner:(o + 1) * inner])
    write(m, T[out], y)


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def quantize(m, code, ins, out, par):
    t = m.tensors[out]
    y = []
    for v in read(m, m.tensors[ins[0]]):
        q = f32(v / t[T_SCALE])
        if not -1e9 < q < 1e9:  # inf/NaN/huge inputs saturate, as in the viper path
            q = 1e9 if q > 0 else -1e9
        r = int(q + 0.5) if q >= 0 else -int(-q + 0.5)
        y.append(_clamp(r + t[T_ZP], -128, 127))
    write(m, t, y)


def dequantize(m, code, ins, out, par):
    t = m.tensors[ins[0]]
    write(m, m.tensors[out], [t[T_SCALE] * (v - t[T_ZP]) for v in read(m, t)])


def copy(m, code, ins, out, par):
    x, y = m.tensors[ins[0]], m.tensors[out]
    m.arena[y[T_OFF]:y[T_OFF] + y[T_BYTES]] = bytes(m.arena[x[T_OFF]:x[T_OFF] + x[T_BYTES]])


def _key(v):
    """§10's order-preserving int key of a float32 (by its bit pattern); None for NaN."""
    b = struct.unpack("<I", struct.pack("<f", v))[0]
    if (b & 0x7FFFFFFF) > 0x7F800000:
        return None
    return b if b < 0x80000000 else -(b - 0x80000000)


def tree_ensemble(m, code, ins, out, par):
    T = m.tensors
    x, nodes, leaves, trees, y = [read(m, T[k]) for k in ins]
    width = T[ins[2]][T_DIMS][3]  # leaves [L, W]
    for t in range(len(trees) // 2):
        n, first = trees[2 * t], trees[2 * t + 1]
        while n >= 0:
            k = _key(x[nodes[4 * n]])
            if k is None:
                raise ValueError("input feature is NaN")
            n = nodes[4 * n + 2] if k <= nodes[4 * n + 1] else nodes[4 * n + 3]
        for j in range(width):
            y[first + j] += leaves[(-1 - n) * width + j]  # int32 sums: the compiler bounds them (§10)
    struct.pack_into("<%di" % len(y), m.arena, T[out][T_OFF], *y)


KERNELS = {
    O.CONV_2D: conv, O.DEPTHWISE_CONV_2D: conv, O.FULLY_CONNECTED: fully_connected,
    O.AVERAGE_POOL_2D: pool, O.MAX_POOL_2D: pool, O.ADD: add_mul, O.MUL: add_mul, O.SOFTMAX: softmax,
    O.LUT: lut, O.PAD: pad, O.MEAN: mean, O.CONCATENATION: concatenation, O.QUANTIZE: quantize,
    O.DEQUANTIZE: dequantize, O.COPY: copy, O.TREE_ENSEMBLE: tree_ensemble,
}


def run_op(m, op):
    if op[0] == O.PATCH:
        run_patch(m, op)
        return
    code, ins, out, par = op
    KERNELS[code](m, code, ins, out, par)


class _Tiles:
    """The tensor table as a stage op of one tile sees it: tile buffers with the tile's rows and columns."""

    def __init__(self, table):
        self.table = table
        self.size = {}  # tensor index -> (rows, cols)

    def __len__(self):
        return len(self.table)

    def __getitem__(self, i):
        t = self.table[i]
        rc = self.size.get(i)
        if rc is None:
            return t
        d = t[T_DIMS]
        dims = (1, rc[0], rc[1], d[3])
        return (t[0], t[1], dims, t[3], rc[0] * rc[1] * d[3], t[5], t[6], dims)


def run_patch(m, op):
    """PATCH op `op` tile by tile (blob-format §12): each stage op runs on a view of the tensor table that shows
    the tile buffers with the tile's rows and columns, and the tile's padding; then the tile is copied into y."""
    code, ins, out, par, stage = op
    T = m.tensors
    tt, y = T[ins[1]], T[out]
    tile_off = T[ins[2]][T_OFF]
    width = 2 + 4 * len(stage)
    yd, row_bytes, n, a = y[T_DIMS], y[T_DIMS][3], len(stage), m._amv
    fmt = "<%di" % width
    view = _Tiles(T)
    m.tensors = view
    try:
        for r in range(tt[T_SHAPE][0]):
            row = struct.unpack_from(fmt, *m._wview(tt[T_OFF] + 4 * width * r, 4 * width))
            view.size.clear()
            for k in range(n):
                sop = stage[k]
                oh, ow = row[2 + 4 * k], row[3 + 4 * k]
                view.size[sop[2]] = (oh, ow)  # its input's entry stays from the op before
                q = list(sop[3])
                q[4], q[5] = row[4 + 4 * k], row[5 + 4 * k]
                run_op(m, (sop[0], sop[1], sop[2], q))
            run_len = ow * row_bytes
            for q in range(oh):  # the tile into y at (oy0, ox0)
                at = y[T_OFF] + ((row[0] + q) * yd[2] + row[1]) * row_bytes
                a[at:at + run_len] = a[tile_off + q * run_len:tile_off + (q + 1) * run_len]
    finally:
        m.tensors = T
