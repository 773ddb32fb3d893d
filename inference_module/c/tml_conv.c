/* CONV_2D: im2col (gather_patch) or row copies into the pixel pair's receptive fields, then the GEMM of tml_gemm.c on
 * Cortex-M DSP, the dense row product (tml_dense.c) or the portable per-pixel loops. */
#include "tml_kernels.h"


/* The receptive field of one output pixel as one contiguous vector [Kh][Kw][C]; padding gets the zero point. */
static void gather_patch(const int8_t *xd, uint32_t n, uint32_t H, uint32_t W, uint32_t C, uint32_t Kh, uint32_t Kw,
                         int64_t iy0, int64_t ix0, const int32_t *p, int8_t *patch)
{
    uint32_t gy, gx;
    int8_t *q = patch;
    const int8_t zp = (int8_t)(-p[6]);
    if (p[3] == 1 && iy0 >= 0 && ix0 >= 0 && iy0 + (int64_t)(Kh - 1) * p[2] < H && ix0 + (int64_t)Kw <= W) {
        /* the whole window inside the input, dilation 1 across: one contiguous run per window row */
        const uint32_t row_bytes = Kw * C, dy = (uint32_t)p[2] * W * C;
        const int8_t *row = xd + (((size_t)n * H + (size_t)iy0) * W + (size_t)ix0) * C;
        for (gy = 0; gy < Kh; gy++, row += dy, q += row_bytes)
            copy_bytes(q, row, row_bytes);
        return;
    }
    if (p[3] == 1) {
        /* dilation 1 across: a window row's valid taps are one contiguous run of the input row, the rest padding */
        uint32_t kx0, kx1;
        const uint32_t row_bytes = Kw * C;
        tml_tap_range(ix0, 1, Kw, W, &kx0, &kx1);
        for (gy = 0; gy < Kh; gy++, q += row_bytes) {
            const int64_t iy = iy0 + (int64_t)gy * p[2];
            if (iy < 0 || iy >= H || kx0 >= kx1) {
                fill_bytes(q, zp, row_bytes);
                continue;
            }
            fill_bytes(q, zp, kx0 * C);
            copy_bytes(q + kx0 * C, xd + (((size_t)n * H + (size_t)iy) * W + (size_t)(ix0 + kx0)) * C, (kx1 - kx0) * C);
            fill_bytes(q + kx1 * C, zp, (Kw - kx1) * C);
        }
        return;
    }
    for (gy = 0; gy < Kh; gy++)
        for (gx = 0; gx < Kw; gx++, q += C) {
            int64_t iy = iy0 + (int64_t)gy * p[2], ix = ix0 + (int64_t)gx * p[3];
            if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                fill_bytes(q, zp, C);
            else
                copy_bytes(q, xd + (((size_t)n * H + (size_t)iy) * W + (size_t)ix) * C, C);
        }
}

/* A 1x1 CONV_2D's input pixel for output pixel `pix` (raster order over N x Ho x Wo, strides p[0], p[1]) */
static inline const int8_t *pw_input(const int8_t *xd, size_t pix, uint32_t H, uint32_t W, uint32_t C, uint32_t Ho,
                                     uint32_t Wo, const int32_t *p)
{
    return xd + (((pix / ((size_t)Ho * Wo)) * H + (pix / Wo % Ho) * p[0]) * W + (pix % Wo) * p[1]) * C;
}

#if TML_DSP
/* a receptive field inside the input as one vector: its rows copied one after another, a word at a time (the M4
 * allows unaligned LDR/STR), a row of bytes % 4 != 0 ending in one word over the one before (rows of 9 bytes:
 * 3 words, no byte loop) */
