/* Host kernels (built with -DTML_FAST: the host library, inference_module/c/Makefile): CONV_2D and
 * DEPTHWISE_CONV_2D in GCC/Clang generic vectors of 256 bits, which -O3 lowers to whatever SIMD the host has (AVX2
 * or AVX-512 on x86-64, NEON on AArch64, two halves where vectors are narrower). One operation has no generic form:
 * the int16 x int16 pair products summed into int32 lanes (x86's PMADDWD, 16 multiply-adds in one instruction);
 * madd16 uses it where __AVX2__ says it exists and a lane loop (exactly the same sums) elsewhere. The reference kernels
 * (tml_ops.c, tml_conv.c, tml_depthwise.c) stay beside these and take every op these decline (tml_fast_run returns
 * 0); both give TFLM's results bit for bit, checked by the same tests (tests/c/test_c_runtime.py runs the models
 * through both builds).
 *  - The input offset is folded into the bias: sum (x + xo) w = sum x w + xo sum w, added with int32 wrap-around
 *    like TFLM's accumulator, so the products are plain int8 x int8 (exact in int16 lanes' pair sums); padding taps
 *    take the input zero point, whose x + xo = 0.
 *  - CONV_2D is a dot product along the receptive field (K, padded with zeros to a multiple of 16): the weights of a
 *    chunk of channels are widened once per op to int16 rows, each pixel's receptive field gathered and widened
 *    once (im2col; a 1x1 filter reads its row in place), and a block of 2 pixels x 4 channels keeps 8 accumulators
 *    of 8 lanes in registers, 16 multiply-adds per weight vector loaded; the 8 lane sums fold into one vector
 *    [pixel a's 4 channels, pixel b's 4] which is requantized at once.
 *  - DEPTHWISE_CONV_2D keeps 8 channels per vector and takes the taps two at a time: both taps' inputs interleaved
 *    byte-wise and widened, against weights interleaved the same way once per op, so one pair product per lane is
 *    two taps of one channel. Taps in the padding read a row of zero points, so every window has all its taps.
 *  - Requantization runs 8 outputs at once, branch-free, each channel's shifts and RDBPOT mask prepared once. */
#include "tml_internal.h"

#if defined(__GNUC__) && !defined(__clang__)
/* 256-bit vectors passed between this file's static functions: no ABI is crossed, whatever SIMD the target has */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
/* the helpers that take or return vectors: always inlined, so no vector crosses a call on any target */
#define VINLINE static inline __attribute__((always_inline))

