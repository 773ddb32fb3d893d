/* Host kernels (built with -DTML_FAST: the host library, inference_module/c/Makefile): CONV_2D, DEPTHWISE_CONV_2D,
 * FULLY_CONNECTED and ADD in GCC/Clang generic vectors of 256 bits, which -O3 lowers to whatever SIMD the host has (AVX2
 * or AVX-512 on x86-64, NEON on AArch64, two halves where vectors are narrower). What generic vectors cannot say is
 * an x86 builtin where the target macro says it exists, beside a lane loop with the same results: int16 x int16 pair
 * products summed into int32 lanes (PMADDWD, 16 multiply-adds in one instruction), 32 x 32 -> 64 lane products
 * (PMULDQ), horizontal adds, int8 widening and saturating packs. The reference kernels (tml_ops.c, tml_conv.c,
 * tml_depthwise.c, tml_dense.c) stay beside these and take every op these decline (tml_fast_run returns 0); both give
 * TFLM's results bit for bit, checked by the same tests (tests/c/test_c_runtime.py runs the models through both).
 *  - CONV_2D is a dot product along the receptive field (K, padded with zeros to a multiple of 16): each pixel's
 *    receptive field gathered once as int16 x + xo (padding taps, which TFLM skips, and the pad past K are zeros;
 *    |x + xo| <= 255, so pair sums of products with int8 weights are exact), the weights widened to int16 rows once
 *    per op in chunks of channels, or read in place as int8 when few pixels share them; a block of 2 pixels x 4
 *    channels (1 pixel x 8 for a single pixel) keeps 8 accumulators of 8 lanes in registers, and their lane sums fold
 *    into one vector of 8 outputs, requantized at once. FULLY_CONNECTED is the same over its rows.
 *  - DEPTHWISE_CONV_2D keeps 8 channels per vector and takes the taps two at a time: both taps' inputs interleaved
 *    byte-wise and widened, against weights interleaved the same way once per op, so one pair product per lane is
 *    two taps of one channel. The input offset is folded into the bias (sum (x + xo) w = sum x w + xo sum w, int32
 *    wrap-around like TFLM's accumulator) and taps in the padding read a row of zero points (x + xo = 0), so every
 *    window has all its taps.
 *  - Requantization runs 8 outputs at once, branch-free, each channel's shifts and RDBPOT mask prepared once; ADD
 *    without broadcasting runs its three MBQMs the same way. */
#include "tml_internal.h"

/* 256-bit vectors passed between this file's static (always inlined) functions: no ABI is crossed, whatever SIMD
 * the target has */
#if defined(__clang__)
#if defined(__has_warning)
#if __has_warning("-Wpsabi")
#pragma clang diagnostic ignored "-Wpsabi"
#endif
#endif
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
/* the helpers that take or return vectors: always inlined, so no vector crosses a call on any target */
#define VINLINE static inline __attribute__((always_inline))

#define FAST_MAX_CO 1024  /* channels whose requantization parameters are prepared on the stack (41 KB, doubled) */
#define FAST_KMAX 4096    /* longest receptive field (padded to 16): two pixels' widened inputs, 16 KB */
#define FAST_WBUF 16384   /* widened weights of a chunk of output channels (32 KB): 4 rows of FAST_KMAX at least */
#define DW_MAX_TAPS 64    /* taps of a depthwise window */
#define DW_WBUF 16384     /* interleaved depthwise weights (32 KB): tap pairs x 2 x channels */

typedef int32_t v8i32 __attribute__((vector_size(32)));
typedef uint32_t v8u32 __attribute__((vector_size(32)));
typedef int64_t v8i64 __attribute__((vector_size(64)));
typedef uint64_t v8u64 __attribute__((vector_size(64)));
typedef int16_t v16i16 __attribute__((vector_size(32)));
typedef int16_t v8i16 __attribute__((vector_size(16)));
typedef int8_t v16i8 __attribute__((vector_size(16)));
typedef int8_t v8i8 __attribute__((vector_size(8)));

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define HAVE_SHUFFLEVECTOR 1
#endif
#endif

