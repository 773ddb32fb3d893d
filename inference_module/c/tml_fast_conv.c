/* Host CONV_2D and FULLY_CONNECTED (see tml_fast.c for the whole design): a dot product along the receptive field
 * with int16 x int16 pair products (PMADDWD on x86), blocks of 2 pixels x 4 channels in registers. */
#include "tml_fast.h"

/* ---- CONV_2D and FULLY_CONNECTED: dot products along the receptive field ---- */

/* Rows o0 .. o0 + n of the weights [Co][K] widened to int16 rows of Kp (zeros past K, and whole rows of zeros for
 * channels past Co). */
static void widen_weights(const int8_t *w, uint32_t o0, uint32_t n, uint32_t Co, uint32_t K, uint32_t Kp, int16_t *wb)
{
    uint32_t o, k;
    for (o = 0; o < n; o++) {
        const int8_t *row = w + (size_t)(o0 + o) * K;
        int16_t *dst = wb + (size_t)o * Kp;
        if (o0 + o >= Co) {
            memset(dst, 0, (size_t)Kp * sizeof *dst);
            continue;
        }
        for (k = 0; k < K; k++)
            dst[k] = row[k];
        for (; k < Kp; k++)
            dst[k] = 0;
    }
}

/* dst[i] = src[i] + xo, i < n (|x + xo| <= 255: an int16) */
static inline void widen_run(int16_t *dst, const int8_t *src, uint32_t n, int16_t xo)
{
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const v16i16 w = widen16(ld16i8(src + i)) + xo;
        memcpy(dst + i, &w, sizeof w);
    }
    if (i + 8 <= n) {
        v8i8 v;
        v8i16 w;
        memcpy(&v, src + i, sizeof v);
        w = __builtin_convertvector(v, v8i16) + xo;
        memcpy(dst + i, &w, sizeof w);
        i += 8;
    }
    for (; i < n; i++)
        dst[i] = (int16_t)(src[i] + xo);
}

static inline void fill_zeros(int16_t *dst, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        dst[i] = 0;
}

/* The receptive field of the output pixel whose window starts at (iy0, ix0) as one row [Kh][Kw][C] of x + xo,
 * zeros past K and for taps in the padding (which TFLM skips). */
static void gather16(const int8_t *x, uint32_t H, uint32_t W, uint32_t C, uint32_t Kh, uint32_t Kw, const int32_t *p,
                     int64_t iy0, int64_t ix0, uint32_t K, uint32_t Kp, int16_t *dst)
{
    const int16_t xo = (int16_t)p[6];
    uint32_t ky, kx;
    int16_t *d = dst;
    for (ky = 0; ky < Kh; ky++) {
        const int64_t iy = iy0 + (int64_t)ky * p[2];
        if (p[3] == 1 && iy >= 0 && iy < H && ix0 >= 0 && ix0 + Kw <= W) { /* a whole row of taps inside */
            widen_run(d, x + ((size_t)iy * W + (size_t)ix0) * C, Kw * C, xo);
            d += Kw * C;
            continue;
        }
        for (kx = 0; kx < Kw; kx++, d += C) {
            const int64_t ix = ix0 + (int64_t)kx * p[3];
            if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                fill_zeros(d, C);
            else
                widen_run(d, x + ((size_t)iy * W + (size_t)ix) * C, C, xo);
        }
    }
    fill_zeros(dst + K, Kp - K);
}

