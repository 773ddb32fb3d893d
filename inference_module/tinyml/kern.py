# CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED in one fused viper kernel that requantizes straight into the arena
# (its runners, the config it reads and its layout are in conv.py).
#
# Mirrors kernels_ref.conv / fully_connected. Two loop orders share the requantization at the end of the inner loop:
#
# * GEMM (CONV_2D, FULLY_CONNECTED): for each output pixel (an FC row is a pixel of a 1 x rows image with 1x1
#   filters) the pixel's receptive field -- K = Kh*Kw*C values x + in_off, padding 0 -- goes into an int32 row
#   buffer once, then its dot product with each filter of the output-channel block is requantized at once;
# * depthwise: for each output channel its 3x3 weights are loaded once into locals, then every output pixel of the
#   channel is one expression of 9 taps; other filters' signed taps (streaming WW's 3x1 .. 15x1) go once per
#   channel into the row buffer, and a pixel whose window lies inside the input takes them 4 per iteration along
#   a run with both pointers moving (a Kh x 1 filter: one run down its column); windows that touch the padding
#   take the general loop over taps.
#
# Why it is shaped this way: viper's emitter keeps only the first two locals in registers (x64 and Thumb alike) and
# spills the rest to the C stack, and its loop overhead dwarfs a MAC.
# * The hottest pointers are the first two parameters (the filter and the row in a dot product; the input window in
#   depthwise) and they move (`w = ptr8(int(w) + 8)`), so that loads have constant offsets; dot products are
#   unrolled 8-way.
# * No conversion per MAC: weights are read unsigned and xor 128 makes them w + 128 in [0, 255], so
#   sum(row * w) = sum(row * (w ^ 128)) - 128 * sum(row), one multiply per pixel (FULLY_CONNECTED's weight offset
#   folds into the same constant). In depthwise x ^ 128 is x + 128, and (in_off - 128) * sum(w) joins the bias.
# * Row values are stored as int32 and loaded zero-extended on 64-bit ports; products and sums are then right only
#   mod 2^32, which is all TFLite's int32 accumulator (and the wrap below) keeps.
#
# Requantization is MBQM (docs/blob-format.md §5) exactly as requant.py's routines: the 64-bit product on 64-bit
# ports (c[24] = 1), the 16-bit-limb product on 32-bit ones (c[24] = 0; tests run it on the unix port too). A
# receptive field longer than the row buffer is taken in segments of K (c[8], c[9]) whose partial sums wait in an
# int32 accumulator row per (pixel, channel) until the last segment.
#
# (Comments, not a docstring: a .py module's docstring costs heap while it compiles. Locals reuse names the package
# already has where they can: compiled from source every new identifier is a qstr, see model.py's WBUF.)
# (Its own module: compiled from source, a module's whole parse tree is alive while it compiles, so the kernel
# beside its runners peaked 28 KB higher than either alone.)

import micropython