/* r[i] = a[2i] b[2i] + a[2i+1] b[2i+1]: exact in int32 for the int8-range operands used here. */
VINLINE v8i32 madd16(v16i16 a, v16i16 b)
{
#if defined(__AVX2__)
    return (v8i32)__builtin_ia32_pmaddwd256(a, b);
#else
    v8i32 r;
    int i;
    for (i = 0; i < 8; i++)
        r[i] = a[2 * i] * b[2 * i] + a[2 * i + 1] * b[2 * i + 1];
    return r;
#endif
}

VINLINE v8i32 ld8(const int32_t *p)
{
    v8i32 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* One channel's requantization, prepared once per op: y = clamp(RDBPOT(SRDHM((acc + bias) << left, m), right)
 * + off) exactly as tml_mbqm, with RDBPOT's mask precomputed. Laid out for 8-lane loads at slot(c): channel c
 * itself (depthwise: 8 channels of a pixel), or, doubled, channels 4i..4i+3 twice at 8i (CONV_2D: 4 channels of
 * two pixels). */
#define QN (2 * FAST_MAX_CO + 32)
typedef struct {
    int32_t bias[QN], mult[QN], left[QN], right[QN], mask[QN]; /* past the last channel: zeros */
    int32_t off, lo, hi;
    int doubled;
} requant_params;

static inline uint32_t slot(const requant_params *q, uint32_t c) { return q->doubled ? 2 * c - c % 4 : c; }

static void requant_prepare(requant_params *q, uint32_t n, const uint8_t *bias, const uint8_t *mult,
                            const uint8_t *shift, int per_channel, int32_t off, int32_t lo, int32_t hi, int doubled)
{
    uint32_t c, copy;
    q->doubled = doubled;
    for (c = 0; c < (n + 15u) / 16u * 16u; c++) {
        const uint32_t cm = per_channel ? c : 0;
        const int32_t s = c < n ? tml_ld32(shift + 4 * cm) : 0;
        const uint32_t j = slot(q, c);
        for (copy = 0; copy <= (uint32_t)doubled; copy++) {
            q->bias[j + 4 * copy] = c < n ? tml_ld32(bias + 4 * c) : 0;
            q->mult[j + 4 * copy] = c < n ? tml_ld32(mult + 4 * cm) : 0;
            q->left[j + 4 * copy] = s > 0 ? s : 0;
            q->right[j + 4 * copy] = s > 0 ? 0 : -s;
            q->mask[j + 4 * copy] = (int32_t)(((uint32_t)1 << q->right[j + 4 * copy]) - 1u);
        }
    }
    q->off = off;
    q->lo = lo;
    q->hi = hi;
}

/* channel c's bias += d (int32 wrap-around), in both copies when doubled */
static inline void bias_add(requant_params *q, uint32_t c, int32_t d)
{
    const uint32_t j = slot(q, c);
    q->bias[j] = (int32_t)((uint32_t)q->bias[j] + (uint32_t)d);
    if (q->doubled)
        q->bias[j + 4] = q->bias[j];
}

/* SRDHM with m >= 0 (tml_mbqm) per lane: bits 31..62 of x m + 2^30. AVX2 has no 64-bit lane multiply (GCC builds
 * one from three 32-bit ones); PMULDQ takes the even lanes' 32 x 32 -> 64 products, and the odd lanes' after a
 * 64-bit shift, each result then shifted into its own lane's half. */
VINLINE v8i32 srdhm8(v8i32 xs, v8i32 mult)
{
#if defined(__AVX2__)
    typedef long long v4i64 __attribute__((vector_size(32)));
    typedef unsigned long long v4u64 __attribute__((vector_size(32)));
    const v4i64 round = {1 << 30, 1 << 30, 1 << 30, 1 << 30};
    const v4i64 even = (v4i64)__builtin_ia32_pmuldq256(xs, mult) + round;
    const v4i64 odd = (v4i64)__builtin_ia32_pmuldq256((v8i32)((v4u64)xs >> 32), (v8i32)((v4u64)mult >> 32)) + round;
    const v8i32 lo_half = {-1, 0, -1, 0, -1, 0, -1, 0};
    return ((v8i32)((v4u64)even >> 31) & lo_half) | ((v8i32)((v4u64)odd << 1) & ~lo_half);
#else
    const v8i64 prod = __builtin_convertvector(xs, v8i64) * __builtin_convertvector(mult, v8i64) + ((int64_t)1 << 30);
    return (v8i32)__builtin_convertvector((v8u64)prod >> 31, v8u32);
#endif
}