/* The 8 lane sums of a[0..4) and b[0..4) as [a0 a1 a2 a3 b0 b1 b2 b3]. */
VINLINE v8i32 reduce_2x4(v8i32 a0, v8i32 a1, v8i32 a2, v8i32 a3, v8i32 b0, v8i32 b1, v8i32 b2, v8i32 b3)
{
#if defined(__AVX2__) && defined(HAVE_SHUFFLEVECTOR)
    /* horizontal adds within 128-bit halves: [a0 a1 a2 a3 | a0 a1 a2 a3] partial sums of the low and high halves */
    const v8i32 ha = __builtin_ia32_phaddd256(__builtin_ia32_phaddd256(a0, a1), __builtin_ia32_phaddd256(a2, a3));
    const v8i32 hb = __builtin_ia32_phaddd256(__builtin_ia32_phaddd256(b0, b1), __builtin_ia32_phaddd256(b2, b3));
    return __builtin_shufflevector(ha, hb, 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(ha, hb, 4, 5, 6, 7, 12, 13, 14, 15);
#else
    const v8i32 *in[8];
    v8i32 r;
    int i, j;
    in[0] = &a0; in[1] = &a1; in[2] = &a2; in[3] = &a3;
    in[4] = &b0; in[5] = &b1; in[6] = &b2; in[7] = &b3;
    for (i = 0; i < 8; i++) {
        int32_t s = 0;
        for (j = 0; j < 8; j++)
            s += (*in[i])[j];
        r[i] = s;
    }
    return r;
#endif
}

/* [xa . w_0, .., xa . w_3, xb . w_4, .., xb . w_7] over Kp (a multiple of 16), w_c = w + c stride: two pixels
 * against the same 4 weight rows (pair: w_4+c = w_c), or one pixel against 8. The rows are int16 or int8 (w8), read
 * in place; pair and w8 are compile-time choices (always inlined with constants). */
VINLINE v8i32 dot_2x4(const int16_t *xa, const int16_t *xb, const void *w, size_t stride, int w8, int pair,
                      uint32_t Kp)
{
    v8i32 a[4] = {{0}}, b[4] = {{0}}; /* fully unrolled: the 8 accumulators stay in registers */
    const int16_t *const end = xa + Kp;
    const char *wp = (const char *)w;
    const size_t bytes = w8 ? 1 : 2;
    int c;
    for (; xa < end; xa += 16, xb += 16, wp += 16 * bytes) {
        v16i16 va, vb, u;
        memcpy(&va, xa, sizeof va);
        memcpy(&vb, xb, sizeof vb);
        for (c = 0; c < 8; c++) {
            const char *row = wp + (size_t)(pair ? c % 4 : c) * stride * bytes;
            if (w8)
                u = widen16(ld16i8((const int8_t *)row));
            else
                memcpy(&u, row, sizeof u);
            if (c < 4)
                a[c] += madd16(va, u);
            else
                b[c - 4] += madd16(vb, u);
        }
    }
    return reduce_2x4(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]);
}

/* Output channels o0 .. o0 + n (a multiple of the block) of pixels pi and pb (inputs xb[0], xb[1]), or of the one
 * pixel (single, xb[0]): dot products (weights read in place, or from their widened chunk wb), requantized, stored.
 * Always inlined with in_place and single constant. */
VINLINE void channel_blocks(const conv_operands *c, const requant_params *q, int16_t xb[2][FAST_KMAX],
                            int16_t *wb, uint32_t o0, uint32_t n, uint32_t pi, uint32_t pb, int in_place, int single)
{
    const uint32_t Co = c->wd[0], K = c->wd[1] * c->wd[2] * c->xd[3], Kp = (K + 15u) & ~15u, blk = single ? 8 : 4;
    const int16_t *x1 = xb[single ? 0 : 1];
    uint32_t o, i;
    for (o = o0; o < o0 + n; o += blk) {
        const uint32_t nc = Co - o < blk ? Co - o : blk;
        v8i32 s;
        v8i8 y8;
        if (in_place && nc < blk) { /* the last rows, short of a block: widened, zero rows after them */
            widen_weights(c->w, o, blk, Co, K, Kp, wb);
            s = dot_2x4(xb[0], x1, wb, Kp, 0, !single, Kp);
        } else if (in_place) {
            s = dot_2x4(xb[0], x1, c->w + (size_t)o * K, K, 1, !single, Kp);
        } else {
            s = dot_2x4(xb[0], x1, wb + (size_t)(o - o0) * Kp, Kp, 0, !single, Kp);
        }
        y8 = narrow8(requant8(s, q, single ? o : 2 * o));
        if (single) {
            if (nc == 8)
                memcpy(c->y + o, &y8, 8);
            else
                for (i = 0; i < nc; i++)
                    c->y[o + i] = y8[i];
        } else {
            int8_t *ya = c->y + (size_t)pi * Co + o, *yb = c->y + (size_t)pb * Co + o;
            if (nc == 4) { /* pixel b first: an odd last pixel is both, and its lanes are the same */
                memcpy(yb, (const int8_t *)&y8 + 4, 4);
                memcpy(ya, &y8, 4);
            } else {
                for (i = 0; i < nc; i++) {
                    yb[i] = y8[4 + i];
                    ya[i] = y8[i];
                }
            }
        }
    }
}

/* y = requant(conv) for a CONV_2D whose operands are read (c), or a FULLY_CONNECTED seen as a 1x1 CONV_2D over
 * rows. Pixels go two at a time against 4 channels (the last odd pixel paired with itself), or, for a single pixel,
 * one against 8. The weights are widened to int16 once per op in chunks of FAST_WBUF, or read in place when K is a
 * multiple of 16 and few pixels share them (widening would cost more than it saves). */
