"""Viper kernels (the fast path). Each mirrors a plain-Python kernel in kernels_ref.py.

Conventions: tensors are int8 bytes read through ptr8 (unsigned), so a value v is sign-extended as
(v ^ 128) - 128. Scalar arguments travel in an int32 config array `c` (a viper function takes few arguments, and
creating memoryview slices per call would allocate); arena/weight positions are byte offsets into the buffers
passed. CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED are in conv.py (one fused kernel). Config values that may
be negative are sign-extended after loading (ptr32 loads are unsigned on 64-bit ports):
    v = ((((v >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16 | (v & 0xFFFF)
"""

import micropython


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