/* MBQM (tml_mbqm) per lane: RDBPOT(SRDHM(x << left, mult), right) with RDBPOT's mask = 2^right - 1; the shifts
 * are per-lane counts and the rounding a compare as a lane mask (-1 true), so no branch. */
VINLINE v8i32 mbqm8(v8i32 x, v8i32 mult, v8i32 left, v8i32 right, v8i32 mask)
{
    const v8i32 v = srdhm8(x << left, mult); /* the shift wraps like TFLM's */
    const v8i32 thr = (mask >> 1) - (v < 0);  /* RDBPOT: round half away from zero */
    return (v >> right) - ((v & mask) > thr);
}

VINLINE v8i32 clamp8(v8i32 r, int32_t lo, int32_t hi)
{
    const v8i32 vlo = lo - (v8i32){0}, vhi = hi - (v8i32){0};
    v8i32 cmp = r < vlo;
    r = (r & ~cmp) | (vlo & cmp);
    cmp = r > vhi;
    return (r & ~cmp) | (vhi & cmp);
}

/* The requantization of 8 sums with the parameters at slot i, clamped to [lo, hi]. */
VINLINE v8i32 requant8(v8i32 sum, const requant_params *q, uint32_t i)
{
    const v8i32 acc = (v8i32)((v8u32)sum + (v8u32)ld8(q->bias + i)); /* wraps like TFLM's int32 add */
    return clamp8(mbqm8(acc, ld8(q->mult + i), ld8(q->left + i), ld8(q->right + i), ld8(q->mask + i)) + q->off,
                  q->lo, q->hi);
}

/* int32 lanes already in int8's range -> bytes (x86: two saturating packs, which cannot saturate here) */
VINLINE v8i8 narrow8(v8i32 r)
{
#if defined(__SSE2__) && defined(HAVE_SHUFFLEVECTOR)
    const v8i16 h = (v8i16)__builtin_ia32_packssdw128(__builtin_shufflevector(r, r, 0, 1, 2, 3),
                                                     __builtin_shufflevector(r, r, 4, 5, 6, 7));
    const v16i8 b = (v16i8)__builtin_ia32_packsswb128(h, h);
    return __builtin_shufflevector(b, b, 0, 1, 2, 3, 4, 5, 6, 7);
#else
    return __builtin_convertvector(__builtin_convertvector(r, v8i16), v8i8);
#endif
}

