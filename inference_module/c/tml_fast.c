/* Host kernels (built with -DTML_FAST: the host library, inference_module/c/Makefile): CONV_2D and
 * DEPTHWISE_CONV_2D written so that gcc/clang -O2/-O3 vectorize them with whatever SIMD the host has (SSE/AVX on
 * x86-64, NEON on AArch64), without intrinsics. The reference kernels (tml_ops.c, tml_conv.c, tml_depthwise.c) stay
 * beside them and take every op these decline (tml_fast_run returns 0); both give TFLM's results bit for bit,
 * checked by the same tests (tests/c/test_c_runtime.py runs the models through both builds).
 *
 * Why the reference kernels are slow here: they vectorize along the dot product (K), which for VWW's first layers
 * (K = 8..32 inputs) leaves the vector loop unused, and they requantize one output at a time with branches. Here:
 *  - CONV_2D is a GEMM along the output channels: the weights are repacked once per op into panels of NB channels
 *    [K][NB], and a PB x NB register block (PB output pixels x NB channels) takes one input per pixel and one row of
 *    NB weights per step, so every vector lane is used whatever K is. A filter larger than 1x1 gathers each pixel's
 *    receptive field first (im2col), padding set to the input zero point.
 *  - The input offset is folded into the bias: sum (x + xo) w = sum x w + xo sum w, added with int32 wrap-around
 *    like TFLM's accumulator, so the inner loop is one multiply-add.
 *  - Requantization runs over a block of channels at once, branch-free, with each channel's shifts prepared once.
 *  - DEPTHWISE_CONV_2D keeps the channels innermost: per tap one vector multiply-add over a block of channels. */
#include "tml_internal.h"

#define NB 16            /* output channels per register block (one 512-bit or two 256-bit vectors of int32) */
#define PB 4             /* output pixels per register block: each weight row loaded once for PB pixels */
#define FAST_MAX_CO 1024 /* channels whose requantization parameters are prepared on the stack (20 KB) */
#define FAST_PACK 40960  /* repacked int16 weights on the stack (80 KB): K x Co rounded up to NB */
#define FAST_PATCH 4096  /* bytes of gathered receptive fields (PB pixels) */

/* GCC's and Clang's generic vectors: NB lanes, lowered to whatever SIMD the target has. */
typedef int32_t vi32 __attribute__((vector_size(4 * NB)));
typedef uint32_t vu32 __attribute__((vector_size(4 * NB)));
typedef int64_t vi64 __attribute__((vector_size(8 * NB)));
typedef int8_t vi8 __attribute__((vector_size(NB)));
typedef int16_t vi16 __attribute__((vector_size(2 * NB)));
typedef int32_t vi32h __attribute__((vector_size(2 * NB)));
typedef int16_t vi16h __attribute__((vector_size(NB)));
typedef int8_t vi8h __attribute__((vector_size(NB / 2)));

/* int8 <-> int32 lanes in two steps: GCC 12 lowers a one-step 4x conversion lane by lane, two 2x steps to
 * sign-extending moves */
#define WIDEN(v8, v16t, v32t) __builtin_convertvector(__builtin_convertvector(v8, v16t), v32t)

/* One channel's requantization, prepared once per op: y = clamp(RDBPOT(SRDHM((acc + bias) << left, m), right)
 * + off) exactly as tml_mbqm, with RDBPOT's mask and half-mask precomputed. */
typedef struct {
    int32_t bias[FAST_MAX_CO + NB], mult[FAST_MAX_CO + NB], left[FAST_MAX_CO + NB], right[FAST_MAX_CO + NB],
        mask[FAST_MAX_CO + NB]; /* channels past n up to a whole block: zeros */
    int32_t off, lo, hi;
} requant_params;

static void requant_prepare(requant_params *q, uint32_t n, const uint8_t *bias, const uint8_t *mult,
                            const uint8_t *shift, int32_t off, int32_t lo, int32_t hi)
{
    uint32_t c;
    for (c = 0; c < n; c++) {
        const int32_t s = tml_ld32(shift + 4 * c);
        q->bias[c] = tml_ld32(bias + 4 * c);
        q->mult[c] = tml_ld32(mult + 4 * c);
        q->left[c] = s > 0 ? s : 0;
        q->right[c] = s > 0 ? 0 : -s;
        q->mask[c] = (int32_t)(((uint32_t)1 << q->right[c]) - 1u);
    }
    for (; c % NB; c++)
        q->bias[c] = q->mult[c] = q->left[c] = q->right[c] = q->mask[c] = 0;
    q->off = off;
    q->lo = lo;
    q->hi = hi;
}