static __attribute__((noinline)) void copy_rows(int8_t *dst, const int8_t *src, const pair_rows *rows)
{
    const uint32_t n = rows->n, bytes = rows->bytes;
    const size_t step = rows->step;
    uint32_t r, i, v;
    if (bytes < 4) {
        for (r = 0; r < n; r++, src += step)
            for (i = 0; i < bytes; i++)
                *dst++ = src[i];
        return;
    }
    for (r = 0; r < n; r++, src += step, dst += bytes) {
        for (i = 0; i + 4 < bytes; i += 4) {
            v = tml_ldu32(src + i);
            memcpy(dst + i, &v, 4);
        }
        v = tml_ldu32(src + bytes - 4); /* the row's last word, over the one before when bytes % 4 != 0 */
        memcpy(dst + bytes - 4, &v, 4);
    }
}

/* The input rows iy0..iy0 + Hp - 1, columns ix0..ix0 + Wp - 1 (either side may lie outside the input) as one padded
 * image [Hp][Wp][C] in dst: the zero point outside the input, so every receptive field is inside it */
static __attribute__((noinline)) void pad_input(const int8_t *xd, uint32_t H, uint32_t W, uint32_t C, int32_t iy0,
                                                int32_t ix0, uint32_t Hp, uint32_t Wp, int8_t zp, int8_t *dst)
{
    uint32_t r, kx0, kx1;
    tml_tap_range(ix0, 1, Wp, W, &kx0, &kx1); /* the padded row's columns inside the input */
    fill_bytes(dst, zp, Hp * Wp * C);
    for (r = 0; r < Hp; r++) {
        const int32_t iy = iy0 + (int32_t)r;
        if (iy >= 0 && iy < (int32_t)H && kx0 < kx1)
            copy_bytes(dst + ((size_t)r * Wp + kx0) * C, xd + ((size_t)iy * W + (size_t)(ix0 + (int32_t)kx0)) * C,
                       (kx1 - kx0) * C);
    }
}

/* im2col CONV_2D (N = 1, dilation 1 across, rows of a multiple of 4 bytes, requantized widened weights) over a small
 * padded input: when the rows and columns every window covers leave the input and fit the patch buffer, the padded
 * input is built there once and every pixel pair's windows are widened from it (tml_padded_pairs_w16); KWS's first
 * layer (49 x 10 x 1 -> 58 x 12) had 65 of its 125 windows overlapping the padding, each gathered row by row. 0 when
 * it does not apply. Apart from tml_conv_2d so that its pair loop keeps its registers. */
static __attribute__((noinline)) int conv_padded(const int8_t *xd, uint32_t H, uint32_t W, uint32_t C, uint32_t Ho,
                                                 uint32_t Wo, uint32_t Kh, uint32_t Kw, uint32_t Co, const int32_t *p,
                                                 const dense_q *q, int8_t *buf, int8_t *yd)
{
    const int64_t py0 = -(int64_t)p[4], px0 = -(int64_t)p[5];
    const int64_t hp = (int64_t)(Ho - 1) * p[0] + (int64_t)(Kh - 1) * p[2] + 1, wp = (int64_t)(Wo - 1) * p[1] + Kw;
    pair_rows rows;
    if (hp > CONV_PATCH || wp > CONV_PATCH || hp * wp * C > CONV_PATCH ||
        !(py0 < 0 || px0 < 0 || py0 + hp > H || px0 + wp > W))
        return 0;
    pad_input(xd, H, W, C, (int32_t)py0, (int32_t)px0, (uint32_t)hp, (uint32_t)wp, (int8_t)(-q->xo), buf);
    rows.n = Kh;
    rows.bytes = Kw * C;
    rows.step = (size_t)p[2] * (uint32_t)wp * C;
    tml_padded_pairs_w16(buf, (uint32_t)wp * C, C, Ho, Wo, p, &rows, Co, q, yd);
    return 1;
}

/* n, oy, ox of the pixel after pos[] in raster order */
static inline void next_pixel(uint32_t pos[3], uint32_t Ho, uint32_t Wo)
{
    if (++pos[2] == Wo) {
        pos[2] = 0;
        if (++pos[1] == Ho) {
            pos[1] = 0;
            pos[0]++;
        }
    }
}
#endif