@micropython.viper
def conv(w: ptr8, x: ptr32, a: ptr8, c: ptr32):
    b31 = 1 << 15
    b31 = b31 << 16  # 2^31, built at run time: as a literal it is no small int on 32-bit ports
    m32 = (b31 << 1) - 1  # 0xFFFFFFFF (all ones on 32-bit ports, where the wrap below is the identity)
    rnd = 1 << 15
    rnd = rnd << 15
    wb = int(w); xb = int(x); ab = int(a)
    vb = ptr32(int(c[39]) | ((int(c[40]) << 16) << 16))
    sacc = ptr32(int(c[41]) | ((int(c[42]) << 16) << 16))
    dwm = int(c[1]); K = int(c[2]); nb = int(c[3]); oc0 = int(c[4]); p0 = int(c[5]); npix = int(c[6])
    keep = int(c[7]); k0 = int(c[8]); kl = int(c[9]); seg = int(c[10])
    xo = ab + int(c[11]); off = ((int(c[12]) ^ b31) - b31) - 128; corr = (int(c[13]) ^ b31) - b31
    wo = wb + int(c[14]); yo = ab + int(c[15]); Co = int(c[16])
    bi = int(c[17]); mi = int(c[18]); si = int(c[19]); step = int(c[20])
    zp = (int(c[21]) ^ b31) - b31; lo = (int(c[22]) ^ b31) - b31; hi = (int(c[23]) ^ b31) - b31
    wide = int(c[24])
    H = int(c[25]); W = int(c[26]); C = int(c[27]); OW = int(c[28]); OH = int(c[29]); Kh = int(c[30])
    Kw = int(c[31]); sh = int(c[32]); sw = int(c[33]); dh = int(c[34]); dw = int(c[35])
    pt = (int(c[36]) ^ b31) - b31  # < 0 for the first conv of a PATCH tile (a window of the whole input)
    pl = (int(c[37]) ^ b31) - b31
    dm = int(c[38])
    tb = int(c[0])  # depthwise, not 3x3: the filter's taps fit the row buffer x
    run = Kw * C
    k1 = k0 + kl
    rs = 0
    nky = Kh
    if keep:
        rs = K + 1
        if keep == 2:
            nky = 0
    t1 = dw * C  # depthwise: tap offsets of the 3x3 window (next column, two columns, next row, ...)
    t2 = t1 + t1
    t3 = dh * W * C
    t4 = t3 + t1
    t5 = t3 + t2
    t6 = t3 + t3
    t7 = t6 + t1
    t8 = t6 + t2
    k33 = 0
    if dwm and Kh == 3 and Kw == 3:
        k33 = 1
    fh = (Kh - 1) * dh  # the window's extent past its first row and column
    fw = (Kw - 1) * dw
    cnt = Kh * Kw
    ni = Kh  # the window as ni runs of nt taps ts apart (a Kh x 1 filter: one run down its column)
    nt = Kw
    ts = t1
    if Kw == 1:
        ni = 1
        nt = Kh
        ts = t3
    s2 = ts + ts
    s3 = s2 + ts
    # output pixel p0's coordinates, once per call (depthwise restarts them for every channel)
    x0 = p0 % OW
    t = p0 // OW
    y0 = t % OH
    j0 = t // OH
    n_out = nb  # GEMM: outer loop over pixels, inner over channels; depthwise the other way round
    n_in = npix
    if not dwm:
        n_out = npix
        n_in = nb
    w0 = 0; w1 = 0; w2 = 0; w3 = 0; w4 = 0; w5 = 0; w6 = 0; w7 = 0; w8 = 0; bfast = 0
    s0 = 0; ic = 0; wp = 0; q = 0
    for u in range(n_out):
        if dwm:
            j = u
            ic = oc0 + j
            if dm != 1:
                ic = ic // dm
            wp = wo + j  # tap k of this channel at wp + k * Co
            q = yo + p0 * Co + oc0 + j
            if k33:
                w = ptr8(wp)
                c2 = Co + Co
                c4 = c2 + c2
                w0 = (w[0] ^ 128) - 128; w1 = (w[Co] ^ 128) - 128; w2 = (w[c2] ^ 128) - 128
                w3 = (w[c2 + Co] ^ 128) - 128; w4 = (w[c4] ^ 128) - 128; w5 = (w[c4 + Co] ^ 128) - 128
                w6 = (w[c4 + c2] ^ 128) - 128; w7 = (w[c4 + c2 + Co] ^ 128) - 128; w8 = (w[c4 + c4] ^ 128) - 128
                bfast = off * (w0 + w1 + w2 + w3 + w4 + w5 + w6 + w7 + w8)
            else:  # the channel's taps, signed, into x when they fit (int32 words: right mod 2^32 when loaded)
                bfast = 0
                x = ptr32(xb)
                for k in range(cnt):
                    v = (int(ptr8(wp + k * Co)[0]) ^ 128) - 128
                    if tb:
                        x[k] = v
                    bfast += v
                bfast = off * bfast
        else:
            pi = u
        # output pixel p0 + pi: step its coordinates instead of dividing (GEMM: once per row; depthwise: restart
        # for every channel)
        if dwm or u == 0:
            ox = x0 - 1
            oy = y0
            n = j0
        if not dwm:
            ox += 1
            if ox == OW:
                ox = 0
                oy += 1
                if oy == OH:
                    oy = 0
                    n += 1
            iy0 = oy * sh - pt
            ix0 = ox * sw - pl
            # The receptive field (the segment k0..k1 of it) as int32 x + in_off, 0 in the padding, summed into sx
            # on the way; rows kept from the previous call (keep == 2) are already there.
            x = ptr32(xb + 4 * rs * pi)
            sx = 0
            if keep == 2:
                sx = int(x[K])
            r0 = 0  # position of the current run in the receptive field
            for ky in range(nky):
                iy = iy0 + ky * dh
                rb = xo + ((n * H + iy) * W) * C
                kx = 0
                while kx < Kw:
                    ix = ix0 + kx * dw
                    L = C
                    if dw == 1 and kx == 0 and ix0 >= 0 and ix0 + Kw <= W:
                        L = run  # the whole filter row lies inside the input row: one contiguous run
                    kx += L // C
                    r1 = r0 + L
                    i0 = 0
                    if r0 < k0:
                        i0 = k0 - r0
                    if r1 > k1:
                        L = k1 - r0
                    r0 = r1
                    if i0 >= L:
                        continue
                    if iy < 0 or iy >= H or ix < 0 or ix >= W:
                        for i in range(L - i0):
                            x[i] = 0
                    else:
                        s8 = ptr8(rb + ix * C + i0)
                        for i in range(L - i0):
                            v = (s8[i] ^ 128) + off
                            x[i] = v
                            sx += v
                    x = ptr32(int(x) + 4 * (L - i0))
            if keep == 1:
                x[0] = sx
            s0 = corr * sx
            wp = wo + k0
            q = yo + (p0 + pi) * Co + oc0
        for e in range(n_in):
            if dwm:
                pi = e
                ox += 1
                if ox == OW:
                    ox = 0
                    oy += 1
                    if oy == OH:
                        oy = 0
                        n += 1
                iy0 = oy * sh - pt
                ix0 = ox * sw - pl
                if k33 and iy0 >= 0 and iy0 + 2 * dh < H and ix0 >= 0 and ix0 + 2 * dw < W:
                    w = ptr8(xo + ((n * H + iy0) * W + ix0) * C + ic)
                    s = ((w[0] ^ 128) * w0 + (w[t1] ^ 128) * w1 + (w[t2] ^ 128) * w2 + (w[t3] ^ 128) * w3
                         + (w[t4] ^ 128) * w4 + (w[t5] ^ 128) * w5 + (w[t6] ^ 128) * w6 + (w[t7] ^ 128) * w7
                         + (w[t8] ^ 128) * w8 + bfast)
                elif tb and iy0 >= 0 and iy0 + fh < H and ix0 >= 0 and ix0 + fw < W:
                    # other filter sizes, window inside the input: the taps from x, 4 per iteration along a run
                    rp = xo + ((n * H + iy0) * W + ix0) * C + ic
                    x = ptr32(xb)
                    s = bfast
                    for r in range(ni):
                        w = ptr8(rp)
                        k = nt
                        while k >= 4:
                            s += ((w[0] ^ 128) * x[0] + (w[ts] ^ 128) * x[1] + (w[s2] ^ 128) * x[2]
                                  + (w[s3] ^ 128) * x[3])
                            w = ptr8(int(w) + s2 + s2)
                            x = ptr32(int(x) + 16)
                            k -= 4
                        while k:
                            s += (w[0] ^ 128) * x[0]
                            w = ptr8(int(w) + ts)
                            x = ptr32(int(x) + 4)
                            k -= 1
                        rp += t3
                else:
                    s = 0
                    for ky in range(Kh):
                        iy = iy0 + ky * dh
                        if iy < 0 or iy >= H:
                            continue
                        for kx in range(Kw):
                            ix = ix0 + kx * dw
                            if ix < 0 or ix >= W:
                                continue
                            w = ptr8(xo + ((n * H + iy) * W + ix) * C + ic)
                            s += ((w[0] ^ 128) + off) * ((int(ptr8(wp + (ky * Kw + kx) * Co)[0]) ^ 128) - 128)
                j = u
            else:
                j = e
                w = ptr8(wp)
                x = ptr32(xb + 4 * rs * pi)
                s = s0
                k = kl >> 3
                while k:  # 8 MACs per iteration
                    s += ((w[0] ^ 128) * x[0] + (w[1] ^ 128) * x[1] + (w[2] ^ 128) * x[2] + (w[3] ^ 128) * x[3]
                          + (w[4] ^ 128) * x[4] + (w[5] ^ 128) * x[5] + (w[6] ^ 128) * x[6] + (w[7] ^ 128) * x[7])
                    w = ptr8(int(w) + 8)
                    x = ptr32(int(x) + 32)
                    k -= 1
                k = kl & 7
                while k:
                    s += (w[0] ^ 128) * x[0]
                    w = ptr8(int(w) + 1)
                    x = ptr32(int(x) + 4)
                    k -= 1
                wp += K
                if seg != 3:  # one segment of several: the partial sums wait in sacc
                    ai = pi * nb + j
                    if not seg & 1:
                        s += int(sacc[ai])
                    if not seg & 2:
                        sacc[ai] = s
                        continue
            # MBQM(acc + bias, mult, shift) + zp, clamped (requant.mbqm_vec's steps)
            v = (((s + int(vb[bi + j])) & m32) ^ b31) - b31  # the int32 accumulator TFLite keeps
            mu = int(vb[mi + j * step])
            sft = (int(vb[si + j * step]) ^ b31) - b31
            if sft > 0:
                v = v << sft
            if wide:
                v = (v * mu + rnd) >> 31
                if sft < 0:  # rounding shift, half away from zero, in one step (v >> 63 is -1 for v < 0)
                    sft = 0 - sft
                    v = (v + (1 << (sft - 1)) + (v >> 63)) >> sft
            else:
                # SRDHM with 16-bit limbs, every intermediate inside int32 (requant.srdhm_pos32)
                al = v & 0xFFFF; ah = v >> 16; bl = mu & 0xFFFF; bh = mu >> 16
                t = al * (bl >> 1)
                lr = (t & 0x7FFF) * 2 + al * (bl & 1)
                lh = (t >> 15) + (lr >> 16)
                m1 = ah * bl; m2 = al * bh
                lw = (m1 & 0x7FFF) + (m2 & 0x7FFF) + (lh & 0x7FFF)
                v = 2 * ah * bh + (m1 >> 15) + (m2 >> 15) + (lh >> 15) + (lw >> 15)
                v += ((((lw & 0x7FFF) << 16) | (lr & 0xFFFF)) >> 30)
            if sft < 0:
                sft = 0 - sft
                mask = (1 << sft) - 1
                th = mask >> 1
                if v < 0:
                    th += 1
                rem = v & mask
                v = v >> sft
                if rem > th:
                    v += 1
            v += zp
            if v < lo:
                v = lo
            if v > hi:
                v = hi
            if dwm:
                ptr8(q)[0] = v
                q += Co
            else:
                ptr8(q)[j] = v