/* y[c] = requant(sum[c]) for channels c0 + c, c < NB, in vectors: a 64-bit product per lane, shifts by per-lane counts, compares
 * as lane masks (-1 true), so no branch. */
static void requant_block(const vi32 *sum, uint32_t c0, const requant_params *q, int8_t *y)
{
    vi32 bias, mult, left, right, mask, xs, v, thr, r, lo = q->lo - (vi32){0}, hi = q->hi - (vi32){0}, cmp;
    vi64 prod;
    vi8 out;
    memcpy(&bias, q->bias + c0, sizeof bias);
    memcpy(&mult, q->mult + c0, sizeof mult);
    memcpy(&left, q->left + c0, sizeof left);
    memcpy(&right, q->right + c0, sizeof right);
    memcpy(&mask, q->mask + c0, sizeof mask);
    xs = (vi32)((vu32)(*sum) + (vu32)bias) << left; /* the int32 add wraps like TFLM's, and so does the shift */
    /* SRDHM with m >= 0 (tml_mbqm): bits 31..62 of x m + 2^30 */
    prod = __builtin_convertvector(xs, vi64) * __builtin_convertvector(mult, vi64) + ((int64_t)1 << 30);
    v = __builtin_convertvector(prod >> 31, vi32);
    thr = (mask >> 1) - (v < 0); /* RDBPOT: round half away from zero */
    r = (v >> right) - ((v & mask) > thr) + q->off;
    cmp = r < lo;
    r = (r & ~cmp) | (lo & cmp);
    cmp = r > hi;
    r = (r & ~cmp) | (hi & cmp);
    out = __builtin_convertvector(__builtin_convertvector(r, vi16), vi8);
    memcpy(y, &out, sizeof out);
}

/* The first n < NB lanes of requant_block (the parameters past the last channel are zeros). */
static void requant_part(const vi32 *sum, uint32_t c0, uint32_t n, const requant_params *q, int8_t *y)
{
    int8_t out[NB];
    requant_block(sum, c0, q, out);
    memcpy(y, out, n);
}

/* y[c] = requant(sum[c]) for c < n, NB channels at a time. */
static void requant_row(const int32_t *sum, uint32_t n, const requant_params *q, int8_t *y)
{
    uint32_t c = 0;
    vi32 v = {0};
    for (; c + NB <= n; c += NB) {
        memcpy(&v, sum + c, sizeof v);
        requant_block(&v, c, q, y + c);
    }
    if (c < n) {
        vi32 part = {0};
        memcpy(&part, sum + c, 4 * (n - c));
        requant_part(&part, c, n - c, q, y + c);
    }
}

/* ---- CONV_2D as a GEMM along the output channels ---- */

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


/* The weights [Co][K] as panels of NB channels, each [K][NB] (channels past Co are 0), and per channel the bias with
 * xo * sum_k w folded in (int32 wrap-around, so the sum of both equals TFLM's accumulator + bias). */
static void pack_weights(const int8_t *w, uint32_t Co, uint32_t K, int32_t xo, int16_t *wp, requant_params *q)
{
    uint32_t o, k;
    for (o = 0; o < Co; o++) {
        const int8_t *row = w + (size_t)o * K;
        int16_t *dst = wp + (size_t)(o / NB) * K * NB + o % NB;
        int32_t wsum = 0;
        for (k = 0; k < K; k++) {
            dst[(size_t)k * NB] = row[k];
            wsum += row[k];
        }
        q->bias[o] = (int32_t)((uint32_t)q->bias[o] + (uint32_t)xo * (uint32_t)wsum);
    }
    for (o = Co; o % NB; o++)
        for (k = 0; k < K; k++)
            wp[(size_t)(o / NB) * K * NB + (size_t)k * NB + o % NB] = 0;
}

/* sum[i] = sum_k x[i][k] * wp[k][0..NB) for PB pixels (exact: |x w| <= 2^14, K <= TML_MAX_DOT): per step one
 * row of NB weights widened once, then one multiply-add per pixel. */