static void conv_gemm(const conv_operands *c, int one_by_one)
{
    const int32_t *p = c->p;
    const uint32_t H = c->xd[1], W = c->xd[2], C = c->xd[3], Co = c->wd[0], Kh = c->wd[1], Kw = c->wd[2];
    const uint32_t Wo = c->yd[2], npix = c->yd[1] * Wo, K = Kh * Kw * C, Kp = (K + 15u) & ~15u;
    /* one pixel against 8 channels while 8 widened rows fit the chunk buffer (else paired with itself, 4 channels) */
    const int single = npix == 1 && 8u * Kp <= FAST_WBUF, in_place = K == Kp && npix <= 8;
    const uint32_t blk = single ? 8 : 4, CoB = (Co + blk - 1) / blk * blk;
    requant_params q;
    int16_t wb[FAST_WBUF];
    int16_t xb[2][FAST_KMAX];
    uint32_t chunk = in_place ? CoB : FAST_WBUF / Kp / blk * blk, o0, pi, i; /* >= blk */
    requant_prepare(&q, Co, c->bias, c->mult, c->shift, c->per_channel, p[7], p[8], p[9], !single);
    if (chunk > CoB)
        chunk = CoB;
    for (o0 = 0; o0 < CoB; o0 += chunk) {
        const uint32_t n = CoB - o0 < chunk ? CoB - o0 : chunk;
        if (!in_place)
            widen_weights(c->w, o0, n, Co, K, Kp, wb);
        for (pi = 0; pi < npix; pi += 2) {
            const uint32_t pb = pi + 1 < npix ? pi + 1 : pi; /* an odd last pixel pairs with itself */
            for (i = 0; i < (uint32_t)(2 - single); i++) {
                const uint32_t pix = i ? pb : pi, oy = pix / Wo, ox = pix % Wo;
                if (one_by_one) {
                    widen_run(xb[i], c->x + ((size_t)oy * p[0] * W + (size_t)ox * p[1]) * C, K, (int16_t)p[6]);
                    fill_zeros(xb[i] + K, Kp - K);
                } else {
                    gather16(c->x, H, W, C, Kh, Kw, p, (int64_t)oy * p[0] - p[4], (int64_t)ox * p[1] - p[5], K, Kp,
                             xb[i]);
                }
            }
            if (single && in_place)
                channel_blocks(c, &q, xb, wb, o0, n, pi, pb, 1, 1);
            else if (single)
                channel_blocks(c, &q, xb, wb, o0, n, pi, pb, 0, 1);
            else if (in_place)
                channel_blocks(c, &q, xb, wb, o0, n, pi, pb, 1, 0);
            else
                channel_blocks(c, &q, xb, wb, o0, n, pi, pb, 0, 0);
        }
    }
}

int tml_fast_conv_2d(tml_model *m, const tml_op *op)
{
    conv_operands c;
    const int32_t *p = c.p;
    uint32_t H, W, Ho, Wo, Kp;
    int one_by_one;
    if (!read_conv(m, op, &c))
        return 0;
    H = c.xd[1]; W = c.xd[2];
    Ho = c.yd[1]; Wo = c.yd[2];
    Kp = (c.wd[1] * c.wd[2] * c.xd[3] + 15u) & ~15u;
    one_by_one = c.wd[1] == 1 && c.wd[2] == 1 && p[4] == 0 && p[5] == 0 &&
                 (uint64_t)(Ho - 1) * (uint32_t)p[0] < H && (uint64_t)(Wo - 1) * (uint32_t)p[1] < W;
    /* declined: batches, too many channels or too long a receptive field for the stack buffers, an input offset
     * outside int8's zero points (x + xo must fit an int16) */
    if (c.xd[0] != 1 || c.wd[0] > FAST_MAX_CO || Kp > FAST_KMAX || p[6] < -127 || p[6] > 128)
        return 0;
    conv_gemm(&c, one_by_one);
    return 1;
}

/* FULLY_CONNECTED (params: in_off, w_off, out_off, act_min, act_max) as a 1x1 CONV_2D over its rows */
int tml_fast_fully_connected(tml_model *m, const tml_op *op)
{
    conv_operands c;
    uint32_t Co, Ci, rows;
    if (!read_conv(m, op, &c))
        return 0;
    Co = c.wd[0];
    Ci = c.wd[1];
    if (c.wrank != 2 || Ci == 0 || c.p[1] != 0 || Co > FAST_MAX_CO || ((Ci + 15u) & ~15u) > FAST_KMAX ||
        c.p[0] < -127 || c.p[0] > 128) /* declined: weight offsets, as the conv */
        return 0;
    rows = c.x_elems / Ci;
    c.xd[0] = 1; c.xd[1] = rows; c.xd[2] = 1; c.xd[3] = Ci;
    c.yd[0] = 1; c.yd[1] = rows; c.yd[2] = 1; c.yd[3] = Co;
    c.wd[0] = Co; c.wd[1] = 1; c.wd[2] = 1; c.wd[3] = Ci;
    c.p[6] = c.p[0];
    c.p[7] = c.p[2];
    c.p[8] = c.p[3];
    c.p[9] = c.p[4];
    c.p[0] = c.p[1] = 1; /* strides */
    conv_gemm(&c, 1);
    return 1;
}
