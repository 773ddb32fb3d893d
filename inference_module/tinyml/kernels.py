"""Viper kernels (the fast path). Each mirrors a plain-Python kernel in kernels_ref.py.

Conventions: tensors are int8 bytes read through ptr8 (unsigned), so a value v is sign-extended as
(v ^ 128) - 128. Scalar arguments travel in an int32 config array `c` (a viper function takes few arguments, and
creating memoryview slices per call would allocate); arena/weight positions are byte offsets into the buffers
passed. Accumulating kernels write int32 sums into the scratch `acc` (a chunk of output pixels x a block of output
channels); requant.requant_store then adds the bias and requantizes them. Config values that may be negative are
sign-extended after loading (ptr32 loads are unsigned on 64-bit ports):
    v = ((((v >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16 | (v & 0xFFFF)
"""

import micropython


@micropython.viper
def conv_acc(x: ptr8, w: ptr8, acc: ptr32, c: ptr32):
    # c: x_off H W C OW Kh Kw sh sw dh dw pt pl in_off w_off ocb p0 np OH
    xo = int(c[0]); H = int(c[1]); W = int(c[2]); C = int(c[3]); OW = int(c[4])
    Kh = int(c[5]); Kw = int(c[6]); sh = int(c[7]); sw = int(c[8]); dh = int(c[9]); dw = int(c[10])
    pt = int(c[11]); pl = int(c[12]); off = int(c[13]); wo = int(c[14]); ocb = int(c[15])
    pt = (((((pt >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (pt & 0xFFFF)  # < 0: a PATCH tile's window
    pl = (((((pl >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (pl & 0xFFFF)
    p0 = int(c[16]); npix = int(c[17]); OH = int(c[18])
    off = (((((off >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (off & 0xFFFF)
    off -= 128  # x + in_off == (v ^ 128) + off for the raw byte v
    fs = Kh * Kw * C
    n_acc = npix * ocb
    for i in range(n_acc):
        acc[i] = 0
    for pi in range(npix):
        p = p0 + pi
        ox = p % OW
        t = p // OW
        oy = t % OH
        n = t // OH
        iy0 = oy * sh - pt
        ix0 = ox * sw - pl
        a0 = pi * ocb
        # With dilation 1 and the window inside the row, the Kw x C taps of one filter row are contiguous in
        # both x and w: one run of Kw*C MACs instead of Kw runs of C (matters when C is 1 or 3).
        whole = 0
        if dw == 1 and ix0 >= 0 and ix0 + Kw <= W:
            whole = 1
        for ky in range(Kh):
            iy = iy0 + ky * dh
            if iy < 0 or iy >= H:
                continue
            for kx in range(Kw):
                ix = ix0 + kx * dw
                if ix < 0 or ix >= W:
                    continue
                run = C
                if whole:
                    if kx > 0:
                        break
                    run = Kw * C
                xb = xo + ((n * H + iy) * W + ix) * C
                wb = wo + (ky * Kw + kx) * C
                xe = xb + run
                xe8 = xb + (run & ~7)
                for j in range(ocb):
                    wp = wb + j * fs
                    xp = xb
                    s = 0
                    while xp < xe8:  # 8 MACs per iteration: loop overhead dominates viper's inner loops
                        s += (((int(x[xp]) ^ 128) + off) * ((int(w[wp]) ^ 128) - 128)
                              + ((int(x[xp + 1]) ^ 128) + off) * ((int(w[wp + 1]) ^ 128) - 128)
                              + ((int(x[xp + 2]) ^ 128) + off) * ((int(w[wp + 2]) ^ 128) - 128)
                              + ((int(x[xp + 3]) ^ 128) + off) * ((int(w[wp + 3]) ^ 128) - 128)
                              + ((int(x[xp + 4]) ^ 128) + off) * ((int(w[wp + 4]) ^ 128) - 128)
                              + ((int(x[xp + 5]) ^ 128) + off) * ((int(w[wp + 5]) ^ 128) - 128)
                              + ((int(x[xp + 6]) ^ 128) + off) * ((int(w[wp + 6]) ^ 128) - 128)
                              + ((int(x[xp + 7]) ^ 128) + off) * ((int(w[wp + 7]) ^ 128) - 128))
                        xp += 8
                        wp += 8
                    while xp < xe:
                        s += ((int(x[xp]) ^ 128) + off) * ((int(w[wp]) ^ 128) - 128)
                        xp += 1
                        wp += 1
                    acc[a0 + j] = int(acc[a0 + j]) + s


@micropython.viper
def dw_acc(x: ptr8, w: ptr8, acc: ptr32, c: ptr32):
    # c: x_off H W C OW Kh Kw sh sw dh dw pt pl in_off w_off ocb p0 np OH dm oc0 Co
    xo = int(c[0]); H = int(c[1]); W = int(c[2]); C = int(c[3]); OW = int(c[4])
    Kh = int(c[5]); Kw = int(c[6]); sh = int(c[7]); sw = int(c[8]); dh = int(c[9]); dw = int(c[10])
    pt = int(c[11]); pl = int(c[12]); off = int(c[13]); wo = int(c[14]); ocb = int(c[15])
    pt = (((((pt >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (pt & 0xFFFF)  # < 0: a PATCH tile's window
    pl = (((((pl >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (pl & 0xFFFF)
    p0 = int(c[16]); npix = int(c[17]); OH = int(c[18]); dm = int(c[19]); oc0 = int(c[20]); Co = int(c[21])
    off = (((((off >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (off & 0xFFFF)
    off -= 128
    ocb4 = ocb & ~3
    k33 = Kh == 3 and Kw == 3 and dm == 1
    t1 = dw * C  # tap offsets in x for the 3x3 fast path: next column, two columns, next row, two rows
    t2 = 2 * t1
    t3 = dh * W * C
    t6 = 2 * t3
    n_acc = npix * ocb
    for i in range(n_acc):
        acc[i] = 0
    ox = p0 % OW
    t = p0 // OW
    oy = t % OH
    n = t // OH
    ox -= 1
    for pi in range(npix):
        ox += 1  # next output pixel: step the coordinates instead of dividing
        if ox == OW:
            ox = 0
            oy += 1
            if oy == OH:
                oy = 0
                n += 1
        iy0 = oy * sh - pt
        ix0 = ox * sw - pl
        a0 = pi * ocb
        if k33 and iy0 >= 0 and iy0 + 2 * dh < H and ix0 >= 0 and ix0 + 2 * dw < W:
            # 3x3, depth_multiplier 1, window inside the input (most pixels of a MobileNet/DS-CNN layer): the 9
            # taps of each channel in one expression, no accumulator round trips.
            b = xo + ((n * H + iy0) * W + ix0) * C + oc0
            q = wo + oc0
            for j in range(ocb):
                v = (((int(x[b]) ^ 128) + off) * ((int(w[q]) ^ 128) - 128)
                     + ((int(x[b + t1]) ^ 128) + off) * ((int(w[q + Co]) ^ 128) - 128)
                     + ((int(x[b + t2]) ^ 128) + off) * ((int(w[q + 2 * Co]) ^ 128) - 128)
                     + ((int(x[b + t3]) ^ 128) + off) * ((int(w[q + 3 * Co]) ^ 128) - 128)
                     + ((int(x[b + t3 + t1]) ^ 128) + off) * ((int(w[q + 4 * Co]) ^ 128) - 128)
                     + ((int(x[b + t3 + t2]) ^ 128) + off) * ((int(w[q + 5 * Co]) ^ 128) - 128)
                     + ((int(x[b + t6]) ^ 128) + off) * ((int(w[q + 6 * Co]) ^ 128) - 128)
                     + ((int(x[b + t6 + t1]) ^ 128) + off) * ((int(w[q + 7 * Co]) ^ 128) - 128)
                     + ((int(x[b + t6 + t2]) ^ 128) + off) * ((int(w[q + 8 * Co]) ^ 128) - 128))
                acc[a0 + j] = v
                b += 1
                q += 1
            continue
        for ky in range(Kh):
            iy = iy0 + ky * dh
            if iy < 0 or iy >= H:
                continue
            for kx in range(Kw):
                ix = ix0 + kx * dw
                if ix < 0 or ix >= W:
                    continue
                xb = xo + ((n * H + iy) * W + ix) * C
                wb = wo + (ky * Kw + kx) * Co + oc0
                if dm == 1:
                    xp = xb + oc0
                    j = 0
                    while j < ocb4:  # 4 channels per iteration (loop overhead dominates)
                        a = a0 + j
                        acc[a] = int(acc[a]) + ((int(x[xp]) ^ 128) + off) * ((int(w[wb]) ^ 128) - 128)
                        acc[a + 1] = int(acc[a + 1]) + ((int(x[xp + 1]) ^ 128) + off) * ((int(w[wb + 1]) ^ 128) - 128)
                        acc[a + 2] = int(acc[a + 2]) + ((int(x[xp + 2]) ^ 128) + off) * ((int(w[wb + 2]) ^ 128) - 128)
                        acc[a + 3] = int(acc[a + 3]) + ((int(x[xp + 3]) ^ 128) + off) * ((int(w[wb + 3]) ^ 128) - 128)
                        j += 4
                        xp += 4
                        wb += 4
                    while j < ocb:
                        acc[a0 + j] = int(acc[a0 + j]) + ((int(x[xp]) ^ 128) + off) * ((int(w[wb]) ^ 128) - 128)
                        j += 1
                        xp += 1
                        wb += 1
                else:
                    for j in range(ocb):
                        xv = (int(x[xb + (oc0 + j) // dm]) ^ 128) + off
                        acc[a0 + j] = int(acc[a0 + j]) + xv * ((int(w[wb + j]) ^ 128) - 128)


@micropython.viper
def fc_acc(x: ptr8, w: ptr8, acc: ptr32, c: ptr32):
    # c: x_off Ci in_off w_off_value w_off ocb r0 nr
    xo = int(c[0]); Ci = int(c[1]); off = int(c[2]); woff = int(c[3]); wo = int(c[4]); ocb = int(c[5])
    r0 = int(c[6]); nr = int(c[7])
    off = (((((off >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (off & 0xFFFF)
    woff = (((((woff >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (woff & 0xFFFF)
    off -= 128
    k = 0
    for r in range(nr):
        xb = xo + (r0 + r) * Ci
        xe = xb + Ci
        sx = 0
        if woff != 0:
            xp = xb
            while xp < xe:
                sx += (int(x[xp]) ^ 128) + off
                xp += 1
        xe8 = xb + (Ci & ~7)
        wp = wo
        if Ci == 8:
            # 8 inputs (e.g. MobileNet's first pointwise conv): keep them in locals across all output channels
            x0 = (int(x[xb]) ^ 128) + off; x1 = (int(x[xb + 1]) ^ 128) + off; x2 = (int(x[xb + 2]) ^ 128) + off
            x3 = (int(x[xb + 3]) ^ 128) + off; x4 = (int(x[xb + 4]) ^ 128) + off; x5 = (int(x[xb + 5]) ^ 128) + off
            x6 = (int(x[xb + 6]) ^ 128) + off; x7 = (int(x[xb + 7]) ^ 128) + off
            for j in range(ocb):
                acc[k] = (x0 * ((int(w[wp]) ^ 128) - 128) + x1 * ((int(w[wp + 1]) ^ 128) - 128)
                          + x2 * ((int(w[wp + 2]) ^ 128) - 128) + x3 * ((int(w[wp + 3]) ^ 128) - 128)
                          + x4 * ((int(w[wp + 4]) ^ 128) - 128) + x5 * ((int(w[wp + 5]) ^ 128) - 128)
                          + x6 * ((int(w[wp + 6]) ^ 128) - 128) + x7 * ((int(w[wp + 7]) ^ 128) - 128)) + woff * sx
                wp += 8
                k += 1
            continue
        for j in range(ocb):
            xp = xb
            s = 0
            while xp < xe8:
                s += (((int(x[xp]) ^ 128) + off) * ((int(w[wp]) ^ 128) - 128)
                      + ((int(x[xp + 1]) ^ 128) + off) * ((int(w[wp + 1]) ^ 128) - 128)
                      + ((int(x[xp + 2]) ^ 128) + off) * ((int(w[wp + 2]) ^ 128) - 128)
                      + ((int(x[xp + 3]) ^ 128) + off) * ((int(w[wp + 3]) ^ 128) - 128)
                      + ((int(x[xp + 4]) ^ 128) + off) * ((int(w[wp + 4]) ^ 128) - 128)
                      + ((int(x[xp + 5]) ^ 128) + off) * ((int(w[wp + 5]) ^ 128) - 128)
                      + ((int(x[xp + 6]) ^ 128) + off) * ((int(w[wp + 6]) ^ 128) - 128)
                      + ((int(x[xp + 7]) ^ 128) + off) * ((int(w[wp + 7]) ^ 128) - 128))
                xp += 8
                wp += 8
            while xp < xe:
                s += ((int(x[xp]) ^ 128) + off) * ((int(w[wp]) ^ 128) - 128)
                xp += 1
                wp += 1
            acc[k] = s + woff * sx
            k += 1


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


@micropython.viper
def im2col(x: ptr8, patch: ptr8, c: ptr32):
    """Copy the receptive fields of output pixels p0 .. p0+np into patch rows of Kh*Kw*C bytes, so a CONV_2D
    becomes one contiguous dot product per (pixel, output channel) -- the layout of the filter [Co,Kh,Kw,C].
    Positions in the padding get the byte -in_off, whose value plus in_off is the real-domain zero."""
    # c: x_off H W C OW Kh Kw sh sw dh dw pt pl in_off p0 np OH
    xo = int(c[0]); H = int(c[1]); W = int(c[2]); C = int(c[3]); OW = int(c[4])
    Kh = int(c[5]); Kw = int(c[6]); sh = int(c[7]); sw = int(c[8]); dh = int(c[9]); dw = int(c[10])
    pt = int(c[11]); pl = int(c[12]); off = int(c[13]); p0 = int(c[14]); npix = int(c[15]); OH = int(c[16])
    pt = (((((pt >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (pt & 0xFFFF)  # < 0: a PATCH tile's window
    pl = (((((pl >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (pl & 0xFFFF)
    pad = (0 - off) & 0xFF
    o = 0
    ox = p0 % OW
    t = p0 // OW
    oy = t % OH
    n = t // OH
    ox -= 1
    for pi in range(npix):
        ox += 1
        if ox == OW:
            ox = 0
            oy += 1
            if oy == OH:
                oy = 0
                n += 1
        iy0 = oy * sh - pt
        ix0 = ox * sw - pl
        for ky in range(Kh):
            iy = iy0 + ky * dh
            rowin = iy >= 0 and iy < H
            for kx in range(Kw):
                ix = ix0 + kx * dw
                if rowin and ix >= 0 and ix < W:
                    xp = xo + ((n * H + iy) * W + ix) * C
                    for k in range(C):
                        patch[o + k] = x[xp + k]
                else:
                    for k in range(C):
                        patch[o + k] = pad
                o += C