static void gemm_block(const int8_t *const x[PB], uint32_t K, const int16_t *wp, vi32 sum[PB])
{
    vi32 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    const int8_t *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    uint32_t k;
    for (k = 0; k < K; k++, wp += NB) {
        vi16 w16;
        vi32 w;
        memcpy(&w16, wp, sizeof w16);
        w = __builtin_convertvector(w16, vi32);
        a0 += x0[k] * w;
        a1 += x1[k] * w;
        a2 += x2[k] * w;
        a3 += x3[k] * w;
    }
    sum[0] = a0;
    sum[1] = a1;
    sum[2] = a2;
    sum[3] = a3;
}

/* The receptive field of output pixel (oy, ox) as one vector [Kh][Kw][C]; taps in the padding get the input zero
 * point zp (they then add (zp + xo) w = 0). */
static void gather(const int8_t *x, uint32_t H, uint32_t W, uint32_t C, uint32_t Kh, uint32_t Kw, const int32_t *p,
                   int64_t iy0, int64_t ix0, int8_t zp, int8_t *patch)
{
    uint32_t ky, kx;
    for (ky = 0; ky < Kh; ky++) {
        const int64_t iy = iy0 + (int64_t)ky * p[2];
        if (p[3] == 1 && iy >= 0 && iy < H && ix0 >= 0 && ix0 + Kw <= W) { /* a whole row of taps inside */
            memcpy(patch, x + ((size_t)iy * W + (size_t)ix0) * C, (size_t)Kw * C);
            patch += Kw * C;
            continue;
        }
        for (kx = 0; kx < Kw; kx++, patch += C) {
            const int64_t ix = ix0 + (int64_t)kx * p[3];
            if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                memset(patch, zp, C);
            else
                memcpy(patch, x + ((size_t)iy * W + (size_t)ix) * C, C);
        }
    }
}

static int conv_2d(tml_model *m, const tml_op *op)
{
    conv_operands c;
    uint32_t p_i, o, i;
    const int32_t *p = c.p;
    requant_params q;
    int16_t wp[FAST_PACK];
    int8_t patches[FAST_PATCH];
    const int8_t *xv;
    int8_t *yv;
    uint32_t H, W, C, Kh, Kw, Co, Ho, Wo, K, npix;
    int one_by_one;
    if (!read_conv(m, op, &c))
        return 0;
    H = c.xd[1]; W = c.xd[2]; C = c.xd[3];
    Co = c.wd[0]; Kh = c.wd[1]; Kw = c.wd[2];
    Ho = c.yd[1]; Wo = c.yd[2];
    K = Kh * Kw * C;
    npix = Ho * Wo;
    one_by_one = Kh == 1 && Kw == 1 && p[4] == 0 && p[5] == 0 && (uint64_t)(Ho - 1) * (uint32_t)p[0] < H &&
                 (uint64_t)(Wo - 1) * (uint32_t)p[1] < W;
    /* declined: batches, too many channels or weights for the stack buffers, an input offset whose zero point is
     * not an int8 (padding could not be gathered) */
    if (c.xd[0] != 1 || Co > FAST_MAX_CO || (size_t)K * ((Co + NB - 1) / NB * NB) > FAST_PACK ||
        (!one_by_one && ((size_t)PB * K > FAST_PATCH || p[6] < -127 || p[6] > 128)))
        return 0;
    xv = c.x;
    yv = c.y;
    requant_prepare(&q, Co, c.bias, c.mult, c.shift, p[7], p[8], p[9]);
    pack_weights(c.w, Co, K, p[6], wp, &q);
    for (p_i = 0; p_i < npix; p_i += PB) {
        const int8_t *rows[PB];
        const uint32_t np = npix - p_i < PB ? npix - p_i : PB;
        for (i = 0; i < PB; i++) {
            const uint32_t pix = p_i + (i < np ? i : np - 1), oy = pix / Wo, ox = pix % Wo; /* tail: repeat the last */
            if (one_by_one) {
                rows[i] = xv + ((size_t)oy * p[0] * W + (size_t)ox * p[1]) * C;
            } else {
                gather(xv, H, W, C, Kh, Kw, p, (int64_t)oy * p[0] - p[4], (int64_t)ox * p[1] - p[5], (int8_t)(-p[6]),
                       patches + (size_t)i * K);
                rows[i] = patches + (size_t)i * K;
            }
        }
        for (o = 0; o < Co; o += NB) {
            vi32 sum[PB];
            const uint32_t nc = Co - o < NB ? Co - o : NB;
            gemm_block(rows, K, wp + (size_t)o * K, sum);
            for (i = 0; i < np; i++) {
                int8_t *out = yv + (size_t)(p_i + i) * Co + o;
                if (nc == NB)
                    requant_block(&sum[i], o, &q, out);
                else
                    requant_part(&sum[i], o, nc, &q, out);
            }
        }
    }
    return 1;
}

