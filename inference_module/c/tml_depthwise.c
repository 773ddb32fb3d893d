/* DEPTHWISE_CONV_2D: the Cortex-M DSP kernels of tml_dw_m4.c where they apply, else the portable loop over output
 * pixels with DW_BLOCK channels accumulated at once. */
#include "tml_kernels.h"

tml_status tml_depthwise_conv_2d(tml_model *m, const tml_op *op)
{
    operand x, w, b, mu, sh, y;
    int32_t p[TML_MAX_PARAMS], acc[DW_BLOCK];
    uint32_t n, oy, ox, N, H, W, C, Kh, Kw, Co, Ho, Wo, dm;
    const int8_t *xd, *wd;
    int8_t *yd;
    tml_get_weighted(m, op, &x, &w, &b, &mu, &sh, &y);
    tml_get_params(op, p);
    N = x.d[0]; H = x.d[1]; W = x.d[2]; C = x.d[3];
    Kh = w.t.dims[1]; Kw = w.t.dims[2]; Co = w.t.dims[3];
    Ho = y.d[1]; Wo = y.d[2];
    dm = (uint32_t)p[10];
    xd = (const int8_t *)x.data;
    wd = (const int8_t *)w.data;
    yd = (int8_t *)y.out;
#if TML_DSP
    /* 3x3, depth multiplier 1: channel by channel on int16 planes when tml_requant2_dsp's shortcut is exact, else on
     * NHWC windows (each its own function: their stack buffers are not live together) */
    const uint32_t bit = tml_tile_bit(m); /* a later tile of a PATCH stage: tml_dw3_fast_ok's answer known */
    const int plane_fast = dm == 1 && Kh == 3 && Kw == 3 && p[6] >= -255 && p[6] <= 255 && (Co & 3u) == 0 &&
                           ((bit & m->tile_plain) ||
                            tml_dw3_fast_ok(p, Co, (const uint8_t *)b.data, (const uint8_t *)sh.data));
    if (plane_fast)
        m->tile_plain |= bit;
    if (plane_fast &&
        tml_dw3_planes(xd, N, H, W, C, wd, (const uint8_t *)b.data, (const uint8_t *)mu.data,
                       (const uint8_t *)sh.data, p, Ho, Wo, yd))
        return TML_OK;
    if (dm == 1 && (Co & 3u) == 0 && Kh == 3 && Kw == 3 && Co <= DW3_MAX_C && p[6] >= -127) {
        tml_dw3_windows(&x, &w, &b, &mu, &sh, &y, p);
        return TML_OK;
    }
#endif
    for (n = 0; n < N; n++)
        for (oy = 0; oy < Ho; oy++) {
            int64_t iy0 = (int64_t)oy * p[0] - p[4];
            uint32_t ky0, ky1;
            tml_tap_range(iy0, (uint32_t)p[2], Kh, H, &ky0, &ky1);
#if TML_DSP
            /* first valid input row of this output row's windows (used when the window is not empty) */
            const int8_t *xrow0 = ky1 > ky0 ? xd + ((size_t)n * H + (size_t)(iy0 + (int64_t)ky0 * p[2])) * W * C : xd;
#endif
            for (ox = 0; ox < Wo; ox++) {
                int64_t ix0 = (int64_t)ox * p[1] - p[5];
                uint32_t kx0, kx1, c0;
                int8_t *out = yd + (((size_t)n * Ho + oy) * Wo + ox) * Co;
                tml_tap_range(ix0, (uint32_t)p[3], Kw, W, &kx0, &kx1);
                /* channels inner: x and w are both contiguous along channels for a given tap */
#if TML_DSP
                if (dm == 1 && (Co & 3u) == 0) {
                    /* 4 channels at a time, accumulators in registers across all taps; the window's first
                     * valid tap and the strides between taps are computed once per pixel */
                    const uint32_t xo2 = tml_pair(p[6]);
                    const size_t xstep_x = (size_t)p[3] * C, xstep_y = (size_t)p[2] * W * C;
                    const size_t wstep_y = (size_t)Kw * Co;
                    const uint32_t nky = ky1 - ky0, nkx = kx1 - kx0;
                    const int8_t *x00 = nky && nkx ? xrow0 + (size_t)(ix0 + (int64_t)kx0 * p[3]) * C : xd;
                    const int8_t *w00 = wd + ((size_t)ky0 * Kw + kx0) * Co;
                    uint32_t c;
                    for (c = 0; c < Co; c += 4) {
                        /* four scalar accumulators (an array would live on the stack) */
                        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                        const int8_t *xr = x00 + c, *wr = w00 + c;
                        const uint8_t *bq = (const uint8_t *)b.data + 4 * c, *mq = (const uint8_t *)mu.data + 4 * c,
                                      *sq = (const uint8_t *)sh.data + 4 * c;
                        uint32_t a, bb;
#define DW_TAP(xp, wp)                                                                                         \
    do {                                                                                                       \
        uint32_t xv = tml_ldu32(xp), wv = tml_ldu32(wp);                                                       \
        int32_t xe = __sxtab16(xo2, xv), xdd = tml_sxtab16_ror8(xo2, xv);                                      \
        int32_t we = __sxtb16(wv), wdd = tml_sxtb16_ror8(wv);                                                  \
        a0 = __smlabb(xe, we, a0);                                                                             \
        a2 = __smlatt(xe, we, a2);                                                                             \
        a1 = __smlabb(xdd, wdd, a1);                                                                           \
        a3 = __smlatt(xdd, wdd, a3);                                                                           \
    } while (0)
                        if (nky == 3 && nkx == 3) {
                            /* a whole 3x3 window (every interior pixel): unrolled, no loop counters */
                            for (a = 0; a < 3; a++, xr += xstep_y, wr += wstep_y) {
                                DW_TAP(xr, wr);
                                DW_TAP(xr + xstep_x, wr + Co);
                                DW_TAP(xr + 2 * xstep_x, wr + 2 * Co);
                            }
                        } else {
                            for (a = 0; a < nky; a++, xr += xstep_y, wr += wstep_y) {
                                const int8_t *xp = xr, *wp = wr;
                                for (bb = 0; bb < nkx; bb++, xp += xstep_x, wp += Co)
                                    DW_TAP(xp, wp);
                            }
                        }
#undef DW_TAP
                        out[c] = requant(a0, bq, mq, sq, p[7], p[8], p[9]);
                        out[c + 1] = requant(a1, bq + 4, mq + 4, sq + 4, p[7], p[8], p[9]);
                        out[c + 2] = requant(a2, bq + 8, mq + 8, sq + 8, p[7], p[8], p[9]);
                        out[c + 3] = requant(a3, bq + 12, mq + 12, sq + 12, p[7], p[8], p[9]);
                    }
                    continue;
                }
#endif
                for (c0 = 0; c0 < Co; c0 += DW_BLOCK) {
                    uint32_t cb = Co - c0 < DW_BLOCK ? Co - c0 : DW_BLOCK, j, ky, kx;
                    memset(acc, 0, sizeof acc);
                    for (ky = ky0; ky < ky1; ky++) {
                        uint32_t iy = (uint32_t)(iy0 + (int64_t)ky * p[2]);
                        for (kx = kx0; kx < kx1; kx++) {
                            uint32_t ix = (uint32_t)(ix0 + (int64_t)kx * p[3]);
                            const int8_t *xp = xd + (((size_t)n * H + iy) * W + ix) * C;
                            const int8_t *wp = wd + ((size_t)ky * Kw + kx) * Co + c0;
                            if (dm == 1) {
                                xp += c0;
                                j = 0;
#if TML_DSP
                                {
                                    const uint32_t xo2 = tml_pair(p[6]);
                                    for (; j + 4 <= cb; j += 4)
                                        tml_mac4_lanes(xp + j, wp + j, xo2, acc + j);
                                }
#endif
                                for (; j < cb; j++)
                                    acc[j] += (xp[j] + p[6]) * wp[j];
                            } else {
                                for (j = 0; j < cb; j++)
                                    acc[j] += (xp[(c0 + j) / dm] + p[6]) * wp[j];
                            }
                        }
                    }
                    for (j = 0; j < cb; j++) {
                        const uint32_t c = c0 + j;
                        out[c] = requant(acc[j], (const uint8_t *)b.data + 4 * c, (const uint8_t *)mu.data + 4 * c,
                                         (const uint8_t *)sh.data + 4 * c, p[7], p[8], p[9]);
                    }
                }
            }
        }
    return TML_OK;
}