tml_status tml_conv_2d(tml_model *m, const tml_op *op)
{
    operand x, w, b, mu, sh, y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t n, oy, ox, oc, N, H, W, C, Kh, Kw, Co, Ho, Wo, fstride;
    int8_t patch[CONV_PATCH];
    int patch_ok;
    dense_q q;
#if TML_DSP
    uint32_t const_mask[CONST_MAX_C / 32], slow_mask[CONST_MAX_C / 32];
    int8_t const_val[CONST_MAX_C];
#endif
    const int8_t *xd, *wd;
    int8_t *yd;
    tml_get_weighted(m, op, &x, &w, &b, &mu, &sh, &y);
    tml_get_params(op, p);
    N = x.d[0]; H = x.d[1]; W = x.d[2]; C = x.d[3];
    Co = w.t.dims[0]; Kh = w.t.dims[1]; Kw = w.t.dims[2];
    Ho = y.d[1]; Wo = y.d[2];
    fstride = Kh * Kw * C;
    patch_ok = fstride <= CONV_PATCH && p[6] >= -127; /* -in_off must be an int8 zero point */
    xd = (const int8_t *)x.data;
    wd = (const int8_t *)w.data;
    yd = (int8_t *)y.out;
    /* per-channel requantization of every output row, whichever path computes it */
    q.bias = (const uint8_t *)b.data;
    q.mult = (const uint8_t *)mu.data;
    q.shift = (const uint8_t *)sh.data;
    q.per_channel = 1;
    q.xo = p[6];
    q.wo = 0;
    q.out_off = p[7];
    q.lo = p[8];
    q.hi = p[9];
    q.const_mask = NULL;
    q.const_val = NULL;
    q.slow_mask = NULL;
    q.w16 = NULL;
    q.w16_map = NULL;
    q.w8 = wd;
    q.w8_k = fstride;
#if TML_DSP
    const uint32_t bit = tml_tile_bit(m), known = bit & m->tile_plain; /* a later tile: nothing per channel */
    q.fast_requant = known || tml_requant2_ok(&q, Co, fstride, const_mask, const_val, slow_mask);
    if (q.fast_requant && Co <= CONST_MAX_C && !known) {
        uint32_t i, any_const = 0, any_slow = 0;
        for (i = 0; i < (Co + 31) / 32; i++) {
            any_const |= const_mask[i];
            any_slow |= slow_mask[i];
        }
        if (any_const) {
            q.const_mask = const_mask;
            q.const_val = const_val;
        }
        if (any_slow)
            q.slow_mask = slow_mask;
    }
    q.weights_overrun_ok = w.t.storage == TML_CONST && (uint64_t)w.t.offset + w.t.bytes + 3 <= m->consts_size;
    /* the GEMM requantizes its own outputs unless Co = 2 (no overlapping triple) or some channel needs the C path:
     * then the four-channel form if its blocks can be compacted (tml_w16_prepare: those channels in C beside them) */
    q.w16_form = q.fast_requant && Co != 2 ? q.slow_mask == NULL ? tml_w16_requant_form(Co, fstride) : W16_QUAD
                                           : W16_SUMS;
    if (q.fast_requant && q.const_mask == NULL && q.slow_mask == NULL)
        m->tile_plain |= bit;
#else
    q.fast_requant = 0;
    q.weights_overrun_ok = 0;
#endif
    if (Kh == 1 && Kw == 1 && p[4] == 0 && p[5] == 0 && (uint64_t)(Ho - 1) * (uint32_t)p[0] < H &&
        (uint64_t)(Wo - 1) * (uint32_t)p[1] < W) {
        /* 1x1 filter, every output pixel inside the input: each pixel is one dense row */
        size_t pix, npix = (size_t)N * Ho * Wo;
        const int dense_input = p[0] == 1 && p[1] == 1 && Ho == H && Wo == W;
        pix = 0;
        (void)dense_input;
#if TML_DSP
        if (C <= PAIR_MAX_K) /* output pixels two at a time: every widened weight is used twice */
            q.w16 = tml_w16_prepare(m, wd, C, Co, npix, &q, q.w16_form);
        if (C <= PAIR_MAX_K && dense_input && C % 4 == 0 && q.w16 != NULL && q.w16_form != W16_SUMS) {
            tml_pw_pairs_w16(xd, npix / 2, C, Co, &q, yd);
            pix = npix & ~(size_t)1;
        }
        if (C <= PAIR_MAX_K)
            for (; pix + 2 <= npix; pix += 2) {
                size_t pb = pix + 1;
                const int8_t *xa, *xb;
                if (dense_input) { /* stride 1, same size: input pixel = output pixel */
                    xa = xd + pix * C;
                    xb = xa + C;
                } else {
                    xa = pw_input(xd, pix, H, W, C, Ho, Wo, p);
                    xb = pw_input(xd, pb, H, W, C, Ho, Wo, p);
                }
                tml_dense_pair(xa, xb, C, wd, Co, &q, yd + pix * Co, yd + pb * Co, NULL);
            }
        if (q.w16 != NULL && q.w16_form == W16_QUAD && q.w16_map == NULL && C % 4 == 0)
            for (; pix < npix; pix++) /* an odd count's last pixel (KWS's 125th): the four-channel blocks alone */
                tml_pixel_w16(pw_input(xd, pix, H, W, C, Ho, Wo, p),
                              C, Co, &q, yd + pix * Co, NULL);
        for (; q.w16 != NULL && q.w16_map != NULL && pix < npix; pix++) { /* compacted blocks: the pair kernel */
            const int8_t *xa = pw_input(xd, pix, H, W, C, Ho, Wo, p);
            tml_dense_pair(xa, xa, C, wd, Co, &q, yd + pix * Co, yd + pix * Co, NULL);
        }
#endif
        for (; pix < npix; pix++)
            tml_dense_row(pw_input(xd, pix, H, W, C, Ho, Wo, p),
                          C, wd, Co, &q, yd + pix * Co);
        return TML_OK;
    }
#if TML_DSP
    if (patch_ok && !(Kh == 1 && Kw == 1) && fstride <= PAIR_MAX_K) {
        /* im2col, two output pixels per pass over the filters, in raster order (a row's last pixel pairs with the
         * next row's first): each pixel's receptive field gathered (padding positions get the input zero point, so
         * they add (zp + in_off) * w = 0), then tml_dense_pair */
        int8_t patch2[PAIR_MAX_K];
        const size_t npix = (size_t)N * Ho * Wo;
        size_t pix;
        uint32_t pos[3] = {0, 0, 0}; /* n, oy, ox of the next pixel */
        pair_rows rows;
        const int rows_ok = p[3] == 1 && (Kw * C) % 4 == 0 && Co % 2 == 0;
        q.w16 = tml_w16_prepare(m, wd, fstride, Co, npix, &q, q.w16_form);
        /* with widened weights a pair's K is rounded up to 4 (w16's blocks are the same), the patches' pad bytes set
         * once to the input zero point (widened to 0; no gather writes them): tml_dense_pair's byte loop for the last
         * K % 4 inputs skipped (IC's and VWW's first layers, K = 27) */
        const uint32_t kpair = q.w16 != NULL && fstride + 3 <= PAIR_MAX_K && fstride + 3 <= CONV_PATCH
                                   ? (fstride + 3) & ~3u
                                   : fstride;
        fill_bytes(patch + fstride, (int8_t)(-q.xo), kpair - fstride);
        fill_bytes(patch2 + fstride, (int8_t)(-q.xo), kpair - fstride);
        /* pairs in the requantized form with no partial word: tml_pair_w16 instead of tml_dense_pair */
        const int lean = q.w16 != NULL && q.w16_form != W16_SUMS && kpair % 4 == 0;
        rows.n = Kh;
        rows.bytes = Kw * C;
        rows.step = (size_t)p[2] * W * C;
        /* window origins in 32 bits when no coordinate can leave +-2^30 (every real op; else gather_patch's 64-bit
         * arithmetic for every window): a field is inside when 0 <= iy0 < hs and 0 <= ix0 <= ws */
        const int small = (uint64_t)Ho * (uint32_t)p[0] + (uint64_t)H + (uint64_t)(p[4] < 0 ? -(int64_t)p[4] : p[4]) <
                              (1u << 30) &&
                          (uint64_t)Wo * (uint32_t)p[1] + (uint64_t)W + (uint64_t)(p[5] < 0 ? -(int64_t)p[5] : p[5]) <
                              (1u << 30);
        const int64_t hs64 = (int64_t)H - (int64_t)(Kh - 1) * p[2];
        const int32_t hs = hs64 < 0 ? 0 : (int32_t)hs64, ws = (int32_t)W - (int32_t)Kw;
        if (lean && rows_ok && small && N == 1 && conv_padded(xd, H, W, C, Ho, Wo, Kh, Kw, Co, p, &q, patch, yd))
            return TML_OK;
        for (pix = 0; pix < npix; pix += 2) {
            int8_t *pp = patch;
            const int8_t *win[2] = {NULL, NULL};
            uint32_t k, inside = 0;
            if (p[3] == 1 && small) { /* dilation 1 across: a field inside the input is Kh runs of Kw * C bytes */
                uint32_t q2[3] = {pos[0], pos[1], pos[2]};
                for (k = 0; k < 2 && pix + k < npix; k++) {
                    const int32_t iy0 = (int32_t)q2[1] * p[0] - p[4], ix0 = (int32_t)q2[2] * p[1] - p[5];
                    if (iy0 >= 0 && ix0 >= 0 && iy0 < hs && ix0 <= ws) {
                        win[k] = xd + (((size_t)q2[0] * H + (size_t)iy0) * W + (size_t)ix0) * C;
                        inside++;
                    }
                    next_pixel(q2, Ho, Wo);
                }
                if (rows_ok && inside == 2) { /* both fields inside: their rows widened in place */
                    if (lean)
                        tml_pair_w16(win[0], win[1], fstride, Co, &q, yd + pix * Co, yd + (pix + 1) * Co, &rows);
                    else
                        tml_dense_pair(win[0], win[1], fstride, wd, Co, &q, yd + pix * Co, yd + (pix + 1) * Co, &rows);
                    pos[0] = q2[0];
                    pos[1] = q2[1];
                    pos[2] = q2[2];
                    continue;
                }
            }
            for (k = 0; k < 2 && pix + k < npix; k++, pp = patch2) {
                if (win[k] != NULL) /* inside: its rows copied (gather_patch's checks and 64-bit offsets skipped) */
                    copy_rows(pp, win[k], &rows);
                else
                    gather_patch(xd, pos[0], H, W, C, Kh, Kw, (int64_t)pos[1] * p[0] - p[4],
                                 (int64_t)pos[2] * p[1] - p[5], p, pp);
                next_pixel(pos, Ho, Wo);
            }
            if (k == 2 && lean)
                tml_pair_w16(patch, patch2, kpair, Co, &q, yd + pix * Co, yd + (pix + 1) * Co, NULL);
            else if (k == 2)
                tml_dense_pair(patch, patch2, kpair, wd, Co, &q, yd + pix * Co, yd + (pix + 1) * Co, NULL);
            else
                tml_dense_row(patch, fstride, wd, Co, &q, yd + pix * Co);
        }
        return TML_OK;
    }
#endif
    for (n = 0; n < N; n++)
        for (oy = 0; oy < Ho; oy++) {
            int64_t iy0 = (int64_t)oy * p[0] - p[4];
            uint32_t ky0, ky1;
            tml_tap_range(iy0, (uint32_t)p[2], Kh, H, &ky0, &ky1);
            for (ox = 0; ox < Wo; ox++) {
                int64_t ix0 = (int64_t)ox * p[1] - p[5];
                uint32_t kx0, kx1, ky, kx;
                int8_t *out = yd + (((size_t)n * Ho + oy) * Wo + ox) * Co;
                tml_tap_range(ix0, (uint32_t)p[3], Kw, W, &kx0, &kx1);
                if (patch_ok && !(Kh == 1 && Kw == 1)) {
                    /* Gather this pixel's receptive field once (padding positions get the input zero point, so
                     * they add (zp + in_off) * w = 0), then every output channel is one contiguous dot product. */
                    gather_patch(xd, n, H, W, C, Kh, Kw, iy0, ix0, p, patch);
                    for (oc = 0; oc < Co; oc += 4) {
                        int32_t acc[4] = {0, 0, 0, 0};
                        uint32_t j, nb = Co - oc < 4 ? Co - oc : 4;
                        const int8_t *wo = wd + (size_t)oc * fstride;
                        if (nb == 4)
                            tml_dot4(patch, wo, fstride, fstride, p[6], 0, acc);
                        else
                            for (j = 0; j < nb; j++)
                                acc[j] = tml_dot1(patch, wo + (size_t)j * fstride, fstride, p[6], 0);
                        for (j = 0; j < nb; j++) {
                            const uint32_t c = oc + j;
                            out[c] = requant(acc[j], (const uint8_t *)b.data + 4 * c,
                                             (const uint8_t *)mu.data + 4 * c, (const uint8_t *)sh.data + 4 * c,
                                             p[7], p[8], p[9]);
                        }
                    }
                    continue;
                }
                for (oc = 0; oc < Co; oc += 4) {
                    int32_t acc[4] = {0, 0, 0, 0};
                    uint32_t j, nb = Co - oc < 4 ? Co - oc : 4;
                    const int8_t *wo = wd + (size_t)oc * fstride;
                    for (ky = ky0; ky < ky1; ky++) {
                        uint32_t iy = (uint32_t)(iy0 + (int64_t)ky * p[2]);
                        const int8_t *xrow = xd + ((size_t)n * H + iy) * W * C;
                        const int8_t *wrow = wo + (size_t)ky * Kw * C;
                        if (kx0 >= kx1) {
                            break; /* the whole window row is in the padding (same for every ky) */
                        } else if (p[3] == 1) {
                            /* dilation 1: the valid taps of a filter row are contiguous in x and in w */
                            const int8_t *xp = xrow + (size_t)(ix0 + kx0) * C, *wp = wrow + (size_t)kx0 * C;
                            uint32_t len = (kx1 - kx0) * C;
                            if (nb == 4)
                                tml_dot4(xp, wp, fstride, len, p[6], 0, acc);
                            else
                                for (j = 0; j < nb; j++)
                                    acc[j] += tml_dot1(xp, wp + (size_t)j * fstride, len, p[6], 0);
                        } else {
                            for (kx = kx0; kx < kx1; kx++) {
                                const int8_t *xp = xrow + (size_t)(ix0 + (int64_t)kx * p[3]) * C;
                                const int8_t *wp = wrow + (size_t)kx * C;
                                if (nb == 4)
                                    tml_dot4(xp, wp, fstride, C, p[6], 0, acc);
                                else
                                    for (j = 0; j < nb; j++)
                                        acc[j] += tml_dot1(xp, wp + (size_t)j * fstride, C, p[6], 0);
                            }
                        }
                    }
                    for (j = 0; j < nb; j++) {
                        const uint32_t c = oc + j;
                        out[c] = requant(acc[j], (const uint8_t *)b.data + 4 * c, (const uint8_t *)mu.data + 4 * c,
                                         (const uint8_t *)sh.data + 4 * c, p[7], p[8], p[9]);
                    }
                }
            }
        }
    return TML_OK;
}
