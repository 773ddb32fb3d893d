# CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: the fused viper kernel's config and runners. The kernel, conv, is
# in kern.py (how it works is described there); it is imported here so that conv.conv stays its name.


import array

import micropython
from micropython import const

from . import ops as O
from . import requant as RQ
from .blob import elements, T_DIMS, T_OFF, T_BYTES
from .kern import conv

ACC_N = const(1024)  # int32 accumulators per chunk (4 KB each)
VB = const(256)  # per-channel values (bias, mult, shift) streamed per block

# Config layout (int32 array c; plan() below fills it):
# 0 depthwise, not 3x3: the filter's taps fit the row buffer
MODE = 1  # 0 GEMM, 1 depthwise
# 2 K  3 nb (channels of this block)  4 oc0 (its first channel)  5 p0  6 np (output pixels of this call)
# 7 keep (GEMM rows: 0 one at a time, 1 keep all K + 1 words apart (the last their sum), 2 they are kept)
# 8 k0  9 kl (segment of K)  10 segment flags (1 first, 2 last)  11 x_off  12 in_off  13 w_off - 128
# 14 w_pos (filter of channel oc0 in w's buffer)  15 y_off  16 Co  17 bias_i  18 mult_i  19 shift_i
# 20 mult_step  21 zp  22 lo  23 hi  24 wide  25 H  26 W  27 C  28 OW  29 OH  30 Kh  31 Kw  32 sh  33 sw
# 34 dh  35 dw  36 pt  37 pl  38 depth_multiplier  39,40 the address of the int32 buffer *_i index
# 41,42 the address of the segment accumulators (put_address)
N_CFG = 43


@micropython.viper
def put_address(c: ptr32, i: int, buf: ptr8):
    # c[i], c[i + 1] = the address of buf's bytes as two 32-bit halves: a viper function takes at most four
    # arguments, so conv reaches its other buffers (per-channel vectors, segment accumulators) through its config.
    # buf must live as long as the config is used (MicroPython's heap does not move objects).
    p = int(buf)
    c[i] = p
    c[i + 1] = (p >> 16) >> 16  # 0 on 32-bit ports (a shift by the word size is not portable)


# ----- the ops' runners: configs decoded once at load, the kernel called per output-channel block -----

GEMM_K = const(1024)  # receptive field the fused kernel takes at once (its int32 row is _acc2); longer: segments
P_W = const(43)  # conv.conv's config, then (from P_W on) what run needs: weight, bias, multiplier, shift
P_B = const(44)  # offsets, output pixels, depthwise filter bytes
P_MU = const(45)
P_SH = const(46)
P_NPIX = const(47)
P_WBYTES = const(48)



def setc(c, *vals):
    i = 0
    for v in vals:
        c[i] = v
        i += 1


def configs(ops):
    # Empty configs for every conv op (PATCH stage ops included), allocated side by side before plan() fills
    # them: the temporaries of filling each would otherwise lie between them and, once collected, leave holes
    # too small for anything large allocated later (the 27 KB input copy of a VWW run needed a 44 KB larger heap).
    n = 0
    for op in ops:
        if op[0] == O.PATCH:
            n += len(op[4])
        elif op[0] == O.CONV_2D or op[0] == O.DEPTHWISE_CONV_2D or op[0] == O.FULLY_CONNECTED:
            n += 1
    pool = [None] * n
    z = bytes(4 * (P_WBYTES + 1))
    for i in range(n):
        pool[i] = array.array("i", z)
    return pool


def plan(m, op, pool):
    # conv.conv's config for a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED, decoded once at load (decoding five
    # tensor records per inference dominated small layers): an int32 array (~200 B per op) run fills in per call.
    code, ins, out, par = op
    T = m.tensors
    x, w, b, mu, sh = [T[k] for k in ins]
    y = T[out]
    yd = y[T_DIMS]
    if code == O.FULLY_CONNECTED:
        # rows x filters: a 1 x rows "image" of Ci channels, 1x1 filters
        ci = w[T_DIMS][3]
        rows = elements(x) // ci
        geo, in_off, w_off, act, dm = (1, rows, ci, rows, 1, 1, 1, 1, 1, 1, 1, 0, 0), par[0], par[1], par[2:5], 1
    else:
        xd, wd = x[T_DIMS], w[T_DIMS]
        dm = par[10] if code == O.DEPTHWISE_CONV_2D else 1
        geo = (xd[1], xd[2], xd[3], yd[2], yd[1], wd[1], wd[2]) + tuple(par[0:6])
        in_off, w_off, act = par[6], 0, par[7:10]
    dwm = 1 if code == O.DEPTHWISE_CONV_2D else 0
    co = yd[3]
    c = pool.pop()
    setc(c, 0, dwm, geo[2] * geo[5] * geo[6], 0, 0, 0, 0, 0, 0, 0, 0, x[T_OFF], in_off, w_off - 128, 0, y[T_OFF], co,
         0, 0, 0, 1 if elements(mu) > 1 else 0, act[0], act[1], act[2], 0, *geo, dm)
    if dwm and (geo[5] != 3 or geo[6] != 3) and 4 * geo[5] * geo[6] <= len(m._acc2):
        c[0] = 1  # the kernel's row buffer holds the filter's taps
    put_address(c, 39, m._src.mv if m._vbuf is None else m._vbuf)  # where conv finds the per-channel vectors
    put_address(c, 41, m._acc)  # and the partial sums of a segmented receptive field
    c[P_W], c[P_B], c[P_MU], c[P_SH] = w[T_OFF], b[T_OFF], mu[T_OFF], sh[T_OFF]
    c[P_NPIX], c[P_WBYTES] = elements(y) // co, w[T_BYTES]
    return c