#define FAST_MAX_CO 1024  /* channels whose requantization parameters are prepared on the stack (20 KB) */
#define FAST_KMAX 4096    /* longest receptive field (padded to 16): two pixels' widened inputs, 16 KB */
#define FAST_WBUF 16384   /* widened weights of one chunk of output channels (32 KB), at least 4 channels' worth */
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
                            const uint8_t *shift, int32_t off, int32_t lo, int32_t hi, int doubled)
{
    uint32_t c, copy;
    q->doubled = doubled;
    for (c = 0; c < (n + 15u) / 16u * 16u; c++) {
        const int32_t s = c < n ? tml_ld32(shift + 4 * c) : 0;
        const uint32_t j = slot(q, c);
        for (copy = 0; copy <= (uint32_t)doubled; copy++) {
            q->bias[j + 4 * copy] = c < n ? tml_ld32(bias + 4 * c) : 0;
            q->mult[j + 4 * copy] = c < n ? tml_ld32(mult + 4 * c) : 0;
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

/* The requantization of 8 sums with the parameters at slot i, in lanes: shifts by per-lane counts, compares as
 * lane masks (-1 true), so no branch. The result is clamped to [lo, hi]. */
VINLINE v8i32 requant8(v8i32 sum, const requant_params *q, uint32_t i)
{
    const v8i32 lo = q->lo - (v8i32){0}, hi = q->hi - (v8i32){0};
    const v8i32 mask = ld8(q->mask + i), right = ld8(q->right + i);
    v8i32 xs, v, thr, r, cmp;
    xs = (v8i32)((v8u32)sum + (v8u32)ld8(q->bias + i)) << ld8(q->left + i); /* wraps like TFLM's add, and the shift */
    v = srdhm8(xs, ld8(q->mult + i));
    thr = (mask >> 1) - (v < 0); /* RDBPOT: round half away from zero */
    r = (v >> right) - ((v & mask) > thr) + q->off;
    cmp = r < lo;
    r = (r & ~cmp) | (lo & cmp);
    cmp = r > hi;
    return (r & ~cmp) | (hi & cmp);
}

VINLINE v8i8 narrow8(v8i32 r) { return __builtin_convertvector(__builtin_convertvector(r, v8i16), v8i8); }

/* The operands of a CONV_2D or DEPTHWISE_CONV_2D record (x, weights, bias, multipliers, shifts -> y) and its
 * params. 0 when the weights or the requantization tensors are not in CONST (then the op is declined). */
typedef struct {
    uint32_t xd[4], yd[4], wd[4];
    int32_t p[TML_MAX_PARAMS];
    const int8_t *x, *w;
    const uint8_t *bias, *mult, *shift;
    int8_t *y;
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
    return 1;
}

/* ---- CONV_2D: dot products along the receptive field ---- */

/* Rows o0 .. o0 + n of the weights [Co][K] widened to int16 rows of Kp (zeros past K, and whole rows of zeros for
 * channels past Co); each channel's bias gets xo * sum_k w folded in (int32 wrap-around, so the sum of both equals
 * TFLM's accumulator + bias). */
static void widen_weights(const int8_t *w, uint32_t o0, uint32_t n, uint32_t Co, uint32_t K, uint32_t Kp, int32_t xo,
                          int16_t *wb, requant_params *q)
{
    uint32_t o, k;
    for (o = 0; o < n; o++) {
        const int8_t *row = w + (size_t)(o0 + o) * K;
        int16_t *dst = wb + (size_t)o * Kp;
        int32_t wsum = 0;
        if (o0 + o >= Co) {
            memset(dst, 0, (size_t)Kp * sizeof *dst);
            continue;
        }
        for (k = 0; k < K; k++) {
            dst[k] = row[k];
            wsum += row[k];
        }
        for (; k < Kp; k++)
            dst[k] = 0;
        bias_add(q, o0 + o, (int32_t)((uint32_t)xo * (uint32_t)wsum));
    }
}

static inline void widen_run(int16_t *dst, const int8_t *src, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16i8 v;
        v16i16 w;
        memcpy(&v, src + i, sizeof v);
        w = __builtin_convertvector(v, v16i16);
        memcpy(dst + i, &w, sizeof w);
    }
    if (i + 8 <= n) {
        v8i8 v;
        v8i16 w;
        memcpy(&v, src + i, sizeof v);
        w = __builtin_convertvector(v, v8i16);
        memcpy(dst + i, &w, sizeof w);
        i += 8;
    }
    for (; i < n; i++)
        dst[i] = src[i];
}

static inline void fill_run(int16_t *dst, int16_t v, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        dst[i] = v;
}

/* The receptive field of the output pixel whose window starts at (iy0, ix0), widened, as one row [Kh][Kw][C] of
 * Kp (zeros past K); taps in the padding get the input zero point zp (they then add (zp + xo) w = 0). */
static void gather16(const int8_t *x, uint32_t H, uint32_t W, uint32_t C, uint32_t Kh, uint32_t Kw, const int32_t *p,
                     int64_t iy0, int64_t ix0, int16_t zp, uint32_t K, uint32_t Kp, int16_t *dst)
{
    uint32_t ky, kx;
    int16_t *d = dst;
    for (ky = 0; ky < Kh; ky++) {
        const int64_t iy = iy0 + (int64_t)ky * p[2];
        if (p[3] == 1 && iy >= 0 && iy < H && ix0 >= 0 && ix0 + Kw <= W) { /* a whole row of taps inside */
            widen_run(d, x + ((size_t)iy * W + (size_t)ix0) * C, Kw * C);
            d += Kw * C;
            continue;
        }
        for (kx = 0; kx < Kw; kx++, d += C) {
            const int64_t ix = ix0 + (int64_t)kx * p[3];
            if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                fill_run(d, zp, C);
            else
                widen_run(d, x + ((size_t)iy * W + (size_t)ix) * C, C);
        }
    }
    fill_run(dst + K, 0, Kp - K);
}

/* The 8 lane sums of a[0..4) (pixel a, 4 channels) and b[0..4) (pixel b) as [a0 a1 a2 a3 b0 b1 b2 b3]. */
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

/* sum_k xa[k] w_c[k] and sum_k xb[k] w_c[k] for the 4 weight rows w_c = w + c Kp, as reduce_2x4 orders them. */
VINLINE v8i32 dot_2x4(const int16_t *xa, const int16_t *xb, const int16_t *w, uint32_t Kp)
{
    v8i32 a[4] = {{0}}, b[4] = {{0}}; /* fully unrolled: the 8 accumulators stay in registers */
    const size_t stride = Kp;
    const int16_t *const end = xa + Kp;
    int c;
    for (; xa < end; xa += 16, xb += 16, w += 16) {
        v16i16 va, vb, u;
        memcpy(&va, xa, sizeof va);
        memcpy(&vb, xb, sizeof vb);
        for (c = 0; c < 4; c++) {
            memcpy(&u, w + c * stride, sizeof u);
            a[c] += madd16(va, u);
            b[c] += madd16(vb, u);
        }
    }
    return reduce_2x4(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]);
}

static int conv_2d(tml_model *m, const tml_op *op)
{
    conv_operands c;
    const int32_t *p = c.p;
    requant_params q;
    int16_t wb[FAST_WBUF];
    int16_t xb[2][FAST_KMAX];
    uint32_t H, W, C, Kh, Kw, Co, Co4, Ho, Wo, K, Kp, npix, chunk, o0, pi, o, i;
    int one_by_one;
    if (!read_conv(m, op, &c))
        return 0;
    H = c.xd[1]; W = c.xd[2]; C = c.xd[3];
    Co = c.wd[0]; Kh = c.wd[1]; Kw = c.wd[2];
    Ho = c.yd[1]; Wo = c.yd[2];
    K = Kh * Kw * C;
    Kp = (K + 15u) & ~15u;
    Co4 = (Co + 3u) & ~3u;
    npix = Ho * Wo;
    one_by_one = Kh == 1 && Kw == 1 && p[4] == 0 && p[5] == 0 && (uint64_t)(Ho - 1) * (uint32_t)p[0] < H &&
                 (uint64_t)(Wo - 1) * (uint32_t)p[1] < W;
    /* declined: batches, too many channels or too long a receptive field for the stack buffers, an input offset
     * whose zero point is not an int8 (padding could not be gathered) */
    if (c.xd[0] != 1 || Co > FAST_MAX_CO || Kp > FAST_KMAX || (!one_by_one && (p[6] < -127 || p[6] > 128)))
        return 0;
    requant_prepare(&q, Co, c.bias, c.mult, c.shift, p[7], p[8], p[9], 1);
    chunk = (FAST_WBUF / Kp) & ~3u; /* >= 4: Kp <= FAST_KMAX */
    if (chunk > Co4)
        chunk = Co4;
    for (o0 = 0; o0 < Co4; o0 += chunk) {
        const uint32_t n = Co4 - o0 < chunk ? Co4 - o0 : chunk;
        widen_weights(c.w, o0, n, Co, K, Kp, p[6], wb, &q);
        for (pi = 0; pi < npix; pi += 2) {
            const uint32_t pb = pi + 1 < npix ? pi + 1 : pi; /* an odd last pixel pairs with itself */
            for (i = 0; i < 2; i++) {
                const uint32_t pix = i ? pb : pi, oy = pix / Wo, ox = pix % Wo;
                if (one_by_one) {
                    widen_run(xb[i], c.x + ((size_t)oy * p[0] * W + (size_t)ox * p[1]) * C, K);
                    fill_run(xb[i] + K, 0, Kp - K);
                } else {
                    gather16(c.x, H, W, C, Kh, Kw, p, (int64_t)oy * p[0] - p[4], (int64_t)ox * p[1] - p[5],
                             (int16_t)(-p[6]), K, Kp, xb[i]);
                }
            }
            for (o = o0; o < o0 + n; o += 4) {
                const uint32_t nc = Co - o < 4 ? Co - o : 4;
                const v8i8 y8 = narrow8(requant8(dot_2x4(xb[0], xb[1], wb + (size_t)(o - o0) * Kp, Kp), &q, 2 * o));
                int8_t *ya = c.y + (size_t)pi * Co + o, *yb = c.y + (size_t)pb * Co + o;
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
    return 1;
}

/* ---- DEPTHWISE_CONV_2D: 8 channels per vector, two taps per pair product ---- */

/* sum over the window's tap pairs of one block of 8 channels at c: (x_t0, x_t1) byte-interleaved and widened,
 * times the pair's weights interleaved the same way (wp: 16 int16 per pair per block). */
VINLINE v8i32 dw_block(const int8_t *const *tp, uint32_t pairs, const int16_t *wp, size_t wstride, uint32_t c)
{
    v8i32 acc = {0};
    uint32_t j;
    for (j = 0; j < pairs; j++, wp += wstride) {
        v8i8 xa, xb;
        v16i16 xi, w;
        memcpy(&xa, tp[2 * j] + c, sizeof xa);
        memcpy(&xb, tp[2 * j + 1] + c, sizeof xb);
#if defined(HAVE_SHUFFLEVECTOR)
        xi = __builtin_convertvector(
            __builtin_shufflevector(xa, xb, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15), v16i16);
#else
        {
            int i;
            for (i = 0; i < 8; i++) {
                xi[2 * i] = xa[i];
                xi[2 * i + 1] = xb[i];
            }
        }
#endif
        memcpy(&w, wp, sizeof w);
        acc += madd16(xi, w);
    }
    return acc;
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
    requant_prepare(&q, C, cv.bias, cv.mult, cv.shift, p[7], p[8], p[9], 0);
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
            for (c = 0; c < C8; c += 8) {
                const v8i32 s = dw_block(tp, pairs, wp + (size_t)c * 2, (size_t)C8 * 2, c);
                const v8i8 y8 = narrow8(requant8(s, &q, c));
                memcpy(y + c, &y8, sizeof y8);
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

/* How many ops these kernels ran since load or the last reset: lets a test see the hook in tml_run_op is there
   without timing anything. */
uint32_t tml_fast_ops_run;

int tml_fast_run(tml_model *m, const tml_op *op)
{
    int took = 0;
    switch (op->opcode) {
    case OP_CONV_2D: took = conv_2d(m, op); break;
    case OP_DEPTHWISE_CONV_2D: took = depthwise_conv_2d(m, op); break;
    }
    tml_fast_ops_run += (uint32_t)took;
    return took;
}