VINLINE v16i8 ld16i8(const int8_t *p)
{
    v16i8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* int8 -> int16 lanes: GCC 12 lowers __builtin_convertvector here to two 128-bit halves and an insert (Clang to one
 * VPMOVSXBW, and it has no such builtin) */
VINLINE v16i16 widen16(v16i8 v)
{
#if defined(__AVX2__) && !defined(__clang__)
    typedef char v16c __attribute__((vector_size(16)));
    return (v16i16)__builtin_ia32_pmovsxbw256((v16c)v);
#else
    return __builtin_convertvector(v, v16i16);
#endif
}

/* The operands of a CONV_2D or DEPTHWISE_CONV_2D record (x, weights, bias, multipliers, shifts -> y) and its
 * params. 0 when the weights or the requantization tensors are not in CONST (then the op is declined). */
typedef struct {
    uint32_t xd[4], yd[4], wd[4];
    int32_t p[TML_MAX_PARAMS];
    const int8_t *x, *w;
    const uint8_t *bias, *mult, *shift;
    int8_t *y;
    uint32_t x_elems, wrank;
    int per_channel; /* one multiplier and shift per output channel, or one for all */
} conv_operands;

static int read_conv(const tml_model *m, const tml_op *op, conv_operands *c)
{
    tml_tensor t[6];
    uint32_t i;
    for (i = 0; i < 6; i++)
        tml_tensor_read(m, i < 5 ? tml_op_in(op, i) : tml_op_out(op), &t[i]);
    for (i = 1; i < 5; i++)
        if (t[i].storage != TML_CONST)
            return 0;
    tml_dims4(&t[0], c->xd);
    tml_dims4(&t[5], c->yd);
    memcpy(c->wd, t[1].dims, sizeof c->wd);
    for (i = 0; i < op->n_params && i < TML_MAX_PARAMS; i++)
        c->p[i] = tml_op_param(op, i);
    c->x = (const int8_t *)(t[0].storage == TML_ARENA ? m->arena : m->consts) + t[0].offset;
    c->w = (const int8_t *)(m->consts + t[1].offset);
    c->bias = m->consts + t[2].offset;
    c->mult = m->consts + t[3].offset;
    c->shift = m->consts + t[4].offset;
    c->y = (int8_t *)(m->arena + t[5].offset);
    c->x_elems = tml_elements(&t[0]);
    c->wrank = t[1].rank;
    c->per_channel = tml_elements(&t[3]) > 1;
    return 1;
}

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

static int conv_2d(tml_model *m, const tml_op *op)
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
static int fully_connected(tml_model *m, const tml_op *op)
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

/* ---- DEPTHWISE_CONV_2D: 8 channels per vector, two taps per pair product ---- */

/* x0[i], x1[i] interleaved: [x0[0], x1[0], x0[1], x1[1], ...] for i in [lo, lo + 8) */
VINLINE v16i8 zip8(v16i8 x0, v16i8 x1, int lo)
{
#if defined(HAVE_SHUFFLEVECTOR)
    return lo ? __builtin_shufflevector(x0, x1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
              : __builtin_shufflevector(x0, x1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
#else
    v16i8 r;
    int i;
    for (i = 0; i < 8; i++) {
        r[2 * i] = x0[lo + i];
        r[2 * i + 1] = x1[lo + i];
    }
    return r;
#endif
}

/* Sums over the window's tap pairs of nb (1 or 2, a constant) blocks of 8 channels at c: the pair's inputs (x_t0,
 * x_t1) byte-interleaved and widened, times its weights interleaved the same way (wp: 16 int16 per pair per block,
 * blocks adjacent, pairs wstride apart). */
VINLINE void dw_blocks(const int8_t *const *tp, uint32_t pairs, const int16_t *wp, size_t wstride, uint32_t c,
                       int nb, v8i32 acc[2])
{
    uint32_t j;
    int b;
    acc[0] = acc[1] = (v8i32){0};
    for (j = 0; j < pairs; j++, wp += wstride) {
        v16i8 x0, x1;
        v16i16 w;
        if (nb == 1) { /* 8-byte loads zipped as they are (a 16-byte vector filled by halves would go through the
                        * stack, and its load would wait for both stores) */
            v8i8 h0, h1;
            memcpy(&h0, tp[2 * j] + c, sizeof h0);
            memcpy(&h1, tp[2 * j + 1] + c, sizeof h1);
#if defined(HAVE_SHUFFLEVECTOR)
            x0 = __builtin_shufflevector(h0, h1, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
#else
            for (b = 0; b < 8; b++) {
                x0[2 * b] = h0[b];
                x0[2 * b + 1] = h1[b];
            }
#endif
            memcpy(&w, wp, sizeof w);
            acc[0] += madd16(widen16(x0), w);
            continue;
        }
        memcpy(&x0, tp[2 * j] + c, sizeof x0);
        memcpy(&x1, tp[2 * j + 1] + c, sizeof x1);
        for (b = 0; b < 2; b++) {
            memcpy(&w, wp + 16 * b, sizeof w);
            acc[b] += madd16(widen16(zip8(x0, x1, 8 * b)), w);
        }
    }
}

static int depthwise_conv_2d(tml_model *m, const tml_op *op)
{
    conv_operands cv;
    const int32_t *p = cv.p;
    requant_params q;
    int16_t wp[DW_WBUF]; /* [tap pair][channel (C8)][2] */
    int8_t zrow[FAST_MAX_CO];
    const int8_t *tp[DW_MAX_TAPS + 1];
    ptrdiff_t off[DW_MAX_TAPS];
    uint32_t H, W, C, C8, Kh, Kw, Ho, Wo, T, pairs, oy, ox, t, c;
    if (!read_conv(m, op, &cv))
        return 0;
    H = cv.xd[1]; W = cv.xd[2]; C = cv.xd[3];
    Kh = cv.wd[1]; Kw = cv.wd[2];
    Ho = cv.yd[1]; Wo = cv.yd[2];
    T = Kh * Kw;
    /* declined: batches, depth multiplier > 1, too many channels or taps, a zero point outside int8 */
    pairs = (T + 1) / 2;
    C8 = C & ~7u;
    if (cv.xd[0] != 1 || p[10] != 1 || C > FAST_MAX_CO || T > DW_MAX_TAPS || (size_t)2 * pairs * C8 > DW_WBUF ||
        p[6] < -127 || p[6] > 128)
        return 0;
    requant_prepare(&q, C, cv.bias, cv.mult, cv.shift, cv.per_channel, p[7], p[8], p[9], 0);
    for (c = 0; c < C; c++) { /* the input offset folded into the bias: every window has all T taps */
        int32_t wsum = 0;
        for (t = 0; t < T; t++)
            wsum += cv.w[(size_t)t * C + c];
        bias_add(&q, c, (int32_t)((uint32_t)p[6] * (uint32_t)wsum));
    }
    for (t = 0; t < 2 * pairs; t++)
        for (c = 0; c < C8; c++)
            wp[((size_t)(t / 2) * C8 + c) * 2 + t % 2] = (int16_t)(t < T ? cv.w[(size_t)t * C + c] : 0);
    memset(zrow, (int8_t)(-p[6]), C);
    for (t = 0; t < T; t++)
        off[t] = ((ptrdiff_t)(t / Kw) * p[2] * (ptrdiff_t)W + (ptrdiff_t)(t % Kw) * p[3]) * (ptrdiff_t)C;
    for (oy = 0; oy < Ho; oy++) {
        const int64_t iy0 = (int64_t)oy * p[0] - p[4];
        const int rows_in = iy0 >= 0 && iy0 + (int64_t)(Kh - 1) * p[2] < H;
        for (ox = 0; ox < Wo; ox++) {
            const int64_t ix0 = (int64_t)ox * p[1] - p[5];
            int8_t *y = cv.y + ((size_t)oy * Wo + ox) * C;
            if (rows_in && ix0 >= 0 && ix0 + (int64_t)(Kw - 1) * p[3] < W) {
                const int8_t *base = cv.x + ((size_t)iy0 * W + (size_t)ix0) * C;
                for (t = 0; t < T; t++)
                    tp[t] = base + off[t];
            } else {
                for (t = 0; t < T; t++) {
                    const int64_t iy = iy0 + (int64_t)(t / Kw) * p[2], ix = ix0 + (int64_t)(t % Kw) * p[3];
                    tp[t] = iy < 0 || iy >= H || ix < 0 || ix >= W ? zrow
                                                                    : cv.x + ((size_t)iy * W + (size_t)ix) * C;
                }
            }
            tp[T] = tp[T - 1]; /* an odd window's last pair: weight 0 */
            for (c = 0; c + 16 <= C8; c += 16) {
                v8i32 s[2];
                v8i8 y8[2];
                dw_blocks(tp, pairs, wp + (size_t)c * 2, (size_t)C8 * 2, c, 2, s);
                y8[0] = narrow8(requant8(s[0], &q, c));
                y8[1] = narrow8(requant8(s[1], &q, c + 8));
                memcpy(y + c, y8, 16);
            }
            if (c < C8) {
                v8i32 s[2];
                v8i8 y8;
                dw_blocks(tp, pairs, wp + (size_t)c * 2, (size_t)C8 * 2, c, 1, s);
                y8 = narrow8(requant8(s[0], &q, c));
                memcpy(y + c, &y8, sizeof y8);
                c += 8;
            }
            if (c < C) { /* the last C % 8 channels one by one */
                v8i32 s = {0};
                v8i8 y8;
                uint32_t i;
                for (i = 0; c + i < C; i++) {
                    int32_t a = 0;
                    for (t = 0; t < T; t++)
                        a += tp[t][c + i] * cv.w[(size_t)t * C + c + i];
                    s[i] = a;
                }
                y8 = narrow8(requant8(s, &q, c));
                memcpy(y + c, &y8, C - c);
            }
        }
    }
    return 1;
}

/* ---- ADD without broadcasting (residual connections), 8 elements per step ---- */

/* One MBQM's multiplier and shift (s <= 30) for all lanes */
typedef struct {
    v8i32 mult, left, right, mask;
} mbqm_lanes;

static void mbqm_lanes_prepare(mbqm_lanes *f, int32_t m, int32_t s)
{
    const int32_t left = s > 0 ? s : 0, right = s > 0 ? 0 : -s;
    f->mult = m - (v8i32){0};
    f->left = left - (v8i32){0};
    f->right = right - (v8i32){0};
    f->mask = (int32_t)(((uint32_t)1 << right) - 1u) - (v8i32){0};
}

VINLINE v8i32 mbqm_apply(v8i32 x, const mbqm_lanes *f) { return mbqm8(x, f->mult, f->left, f->right, f->mask); }

/* y = clamp(MBQM(MBQM((a + a_off) 2^lsh, a) + MBQM((b + b_off) 2^lsh, b), out) + out_off) for 8 elements */
VINLINE v8i8 add8(v8i8 a, v8i8 b, const int32_t *p, const mbqm_lanes f[3])
{
    const v8i32 xa = (__builtin_convertvector(a, v8i32) + p[0]) << p[6];
    const v8i32 xb = (__builtin_convertvector(b, v8i32) + p[3]) << p[6];
    const v8i32 sum = (v8i32)((v8u32)mbqm_apply(xa, &f[0]) + (v8u32)mbqm_apply(xb, &f[1]));
    return narrow8(clamp8(mbqm_apply(sum, &f[2]) + p[9], p[10], p[11]));
}

static int add(tml_model *m, const tml_op *op)
{
    tml_tensor t[3];
    uint32_t da[4], db[4], dy[4], n, i;
    int32_t p[12];
    const int8_t *a, *b;
    int8_t *y;
    mbqm_lanes f[3];
    tml_tensor_read(m, tml_op_in(op, 0), &t[0]);
    tml_tensor_read(m, tml_op_in(op, 1), &t[1]);
    tml_tensor_read(m, tml_op_out(op), &t[2]);
    tml_dims4(&t[0], da);
    tml_dims4(&t[1], db);
    tml_dims4(&t[2], dy);
    /* declined: broadcasting, a left shift that could overflow int32 ((x + off) 2^lsh, |x + off| <= 255) */
    if (memcmp(da, dy, sizeof da) || memcmp(db, dy, sizeof db) || op->n_params < 12)
        return 0;
    for (i = 0; i < 12; i++)
        p[i] = tml_op_param(op, i);
    if (p[6] < 0 || p[6] > 22 || p[0] < -128 || p[0] > 128 || p[3] < -128 || p[3] > 128)
        return 0;
    a = (const int8_t *)(t[0].storage == TML_ARENA ? m->arena : m->consts) + t[0].offset;
    b = (const int8_t *)(t[1].storage == TML_ARENA ? m->arena : m->consts) + t[1].offset;
    y = (int8_t *)(m->arena + t[2].offset);
    n = dy[0] * dy[1] * dy[2] * dy[3];
    mbqm_lanes_prepare(&f[0], p[1], p[2]);
    mbqm_lanes_prepare(&f[1], p[4], p[5]);
    mbqm_lanes_prepare(&f[2], p[7], p[8]);
    for (i = 0; i + 8 <= n; i += 8) {
        v8i8 va, vb, vy;
        memcpy(&va, a + i, sizeof va);
        memcpy(&vb, b + i, sizeof vb);
        vy = add8(va, vb, p, f);
        memcpy(y + i, &vy, sizeof vy);
    }
    if (i < n) { /* the last n % 8 elements */
        v8i8 va = {0}, vb = {0}, vy;
        memcpy(&va, a + i, n - i);
        memcpy(&vb, b + i, n - i);
        vy = add8(va, vb, p, f);
        memcpy(y + i, &vy, n - i);
    }
    return 1;
}

/* How many ops these kernels ran since load or the last reset: lets a test see the hook in tml_run_op is there
   without timing anything. */
uint32_t tml_fast_ops_run;

int tml_fast_run(tml_model *m, const tml_op *op)
{
    int took = 0;
    switch (op->opcode) {
    case OP_CONV_2D: took = conv_2d(m, op); break;
    case OP_DEPTHWISE_CONV_2D: took = depthwise_conv_2d(m, op); break;
    case OP_FULLY_CONNECTED: took = fully_connected(m, op); break;
    case OP_ADD: took = add(m, op); break;
    }
    tml_fast_ops_run += (uint32_t)took;
    return took;
}