def run(m, op, c):
    # conv.conv over the op's output-channel blocks: all channels at once for a blob in RAM; streamed, as many
    # filters as the weight buffer holds (depthwise: the whole filter, its channels interleave).
    src, buf = m._src, m._wbuf
    K, co, step, npix, w_off = c[2], c[16], c[20], c[P_NPIX], c[P_W]
    c[24] = RQ.wide
    kseg, pb, keep = K, npix, 0
    if c[1]:
        ocb = co if buf is None else min(co, VB)
        if buf is not None:
            src.fill(w_off, c[P_WBYTES], buf)
            w_off = 0
    else:
        ocb = co if buf is None else min(co, VB, m._wlen // K)
        if K > GEMM_K:  # segments of the receptive field, the partial sums of pb pixels x ocb channels in _acc
            kseg, ocb = GEMM_K, min(ocb, ACC_N)
            pb = ACC_N // ocb
        elif ocb < co and npix * (K + 1) <= len(m._acc2) // 4:
            keep = 1  # several blocks: prepare the rows once, keep them for the next blocks
    wbuf, rows, arena, kern, vectors = src.mv if buf is None else buf, m._acc2, m.arena, conv, m._vectors
    whole = pb >= npix and kseg >= K  # one call per block (the rest of this loop is per-block overhead, which
    if whole:                         # streaming pays once per weight buffer)
        c[5], c[6], c[8], c[9], c[10] = 0, npix, 0, K, 3
        if buf is not None and not c[1]:
            _gemm_streamed(m, c, co, ocb, K, keep)
            return
    b_off, mu_off, sh_off = c[P_B], c[P_MU], c[P_SH]
    for oc0 in range(0, co, ocb):
        nb = min(ocb, co - oc0)
        wo = w_off + oc0 if c[1] else w_off + oc0 * K
        if buf is None or m._vkey != b_off or oc0 < m._vwin or oc0 + nb > m._vend:
            v = vectors(b_off, mu_off, sh_off, step, co, oc0, nb)
            c[17], c[18], c[19] = v[1], v[2], v[3]
        else:  # streamed, the vectors already in _vbuf (inline: this runs once per weight block)
            d = oc0 - m._vwin
            v = m._vidx
            c[17], c[18], c[19] = v[0] + d, v[1] + d * step, v[2] + d * step
        if buf is not None and not c[1]:  # after the vectors: the blocks of one op are then read without seeks
            src.fill(wo, nb * K, buf)
            wo = 0
        c[3], c[4], c[7], c[14] = nb, oc0, keep, wo
        if whole:
            kern(wbuf, rows, arena, c)
        else:
            for p0 in range(0, npix, pb):
                c[5], c[6] = p0, min(pb, npix - p0)
                for k0 in range(0, K, kseg):
                    c[8], c[9] = k0, min(kseg, K - k0)
                    c[10] = (1 if k0 == 0 else 0) | (2 if k0 + kseg >= K else 0)
                    kern(wbuf, rows, arena, c)
        if keep:
            keep = 2


def _gemm_streamed(m, c, co, ocb, K, keep):
    # run's loop for a streamed CONV_2D / FULLY_CONNECTED taken whole per block (AD: every op), trimmed to what
    # changes per weight block: its filters read from the file straight into _wbuf (one seek per op: the blocks
    # are consecutive), its channels in c. With the op's vectors whole in _vbuf, a block takes as many filters
    # as fit beside them.
    src, buf, rows, arena, kern = m._src, m._wbuf, m._acc2, m.arena, conv
    b_off, mu_off, sh_off, step, w_off = c[P_B], c[P_MU], c[P_SH], c[20], c[P_W]
    c[7], c[14] = keep, 0
    if m._vkey != b_off:
        m._vectors(b_off, mu_off, sh_off, step, co, 0, ocb)
    vw, ve = m._vwin, m._vend
    bb, mb, sb = m._vidx
    if vw == 0 and ve == co:
        ocb = min(co, m._vfree // K)
    f, at = src.f, src.base + w_off
    src.pos = -1  # the file moves under the source's feet here
    f.seek(at)
    oc0 = 0
    while oc0 < co:
        nb = min(ocb, co - oc0)
        if oc0 < vw or oc0 + nb > ve:  # the next window of vectors (ops of over 256 channels), then back
            m._vectors(b_off, mu_off, sh_off, step, co, oc0, nb)
            vw, ve = m._vwin, m._vend
            bb, mb, sb = m._vidx
            f.seek(at + oc0 * K)
        d = oc0 - vw
        c[17], c[18], c[19] = bb + d, mb + d * step, sb + d * step
        n = nb * K
        if f.readinto(buf, n) != n:
            raise OSError("short read")
        c[3], c[4] = nb, oc0
        kern(buf, rows, arena, c)
        if keep:
            c[7] = 2
        oc0 += nb