/* ---- DEPTHWISE_CONV_2D, channels innermost ---- */

/* sum[c] += (x[c] + xo) w[c], c < n: one window tap over a block of channels (the tail of a row). */
static void dw_tap(const int8_t *x, const int8_t *w, int32_t xo, uint32_t n, int32_t *sum)
{
    uint32_t c;
    for (c = 0; c < n; c++)
        sum[c] += (x[c] + xo) * w[c];
}

/* The same over NB and NB / 2 channels, in vectors. */
static inline void dw_tap_block(const int8_t *x, const int8_t *w, int32_t xo, int32_t *sum)
{
    vi8 x8, w8;
    vi32 s;
    memcpy(&x8, x, sizeof x8);
    memcpy(&w8, w, sizeof w8);
    memcpy(&s, sum, sizeof s);
    s += (WIDEN(x8, vi16, vi32) + xo) * WIDEN(w8, vi16, vi32);
    memcpy(sum, &s, sizeof s);
}

static inline void dw_tap_half(const int8_t *x, const int8_t *w, int32_t xo, int32_t *sum)
{
    vi8h x8, w8;
    vi32h s;
    memcpy(&x8, x, sizeof x8);
    memcpy(&w8, w, sizeof w8);
    memcpy(&s, sum, sizeof s);
    s += (WIDEN(x8, vi16h, vi32h) + xo) * WIDEN(w8, vi16h, vi32h);
    memcpy(sum, &s, sizeof s);
}

static int depthwise_conv_2d(tml_model *m, const tml_op *op)
{
    conv_operands cv;
    uint32_t oy, ox;
    const int32_t *p = cv.p;
    int32_t sum[FAST_MAX_CO];
    requant_params q;
    const int8_t *xv, *wv;
    int8_t *yv;
    uint32_t H, W, C, Kh, Kw, Ho, Wo;
    if (!read_conv(m, op, &cv))
        return 0;
    H = cv.xd[1]; W = cv.xd[2]; C = cv.xd[3];
    Kh = cv.wd[1]; Kw = cv.wd[2];
    Ho = cv.yd[1]; Wo = cv.yd[2];
    if (cv.xd[0] != 1 || p[10] != 1 || C > FAST_MAX_CO) /* depth multiplier 1 only */
        return 0;
    xv = cv.x;
    wv = cv.w;
    yv = cv.y;
    requant_prepare(&q, C, cv.bias, cv.mult, cv.shift, p[7], p[8], p[9]);
    for (oy = 0; oy < Ho; oy++) {
        const int64_t iy0 = (int64_t)oy * p[0] - p[4];
        for (ox = 0; ox < Wo; ox++) {
            const int64_t ix0 = (int64_t)ox * p[1] - p[5];
            uint32_t ky, kx, c;
            memset(sum, 0, C * sizeof sum[0]);
            for (ky = 0; ky < Kh; ky++) {
                const int64_t iy = iy0 + (int64_t)ky * p[2];
                if (iy < 0 || iy >= H)
                    continue;
                for (kx = 0; kx < Kw; kx++) {
                    const int64_t ix = ix0 + (int64_t)kx * p[3];
                    const int8_t *xp, *wpt;
                    if (ix < 0 || ix >= W)
                        continue;
                    xp = xv + ((size_t)iy * W + (size_t)ix) * C;
                    wpt = wv + ((size_t)ky * Kw + kx) * C;
                    for (c = 0; c + NB <= C; c += NB)
                        dw_tap_block(xp + c, wpt + c, p[6], sum + c);
                    if (c + NB / 2 <= C) {
                        dw_tap_half(xp + c, wpt + c, p[6], sum + c);
                        c += NB / 2;
                    }
                    if (c < C)
                        dw_tap(xp + c, wpt + c, p[6], C - c, sum + c);
                }
            }
            requant_row(sum, C, &q, yv + ((size_t)oy * Wo + ox) * C);
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
