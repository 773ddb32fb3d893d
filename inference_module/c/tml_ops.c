/* Kernels for every opcode of ABI 1 (docs/blob-format.md §5), bit-exact with TFLite Micro's reference kernels.
 * They run only on ops the loader validated, so they do not re-check shapes. Dot products go through
 * tml_dot.h, which has the portable and the Cortex-M DSP implementation. */
#include <math.h>

#include "tml_dot.h"

#define DW_BLOCK 64     /* depthwise channels accumulated at once: 256 bytes of stack */
#define CONV_PATCH 1024 /* largest per-pixel receptive field gathered for CONV_2D: 1 KB of stack */

typedef struct {
    tml_tensor t;
    uint32_t d[4];
    const void *data;
    uint8_t *out; /* writable view (arena tensors only) */
} operand;

static void get(const tml_model *m, uint16_t index, operand *o)
{
    tml_tensor_read(m, index, &o->t);
    tml_dims4(&o->t, o->d);
    o->data = o->t.storage == TML_ARENA ? (const void *)(m->arena + o->t.offset)
                                        : (const void *)(m->consts + o->t.offset);
    o->out = o->t.storage == TML_ARENA ? m->arena + o->t.offset : NULL;
}

static void get_params(const tml_op *op, int32_t *p)
{
    unsigned i;
    for (i = 0; i < op->n_params && i < TML_MAX_PARAMS; i++)
        p[i] = tml_op_param(op, i);
}

/* acc (a sum bounded by TML_MAX_DOT) + bias, wrapping like TFLM's int32 add; then requantize and clamp */
#if TML_DSP
/* MBQM with SMMULR: for |x| < 2^30, SMMULR(2x, m) = floor((2xm + 2^31) / 2^32) = floor((xm + 2^30) / 2^31), which
 * is exactly SRDHM(x, m) for m >= 0 (see tml_mbqm). One instruction instead of SMLAL plus three to combine. */
/* MBQM with its multiplier and shift prepared once: ADD rescales every element with the same three pairs. */
typedef struct {
    int32_t m, s, left, right, half, neg;
} mbqm_fixed;

static inline void mbqm_fix(mbqm_fixed *f, int32_t m, int32_t s)
{
    /* left = max(s, 0) with USAT (s <= 30), right = left - s = max(-s, 0) */
    f->m = m;
    f->s = s;
    f->left = (int32_t)__usat(s, 5);
    f->right = f->left - s;
    f->half = (int32_t)((1u << f->right) >> 1);
    f->neg = (0 - f->right) >> 31; /* all ones exactly when right >= 1 */
}

static inline int32_t mbqm_fixed_apply(const mbqm_fixed *f, int32_t x)
{
    int32_t xs = (int32_t)((uint32_t)x << f->left), v;
    if ((uint32_t)xs + 0x40000000u >= 0x80000000u)
        return tml_mbqm(x, f->m, f->s); /* |xs| >= 2^30: the general path */
    __asm__("smmulr %0, %1, %2" : "=r"(v) : "r"(xs * 2), "r"(f->m));
    /* RDBPOT(v, right) = (v >> right) + ((v & mask) > (mask >> 1) + (v < 0)) equals, for right >= 1,
     * floor((v + 2^(right-1) - (v < 0)) / 2^right), and v for right = 0; |v| < 2^30 so the sum cannot overflow.
     * Five instructions instead of nine. */
    return (v + f->half + ((v >> 31) & f->neg)) >> f->right;
}

static inline int32_t mbqm_dsp(int32_t x, int32_t m, int32_t s)
{
    mbqm_fixed f;
    mbqm_fix(&f, m, s);
    return mbqm_fixed_apply(&f, x);
}
#define REQUANT_MBQM mbqm_dsp
#else
#define REQUANT_MBQM tml_mbqm
#endif

static inline int8_t requant_v(int32_t sum, int32_t bias, int32_t mult, int32_t shift, int32_t out_off, int32_t lo,
                               int32_t hi)
{
    int32_t acc = (int32_t)((uint32_t)sum + (uint32_t)bias);
    return (int8_t)tml_clamp(REQUANT_MBQM(acc, mult, shift) + out_off, lo, hi);
}

static inline int8_t requant(int32_t sum, const uint8_t *bias, const uint8_t *mult, const uint8_t *shift,
                             int32_t out_off, int32_t lo, int32_t hi)
{
    int32_t acc = (int32_t)((uint32_t)sum + (uint32_t)tml_ld32(bias));
    return (int8_t)tml_clamp(REQUANT_MBQM(acc, tml_ld32(mult), tml_ld32(shift)) + out_off, lo, hi);
}

#if TML_DSP
/* y[c] = requant(sums[c] + bias[c]) with per-channel multiplier and shift, c < n. Its own function so that the few
 * values it needs stay in registers (inlined into a large kernel they were spilled: 47 cycles per output vs ~20). */
static __attribute__((noinline)) void requant_row(const int32_t *sums, uint32_t n, const uint8_t *bias,
                                                  const uint8_t *mult, const uint8_t *shift, int32_t out_off,
                                                  int32_t lo, int32_t hi, int8_t *y)
{
    uint32_t c;
    for (c = 0; c < n; c++)
        y[c] = requant(sums[c], bias + 4 * c, mult + 4 * c, shift + 4 * c, out_off, lo, hi);
}
#endif

/* Range of filter taps k in [0, K) with 0 <= o + k*d < size. */
static void tap_range(int64_t o, uint32_t d, uint32_t K, uint32_t size, uint32_t *lo, uint32_t *hi)
{
    int64_t l, h;
    if (d == 1) { /* the common case, without a 64-bit division (a library call on Cortex-M) */
        l = o >= 0 ? 0 : -o;
        h = (int64_t)size - o;
        h = h < 0 ? 0 : (h > K ? K : h);
        *lo = (uint32_t)(l > h ? h : l);
        *hi = (uint32_t)h;
        return;
    }
    l = o >= 0 ? 0 : (-o + d - 1) / d;
    h = (int64_t)size - o <= 0 ? 0 : ((int64_t)size - o + d - 1) / d;
    if (h > K)
        h = K;
    if (l > h)
        l = h;
    *lo = (uint32_t)l;
    *hi = (uint32_t)h;
}

/* One row of a dense product: y[o] = requant(sum_i (x[i] + xo) * (w[o, i] + wo) + b[o]) for o < Co. Used by
 * FULLY_CONNECTED and by CONV_2D with a 1x1 filter and no padding (a GEMM with no im2col). Output channels go two
 * at a time with their accumulators in registers; requantization follows immediately. */
typedef struct {
    const uint8_t *bias, *mult, *shift;
    int per_channel;
    int32_t xo, wo, out_off, lo, hi;
    int fast_requant; /* requant2_dsp is exact for this op (requant2_ok); 0 outside the DSP build */
    const uint32_t *const_mask; /* with fast_requant: channels whose output is one value whatever the sum (bit c), */
    const int8_t *const_val;    /* and those values; NULL when there are none */
    const uint32_t *slow_mask;  /* with fast_requant: channels requant2_dsp gets wrong, redone by fix_outputs; or NULL */
    int weights_overrun_ok; /* up to 3 bytes past the weights may be read (they lie inside CONST) */
    const int32_t *w16; /* DSP: the op's weights widened (widen_weights), or NULL: the int8 rows */
    int w16_form;       /* and their form: W16_SUMS or W16_REQUANT (see gemm_2x3_w16) */
} dense_q;

#if TML_DSP
#define ROW_MAX_K4 640 /* dense_row's widened input: 320 words (1.25 KB) of stack */
#define ROW_SUMS 64     /* dense_row's sums per requantization pass: 256 bytes of stack */

/* MBQM's general path, out of line so that requant_row_fixed's loop keeps its values in registers */
static __attribute__((noinline)) int32_t mbqm_general(int32_t x, int32_t m, int32_t s) { return tml_mbqm(x, m, s); }

/* requant_row with one multiplier and shift for every channel (AD's FULLY_CONNECTED layers): with a right shift r
 * of 1..23, for |acc| < 2^30 (else the general path), SRDHM is SMMULR(2 acc, m) (mbqm_fixed_apply) and
 * RDBPOT + out_off is (v + 2^(r-1) + out_off 2^r - [v < 0]) >> r, which cannot overflow for |v| < 2^30, |out_off|
 * <= 128: ~12 cycles per output instead of ~70 with mbqm_dsp's preparation per output. */
/* (SRDHM(x, m) >> r, rounded as RDBPOT) + out_off for |x| < 2^30, r >= 1, add = 2^(r-1) + out_off 2^r (see above) */
static inline int32_t mbqm_smmulr(int32_t x, int32_t m, int32_t r, int32_t add)
{
    int32_t v;
    __asm__("smmulr %0, %1, %2" : "=r"(v) : "r"(x * 2), "r"(m));
    return (v + add + (v >> 31)) >> r;
}

static __attribute__((noinline)) void requant_row_fixed(const int32_t *sums, uint32_t n, const uint8_t *bias,
                                                        int32_t m, int32_t s, int32_t out_off, int32_t lo, int32_t hi,
                                                        int8_t *y)
{
    const int32_t r = -s, add = (int32_t)((1u << r) >> 1) + (int32_t)((uint32_t)out_off << r);
    uint32_t c, outside = 0;
    for (c = 0; c < n; c++) { /* no call in this loop: its values stay in registers */
        const int32_t acc = (int32_t)((uint32_t)sums[c] + (uint32_t)tml_ld32(bias + 4 * c));
        const int32_t v = mbqm_smmulr(acc, m, r, add);
        outside |= (uint32_t)acc + 0x40000000u;
        y[c] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
    }
    if (outside & 0x80000000u) /* some |acc| >= 2^30 (never in AD): those outputs again by the general path */
        for (c = 0; c < n; c++) {
            const int32_t acc = (int32_t)((uint32_t)sums[c] + (uint32_t)tml_ld32(bias + 4 * c));
            if ((uint32_t)acc + 0x40000000u >= 0x80000000u)
                y[c] = (int8_t)tml_clamp(mbqm_general(acc, m, s) + out_off, lo, hi);
        }
}

/* One input row x four output channels: acc[j] = sum over the widened row xw[0..end) (2 words per 4 inputs, in
 * SXTB16's lane order, offset added) of the inputs times weight row w + jK. For FULLY_CONNECTED with one row (AD),
 * where no second pixel shares the weights. Per 4 inputs: 2 + 4 LDR, 8 SXTB16, 8 SMLAD; four steps per pass. */
#define GEMV_1X4_STEP                                                                                          \
    "ldr r10, [r0], #4\n\t"                                                                                    \
    "ldr r11, [r0], #4\n\t"                                                                                    \
    "ldr r12, [r2], #4\n\t"                                                                                    \
    "sxtb16 lr, r12\n\t"                                                                                       \
    "smlad r6, r10, lr, r6\n\t"                                                                                \
    "sxtb16 r12, r12, ror #8\n\t"                                                                              \
    "smlad r6, r11, r12, r6\n\t"                                                                               \
    "ldr r12, [r3], #4\n\t"                                                                                    \
    "sxtb16 lr, r12\n\t"                                                                                       \
    "smlad r7, r10, lr, r7\n\t"                                                                                \
    "sxtb16 r12, r12, ror #8\n\t"                                                                              \
    "smlad r7, r11, r12, r7\n\t"                                                                               \
    "ldr r12, [r4], #4\n\t"                                                                                    \
    "sxtb16 lr, r12\n\t"                                                                                       \
    "smlad r8, r10, lr, r8\n\t"                                                                                \
    "sxtb16 r12, r12, ror #8\n\t"                                                                              \
    "smlad r8, r11, r12, r8\n\t"                                                                               \
    "ldr r12, [r5], #4\n\t"                                                                                    \
    "sxtb16 lr, r12\n\t"                                                                                       \
    "smlad r9, r10, lr, r9\n\t"                                                                                \
    "sxtb16 r12, r12, ror #8\n\t"                                                                              \
    "smlad r9, r11, r12, r9\n\t"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void gemv_1x4_dsp(const int32_t *xw, const int32_t *end, const int8_t *w,
                                                          uint32_t K, int32_t *acc)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "add r4, r2, r3, lsl #1\n\t" /* the four weight rows: w + 2K, w + 3K, w + K */
                     "add r5, r4, r3\n\t"
                     "add r3, r2, r3\n\t"
                     "movs r6, #0\n\t"
                     "movs r7, #0\n\t"
                     "movs r8, #0\n\t"
                     "movs r9, #0\n\t"
                     "subs r12, r1, r0\n\t"
                     "tst r12, #8\n\t" /* steps of 4 inputs mod 4 first: one, then two */
                     "beq 2f\n\t" GEMV_1X4_STEP "2:\n\t"
                     "subs r12, r1, r0\n\t"
                     "tst r12, #16\n\t"
                     "beq 5f\n\t" GEMV_1X4_STEP GEMV_1X4_STEP "5:\n\t"
                     "cmp r0, r1\n\t"
                     "beq 3f\n\t"
                     "1:\n\t" GEMV_1X4_STEP GEMV_1X4_STEP GEMV_1X4_STEP GEMV_1X4_STEP "cmp r0, r1\n\t"
                     "bne 1b\n\t"
                     "3:\n\t"
                     "ldr r12, [sp, #36]\n\t" /* acc, the 5th argument */
                     "stmia r12, {r6-r9}\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef GEMV_1X4_STEP
#endif

static void dense_row(const int8_t *x, uint32_t K, const int8_t *w, uint32_t Co, const dense_q *qp, int8_t *y)
{
    const dense_q qv = *qp, *q = &qv; /* see dense_pair */
    uint32_t o = 0;
#if TML_DSP
    if (q->wo == 0) {
        const uint32_t head = K & ~3u, xo2 = tml_pair(q->xo);
        if (head >= 4 && head <= ROW_MAX_K4 && Co >= 4) {
            /* the row widened once, then four channels per pass */
            int32_t xw[ROW_MAX_K4 / 2];
            uint32_t i;
            for (i = 0; i < head; i += 4) {
                uint32_t v = tml_ldu32(x + i);
                xw[i / 2] = __sxtab16(xo2, v);
                xw[i / 2 + 1] = tml_sxtab16_ror8(xo2, v);
            }
            const int32_t m0 = tml_ld32(q->mult), s0 = tml_ld32(q->shift);
            const int fixed = !q->per_channel && s0 <= -1 && s0 >= -23; /* requant_row_fixed's range */
            while (o + 4 <= Co) {
                int32_t sums[ROW_SUMS];
                const uint32_t n = Co - o < ROW_SUMS ? (Co - o) & ~3u : ROW_SUMS;
                uint32_t j, k;
                for (j = 0; j < n; j += 4)
                    gemv_1x4_dsp(xw, xw + head / 2, w + (size_t)(o + j) * K, K, sums + j);
                for (k = 0; head < K && k < n; k++) { /* the last K % 4 inputs */
                    const int8_t *wk = w + (size_t)(o + k) * K;
                    for (i = head; i < K; i++)
                        sums[k] += (x[i] + q->xo) * wk[i];
                }
                if (fixed)
                    requant_row_fixed(sums, n, q->bias + 4 * o, m0, s0, q->out_off, q->lo, q->hi, y + o);
                else
                    for (k = 0; k < n; k++) {
                        const uint32_t c = q->per_channel ? o + k : 0;
                        y[o + k] = requant(sums[k], q->bias + 4 * (o + k), q->mult + 4 * c, q->shift + 4 * c,
                                           q->out_off, q->lo, q->hi);
                    }
                o += n;
            }
        }
        for (; o + 2 <= Co; o += 2) {
            const int8_t *w0 = w + (size_t)o * K, *w1 = w0 + K;
            int32_t a0 = 0, a1 = 0;
            uint32_t i, c0 = q->per_channel ? o : 0, c1 = q->per_channel ? o + 1 : 0;
            tml_dot2(x, w0, w1, K, xo2, &a0, &a1);
            for (i = head; i < K; i++) {
                a0 += (x[i] + q->xo) * w0[i];
                a1 += (x[i] + q->xo) * w1[i];
            }
            y[o] = requant(a0, q->bias + 4 * o, q->mult + 4 * c0, q->shift + 4 * c0, q->out_off, q->lo, q->hi);
            y[o + 1] = requant(a1, q->bias + 4 * (o + 1), q->mult + 4 * c1, q->shift + 4 * c1, q->out_off, q->lo,
                               q->hi);
        }
    }
#else
    for (; o + 4 <= Co; o += 4) {
        int32_t acc[4] = {0, 0, 0, 0};
        uint32_t j;
        tml_dot4(x, w + (size_t)o * K, K, K, q->xo, q->wo, acc);
        for (j = 0; j < 4; j++) {
            uint32_t c = q->per_channel ? o + j : 0;
            y[o + j] = requant(acc[j], q->bias + 4 * (o + j), q->mult + 4 * c, q->shift + 4 * c, q->out_off, q->lo,
                               q->hi);
        }
    }
#endif
    for (; o < Co; o++) {
        uint32_t c = q->per_channel ? o : 0;
        y[o] = requant(tml_dot1(x, w + (size_t)o * K, K, q->xo, q->wo), q->bias + 4 * o, q->mult + 4 * c,
                       q->shift + 4 * c, q->out_off, q->lo, q->hi);
    }
}

#if TML_DSP
#define PAIR_MAX_K 640 /* widened pixel pair: 2 * 640 int16 = 2.5 KB of stack */

/* The 2x2 microkernel of dense_pair, over `pairs` output-channel pairs: pixel a's sums of channels 2p, 2p + 1 in
 * sums[2p], sums[2p + 1], pixel b's SUMS_B words on, over the widened pixel pair bp[0..end) (4 words per 4 inputs:
 * a even, b even, a odd, b odd) and the int8 weight rows w + 2pK, w + (2p+1)K (K = row stride; the rows' first (end - bp) / 4 inputs).
 * In assembly because it needs all 14 usable registers (4 accumulators, 3 pointers and the end, 4 widened weights,
 * 2 inputs) -- GCC's version kept the end pointer on the stack, and a call per pair cost ~30 cycles more. Per 4
 * inputs: 6 LDR (4 pipelined), 4 SXTB16, 8 SMLAD; four steps per pass: 84 modelled cycles for 64 MAC. */
#define GEMM_2X2_STEP                                                                                          \
    "ldr r8, [r2], #4\n\t"                                                                                     \
    "ldr r9, [r3], #4\n\t"                                                                                     \
    "ldr r12, [r0], #4\n\t"                                                                                    \
    "ldr lr, [r0], #4\n\t"                                                                                     \
    "sxtb16 r10, r8\n\t"                                                                                       \
    "sxtb16 r8, r8, ror #8\n\t"                                                                                \
    "sxtb16 r11, r9\n\t"                                                                                       \
    "sxtb16 r9, r9, ror #8\n\t"                                                                                \
    "smlad r4, r12, r10, r4\n\t"                                                                               \
    "smlad r5, r12, r11, r5\n\t"                                                                               \
    "smlad r6, lr, r10, r6\n\t"                                                                                \
    "smlad r7, lr, r11, r7\n\t"                                                                                \
    "ldr r12, [r0], #4\n\t"                                                                                    \
    "ldr lr, [r0], #4\n\t"                                                                                     \
    "smlad r4, r12, r8, r4\n\t"                                                                                \
    "smlad r5, r12, r9, r5\n\t"                                                                                \
    "smlad r6, lr, r8, r6\n\t"                                                                                 \
    "smlad r7, lr, r9, r7\n\t"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void gemm_2x2_dsp(const int32_t *bp, const int32_t *end, const int8_t *w,
                                                          uint32_t pairs, uint32_t K, int32_t *sums)
{
    /* stack after the 9 saved registers and 16 bytes of locals: [sp] sums, [sp+4] pairs left, [sp+8] bp,
     * [sp+12] this pair's first row; the arguments K and sums at [sp+52] and [sp+56] */
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "sub sp, #16\n\t"
                     "ldr r12, [sp, #56]\n\t"
                     "str r12, [sp]\n\t"
                     "str r3, [sp, #4]\n\t"
                     "str r0, [sp, #8]\n\t"
                     "str r2, [sp, #12]\n\t"
                     "4:\n\t"
                     "ldr r12, [sp, #52]\n\t"
                     "add r3, r2, r12\n\t"
                     "movs r4, #0\n\t"
                     "movs r5, #0\n\t"
                     "movs r6, #0\n\t"
                     "movs r7, #0\n\t"
                     "subs r12, r1, r0\n\t"
                     "tst r12, #16\n\t" /* steps of 4 inputs mod 4 first: one, then two */
                     "beq 2f\n\t" GEMM_2X2_STEP "2:\n\t"
                     "subs r12, r1, r0\n\t"
                     "tst r12, #32\n\t"
                     "beq 5f\n\t" GEMM_2X2_STEP GEMM_2X2_STEP "5:\n\t"
                     "cmp r0, r1\n\t"
                     "beq 3f\n\t"
                     "1:\n\t" GEMM_2X2_STEP GEMM_2X2_STEP GEMM_2X2_STEP GEMM_2X2_STEP "cmp r0, r1\n\t"
                     "bne 1b\n\t"
                     "3:\n\t"
                     "ldr r12, [sp]\n\t"
                     "strd r6, r7, [r12, #512]\n\t" /* pixel b's sums SUMS_B words on */
                     "strd r4, r5, [r12], #8\n\t"
                     "str r12, [sp]\n\t"
                     "ldr r0, [sp, #8]\n\t"
                     "ldr r2, [sp, #12]\n\t"
                     "ldr r12, [sp, #52]\n\t"
                     "add r2, r2, r12, lsl #1\n\t" /* the next pair's first row */
                     "str r2, [sp, #12]\n\t"
                     "ldr r12, [sp, #4]\n\t"
                     "subs r12, #1\n\t"
                     "str r12, [sp, #4]\n\t"
                     "bne 4b\n\t"
                     "add sp, #16\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef GEMM_2X2_STEP

/* The microkernel of dense_pair when the op's weights were widened to int16 (widen_weights): two pixels x three
 * output channels per triple, triples one after another in w16 up to wend. A triple's block (w16_triple_words):
 * 3 words that start the accumulators (both pixels'), then per 4 inputs six words -- (w0, w2) of its three
 * channels, then (w1, w3) of them: SXTB16's lanes, matching the widened inputs --, then 3 words per channel
 * (m, round, right) for the requantization that ends the triple. Two forms (w16_form):
 *  - requantized (W16_REQUANT, ops where requant2_ok holds with no slow channel): the weights are doubled and the
 *    accumulators start at 2 bias, so they end at t = 2 (sum + bias) and each output is requant2_dsp's
 *    (SMMLAR(t, m, round) - [t < 0]) >> right, SSAT 8, stored at y[j] (pixel a) and y[ystride + j] (pixel b), y
 *    advancing per triple by its third channel's right >> 8 (3, or 2 into the overlapping last triple of
 *    Co = 3t + 2, so one call does all; ASR by a register reads its bits 0-7 only): no store and reload of the sums,
 *    no requantization call;
 *  - sums (W16_SUMS): the weights as they are, accumulators from 0, right = 0, which sends the triple's end to
 *    storing the sums (pixel a's at y[3t..3t+2] as int32, pixel b's SUMS_B words on) for requant2_dsp,
 *    fix_outputs or requant_pairs.
 * Registers in the loop: 6 accumulators, the two pointers and the end, and 5 operands: per 2 inputs (one lane
 * pair) both pixels' input words and the three channels' weight words in one run of 5 LDRs (6 cycles: a load
 * right after a load takes one) and 6 SMLAD -- 24 modelled cycles per 4 inputs for 24 MAC, against 26 with LDM
 * (an LDM of N words costs N + 1 and never pipelines). Each triple enters a 16-step body where its first pass does
 * the steps mod 16 (the entry computed once per call). */
#define GEMM_2X3_HALF                                                                                          \
    "ldr r8, [r0], #4\n\t"                                                                                     \
    "ldr r9, [r0], #4\n\t"                                                                                     \
    "ldr r10, [r1], #4\n\t"                                                                                    \
    "ldr r11, [r1], #4\n\t"                                                                                    \
    "ldr r12, [r1], #4\n\t"                                                                                    \
    "smlad r2, r8, r10, r2\n\t"                                                                                \
    "smlad r5, r9, r10, r5\n\t"                                                                                \
    "smlad r3, r8, r11, r3\n\t"                                                                                \
    "smlad r6, r9, r11, r6\n\t"                                                                                \
    "smlad r4, r8, r12, r4\n\t"                                                                                \
    "smlad r7, r9, r12, r7\n\t"
#define GEMM_2X3_STEP4 GEMM_2X3_HALF GEMM_2X3_HALF GEMM_2X3_HALF GEMM_2X3_HALF GEMM_2X3_HALF GEMM_2X3_HALF     \
    GEMM_2X3_HALF GEMM_2X3_HALF
/* a triple's start: both pixels' accumulators from its first 3 words, then into the body at the computed entry */
#define GEMM_2X3_TRIPLE_START                                                                                  \
    "ldr r2, [r1], #4\n\t"                                                                                     \
    "ldr r3, [r1], #4\n\t"                                                                                     \
    "ldr r4, [r1], #4\n\t"                                                                                     \
    "mov r5, r2\n\t"                                                                                           \
    "mov r6, r3\n\t"                                                                                           \
    "mov r7, r4\n\t"                                                                                           \
    "ldr pc, [sp, #16]\n\t"
/* the next channel's requantization constants: m, round, right into r8, r9, r0 */
#define GEMM_CH_CONSTS                                                                                         \
    "ldr r8, [r1], #4\n\t"                                                                                     \
    "ldr r9, [r1], #4\n\t"                                                                                     \
    "ldr r0, [r1], #4\n\t"
/* one channel's two outputs: accumulators a (pixel a) and b, m in r8, round in r9, right in r0; y at r10, lr */
#define GEMM_REQUANT_CH(a, b, j)                                                                               \
    "smmlar r11, " a ", r8, r9\n\t"                                                                            \
    "smmlar r12, " b ", r8, r9\n\t"                                                                            \
    "add r11, r11, " a ", asr #31\n\t"                                                                         \
    "add r12, r12, " b ", asr #31\n\t"                                                                         \
    "asr r11, r11, r0\n\t"                                                                                     \
    "asr r12, r12, r0\n\t"                                                                                     \
    "ssat r11, #8, r11\n\t"                                                                                    \
    "ssat r12, #8, r12\n\t"                                                                                    \
    "strb r11, [r10, #" j "]\n\t"                                                                              \
    "strb r12, [lr, #" j "]\n\t"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void gemm_2x3_w16(const int32_t *bp, const int32_t *end, const int32_t *w16,
                                                          const int32_t *wend, void *y, int32_t ystride)
{
    /* stack after the 9 saved registers and 24 bytes of locals: [sp+8] bp, [sp+12] end, [sp+16] where each triple
     * enters the 16-step body, [sp+20] wend; the arguments y and ystride at [sp+60] and [sp+64], y advanced in its
     * slot (an argument's stack slot is the callee's to write) */
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "sub sp, #24\n\t"
                     "str r0, [sp, #8]\n\t"
                     "str r1, [sp, #12]\n\t"
                     "str r3, [sp, #20]\n\t"
                     "mov lr, r1\n\t"
                     "subs r12, r1, r0\n\t"
                     "lsrs r12, r12, #4\n\t"   /* steps */
                     "rsb r12, r12, #0\n\t"
                     "and r12, r12, #15\n\t"   /* steps skipped in the first pass: (16 - steps mod 16) mod 16 */
                     "movs r3, #88\n\t"        /* bytes per step */
                     "mul r12, r12, r3\n\t"
                     "adr r3, .Ltml_gemm23_body\n\t"
                     "add r12, r12, r3\n\t"
                     "orr r12, r12, #1\n\t"    /* Thumb */
                     "str r12, [sp, #16]\n\t"
                     "mov r1, r2\n\t" /* the first triple's start (the others' is at 7) */
                     GEMM_2X3_TRIPLE_START
                     ".balign 4\n"
                     ".Ltml_gemm23_body:\n\t" GEMM_2X3_STEP4 GEMM_2X3_STEP4 GEMM_2X3_STEP4 GEMM_2X3_STEP4
                     ".Ltml_gemm23_body_end:\n\t"
                     ".if .Ltml_gemm23_body_end - .Ltml_gemm23_body != 1408\n\t"
                     ".error \"gemm_2x3_w16: a step is not 88 bytes\"\n\t"
                     ".endif\n\t"
                     "cmp r0, lr\n\t"
                     "bne .Ltml_gemm23_body\n\t"
                     "ldr r10, [sp, #60]\n\t"
                     "ldr lr, [sp, #64]\n\t"
                     GEMM_CH_CONSTS
                     "cmp r0, #0\n\t"
                     "beq 6f\n\t"             /* right = 0: the sums form */
                     "add lr, lr, r10\n\t"
                     GEMM_REQUANT_CH("r2", "r5", "0")
                     GEMM_CH_CONSTS
                     GEMM_REQUANT_CH("r3", "r6", "1")
                     GEMM_CH_CONSTS
                     GEMM_REQUANT_CH("r4", "r7", "2")
                     "add r10, r10, r0, lsr #8\n\t" /* y's advance, in right's bits 8+ (ASR reads bits 0-7) */
                     "str r10, [sp, #60]\n\t"
                     "7:\n\t" /* the next triple started here: its loads pipeline and the entry is the only branch */
                     "ldr r8, [sp, #20]\n\t"
                     "cmp r1, r8\n\t"
                     "beq 8f\n\t"
                     "ldr r0, [sp, #8]\n\t"
                     "ldr lr, [sp, #12]\n\t"
                     GEMM_2X3_TRIPLE_START
                     "8:\n\t"
                     "add sp, #24\n\t"
                     "pop {r4-r11, pc}\n\t"
                     "6:\n\t"
                     "str r5, [r10, #512]\n\t" /* pixel b's sums SUMS_B words on */
                     "str r6, [r10, #516]\n\t"
                     "str r7, [r10, #520]\n\t"
                     "stmia r10!, {r2, r3, r4}\n\t"
                     "str r10, [sp, #60]\n\t"
                     "b 7b\n\t");
}

/* gemm_2x3_w16's last channel when Co = 3t + 1 (IC's 16, KWS's 64, VWW's 16/64/256): that channel alone, in a block
 * of its own (1 word that starts both accumulators, per 4 inputs its (w0, w2) and (w1, w3), then m, round, right;
 * either form): per 4 inputs one run of 6 LDRs and 4 SMLAD, two steps per pass (an odd count's first alone): 13
 * modelled cycles per step. Outputs at y[0] and y[ystride], or (right = 0) the sums at y[0] and SUMS_B words on. */
#define GEMM_2X1_STEP                                                                                          \
    "ldr r8, [r0], #4\n\t"                                                                                     \
    "ldr r9, [r0], #4\n\t"                                                                                     \
    "ldr r10, [r0], #4\n\t"                                                                                    \
    "ldr r11, [r0], #4\n\t"                                                                                    \
    "ldr r12, [r2], #4\n\t"                                                                                    \
    "ldr lr, [r2], #4\n\t"                                                                                     \
    "smlad r4, r8, r12, r4\n\t"                                                                                \
    "smlad r5, r9, r12, r5\n\t"                                                                                \
    "smlad r4, r10, lr, r4\n\t"                                                                                \
    "smlad r5, r11, lr, r5\n\t"

__attribute__((naked, noinline)) static void gemm_2x1_w16(const int32_t *bp, const int32_t *end, const int32_t *w1,
                                                          void *y, int32_t ystride)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "ldr r4, [r2], #4\n\t"
                     "mov r5, r4\n\t"
                     "subs r12, r1, r0\n\t"
                     "tst r12, #16\n\t" /* an odd step count: one step first */
                     "beq 2f\n\t" GEMM_2X1_STEP "2:\n\t"
                     "cmp r0, r1\n\t"
                     "beq 3f\n\t"
                     "1:\n\t" GEMM_2X1_STEP GEMM_2X1_STEP
                     "cmp r0, r1\n\t"
                     "bne 1b\n\t"
                     "3:\n\t"
                     "ldr r8, [r2], #4\n\t"
                     "ldr r9, [r2], #4\n\t"
                     "ldr r6, [r2]\n\t"
                     "ldr r7, [sp, #36]\n\t" /* ystride, the 5th argument */
                     "cbz r6, 5f\n\t"
                     "smmlar r11, r4, r8, r9\n\t"
                     "smmlar r12, r5, r8, r9\n\t"
                     "add r11, r11, r4, asr #31\n\t"
                     "add r12, r12, r5, asr #31\n\t"
                     "asr r11, r11, r6\n\t"
                     "asr r12, r12, r6\n\t"
                     "ssat r11, #8, r11\n\t"
                     "ssat r12, #8, r12\n\t"
                     "strb r11, [r3]\n\t"
                     "strb r12, [r3, r7]\n\t"
                     "pop {r4-r11, pc}\n\t"
                     "5:\n\t"
                     "str r4, [r3]\n\t"
                     "str r5, [r3, #512]\n\t" /* SUMS_B words on */
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef GEMM_2X1_STEP
#undef GEMM_REQUANT_CH
#undef GEMM_CH_CONSTS
#undef GEMM_2X3_TRIPLE_START
#undef GEMM_2X3_STEP4
#undef GEMM_2X3_HALF

#define GEMM_TRIPLES 22 /* channel triples per gemm_2x3_w16 call in the sums form: 66 channels of sums */
#define W16_MIN_PIXELS 16 /* fewer output pixels keep the int8 weights: the widened copy costs twice their RAM */
#define W16_SUMS 0        /* widen_weights' forms (see gemm_2x3_w16) */
#define W16_REQUANT 1

/* Words of one triple's block, and of the single-channel block (Co = 3t + 1), for K inputs */
static uint32_t w16_triple_words(uint32_t K, int form) { return 6 * ((K + 3) / 4) + (form == W16_REQUANT ? 12 : 6); }
static uint32_t w16_single_words(uint32_t K) { return 2 * ((K + 3) / 4) + 4; }

/* Triples of widen_weights' layout for Co channels: Co / 3 full ones, then for Co = 3t + 2 one more (requantized
 * form: channels Co - 3..Co - 1, overlapping the one before, so that no output beyond Co is written; sums form: the
 * last two channels and a zero one); Co = 3t + 1 adds a single-channel block after them. */
static uint32_t w16_triples(uint32_t Co) { return Co / 3 + (Co % 3 == 2); }

/* Bytes of widen_weights' layout, 0 when it would not fit 32 bits */
static uint32_t w16_bytes(uint32_t Co, uint32_t K, int form)
{
    const uint64_t n = 4 * ((uint64_t)w16_triples(Co) * w16_triple_words(K, form) +
                            (Co % 3 == 1 ? w16_single_words(K) : 0));
    return n > 0xffffffffu ? 0 : (uint32_t)n;
}

/* Lanes (w[4s + i], w[4s + i + 2]) of a weight row of K (i = 0: even, 1: odd), each times `scale`, 0 past K */
static uint32_t w16_lanes(const int8_t *row, uint32_t K, uint32_t k, int32_t scale)
{
    const int32_t lo = k < K ? row[k] * scale : 0, hi = k + 2 < K ? row[k + 2] * scale : 0;
    return ((uint32_t)lo & 0xffffu) | (uint32_t)hi << 16;
}

/* One channel's (m, round, right) in the requantized form: round = (2 out_off + 1) << (right - 1), the SMMLAR
 * addend of requant2_dsp; a channel outside right 1..23 is one requant2_ok proved constant (its output is
 * overwritten), given any valid shift. */
static int32_t *w16_channel_q(int32_t *dst, const dense_q *q, uint32_t c)
{
    int32_t r = -tml_ld32(q->shift + 4 * c);
    if (r < 1 || r > 23)
        r = 1;
    dst[0] = tml_ld32(q->mult + 4 * c);
    dst[1] = (int32_t)((uint32_t)(2 * q->out_off + 1) << (r - 1));
    dst[2] = r;
    return dst + 3;
}

/* The int8 weight rows w[Co][K] widened into gemm_2x3_w16's / gemm_2x1_w16's blocks (see there), in `form`
 * (W16_REQUANT: doubled, with 2 bias first and each channel's requantization constants last). Once per op: ~20
 * cycles per 4 weights. */
static __attribute__((noinline)) void widen_weights(const int8_t *w, uint32_t K, uint32_t Co, const dense_q *q,
                                                    int form, int32_t *dst)
{
    const uint32_t steps = (K + 3) / 4, nt = w16_triples(Co);
    const int32_t scale = form == W16_REQUANT ? 2 : 1;
    uint32_t t, j, s, c[3];
    for (t = 0; t <= nt; t++) {
        const uint32_t n = t < nt ? 3 : Co % 3 == 1; /* channels of this block: a triple, or the single one */
        if (n == 0)
            break;
        for (j = 0; j < n; j++) /* the requantized form's last triple for Co = 3t + 2 overlaps the one before */
            c[j] = t == nt ? Co - 1 : form == W16_REQUANT && 3 * t + 3 > Co ? Co - 3 + j : 3 * t + j;
        for (j = 0; j < n; j++)
            *dst++ = form == W16_REQUANT ? (int32_t)(2u * (uint32_t)tml_ld32(q->bias + 4 * c[j])) : 0;
        for (s = 0; s < steps; s++)
            for (j = 0; j < 2 * n; j++) { /* (w0, w2) of the block's channels, then (w1, w3) */
                const uint32_t ch = c[j % n];
                *dst++ = ch < Co ? (int32_t)w16_lanes(w + (size_t)ch * K, K, 4 * s + j / n, scale) : 0;
            }
        for (j = 0; j < n; j++)
            if (form == W16_REQUANT) {
                dst = w16_channel_q(dst, q, c[j]);
                if (j == 2) /* y's advance after the triple: 3, or 2 into the overlapping last one (Co = 3t + 2) */
                    dst[-1] |= (t + 2 == nt && Co % 3 == 2 ? 2 : 3) << 8;
            } else if (j == 0) { /* right = 0 marks the sums form */
                dst[0] = dst[1] = dst[2] = 0;
                dst += 3;
            }
    }
}

/* The op's weights widened for gemm_2x3_w16 in the model's scratch (the caller's arena beyond arena_bytes, which
 * tml_load hands to the kernels), or NULL when there is no room or too few output pixels to pay for widening: then
 * dense_pair keeps the int8 rows and the 2x2 kernel. Widened once and kept: each op's copy follows a header naming
 * what it was made from (CONST is read-only while the model is loaded, and tml_load empties the cache), so a
 * PATCH stage's tiles and later inferences find it; when the scratch is full it is emptied and refilled from 0. */
typedef struct {
    const int8_t *w;
    const uint8_t *bias, *mult, *shift;
    int32_t out_off;
    uint32_t bytes;
} w16_header;

static const int32_t *w16_prepare(tml_model *m, const int8_t *w, uint32_t K, uint32_t Co, size_t npix,
                                  const dense_q *q, int form)
{
    const uint32_t n = w16_bytes(Co, K, form);
    uint32_t off = 0;
    w16_header *h;
    if (npix < W16_MIN_PIXELS || n == 0 || m->scratch == NULL || m->scratch_bytes < sizeof *h ||
        n > m->scratch_bytes - sizeof *h)
        return NULL;
    while (off < m->scratch_used) {
        h = (w16_header *)(void *)(m->scratch + off);
        if (h->w == w && h->bias == q->bias && h->mult == q->mult && h->shift == q->shift &&
            h->out_off == (form == W16_REQUANT ? q->out_off : 256) && h->bytes == n)
            return (const int32_t *)(const void *)(h + 1);
        off += sizeof *h + h->bytes;
    }
    if (m->scratch_bytes - m->scratch_used < sizeof *h + n)
        m->scratch_used = 0;
    h = (w16_header *)(void *)(m->scratch + m->scratch_used);
    h->w = w;
    h->bias = q->bias;
    h->mult = q->mult;
    h->shift = q->shift;
    h->out_off = form == W16_REQUANT ? q->out_off : 256; /* 256: the sums form (no int8 offset) */
    h->bytes = n;
    m->scratch_used += sizeof *h + n;
    widen_weights(w, K, Co, q, form, (int32_t *)(void *)(h + 1));
    return (const int32_t *)(const void *)(h + 1);
}

#define GEMM_PAIRS 32 /* channel pairs per gemm_2x2_dsp call */
#define SUMS_B 128    /* words from pixel a's sums to pixel b's in a two-pixel sums block (requant2_dsp's #512) */

#define CONST_MAX_C 256 /* output channels requant2_ok can mark constant: 288 bytes of stack */

/* Whether requant2_dsp's shortcut is exact for every output of an op (checked once per op): per-channel
 * multipliers with shift in [-23, -1] (right shift 1..23, no left shift), the full int8 activation range, and
 * |sum + bias| < 2^30 for every possible sum of K terms (|x + xo| <= 255, |w| <= 128). With `mask` (Co <=
 * CONST_MAX_C) a channel outside those bounds is still accepted when its output is one value for every possible
 * sum: bias +-2^30 with a 2^-26..2^-31 scale (VWW's later 1x1 layers, over half their channels) saturates. MBQM
 * with m >= 0 and no left shift is monotonic in sum + bias (which cannot wrap here), so equal outputs at both ends
 * of the sum's range prove it; the value goes to val[c], bit c of mask is set, and the caller overwrites what
 * requant2_dsp wrote there. */
static int requant2_ok(const dense_q *q, uint32_t Co, uint32_t K, uint32_t *mask, int8_t *val, uint32_t *slow)
{
    const int64_t sum_max = (int64_t)K * 255 * 128;
    uint32_t c, nslow = 0;
    if (!q->per_channel || q->lo != -128 || q->hi != 127 || sum_max >= (1 << 30))
        return 0;
    if (mask != NULL) {
        if (Co > CONST_MAX_C) {
            mask = NULL;
        } else {
            memset(mask, 0, 4 * ((Co + 31) / 32));
            memset(slow, 0, 4 * ((Co + 31) / 32));
        }
    }
    for (c = 0; c < Co; c++) {
        const int32_t sh = tml_ld32(q->shift + 4 * c), b = tml_ld32(q->bias + 4 * c);
        const int64_t bm = b < 0 ? -(int64_t)b : (int64_t)b;
        if (sh <= -1 && sh >= -23 && bm < (1 << 30) - sum_max)
            continue;
        if (mask != NULL && sh <= 0 && bm + sum_max < INT32_MAX) {
            const int32_t m = tml_ld32(q->mult + 4 * c);
            const int8_t lo = requant_v((int32_t)-sum_max, b, m, sh, q->out_off, -128, 127);
            if (lo == requant_v((int32_t)sum_max, b, m, sh, q->out_off, -128, 127)) {
                mask[c / 32] |= 1u << (c % 32);
                val[c] = lo;
                continue;
            }
        }
        /* any other channel: requantized in C after requant2_dsp (fix_outputs), while they are a quarter or less */
        if (mask == NULL || ++nslow > Co / 4)
            return 0;
        slow[c / 32] |= 1u << (c % 32);
    }
    return 1;
}

/* ya/yb[o0 + i] = requant(sums[i]), requant(sums[SUMS_B + i]) for the channels o0 + i of mask, i < n:
 * requant2_ok's slow channels, after requant2_dsp wrote a wrong value there */
static __attribute__((noinline)) void fix_outputs(const uint32_t *mask, const int32_t *sums, uint32_t o0, uint32_t n,
                                                  const dense_q *q, int8_t *ya, int8_t *yb)
{
    uint32_t o;
    for (o = o0; o < o0 + n; o++)
        if (mask[o / 32] >> (o % 32) & 1u) {
            const int32_t b = tml_ld32(q->bias + 4 * o), m = tml_ld32(q->mult + 4 * o), sh = tml_ld32(q->shift + 4 * o);
            ya[o] = requant_v(sums[o - o0], b, m, sh, q->out_off, q->lo, q->hi);
            yb[o] = requant_v(sums[SUMS_B + o - o0], b, m, sh, q->out_off, q->lo, q->hi);
        }
}

/* ya[c] = yb[c] = val[c] for the channels of mask (requant2_ok), c < n */
static void const_outputs(const uint32_t *mask, const int8_t *val, uint32_t n, int8_t *ya, int8_t *yb)
{
    uint32_t wi;
    for (wi = 0; wi < (n + 31) / 32; wi++) {
        uint32_t bits = mask[wi];
        while (bits) {
            const uint32_t c = 32 * wi + (uint32_t)__builtin_ctz(bits);
            bits &= bits - 1;
            ya[c] = val[c];
            yb[c] = val[c];
        }
    }
}

/* requant2_ok for a 3x3 depthwise op (9 terms per sum). */
static int dw3_fast_ok(const int32_t *p, uint32_t Co, const uint8_t *bias, const uint8_t *shift)
{
    dense_q q3;
    q3.bias = bias;
    q3.shift = shift;
    q3.per_channel = 1;
    q3.lo = p[8];
    q3.hi = p[9];
    return requant2_ok(&q3, Co, 9, NULL, NULL, NULL);
}

/* ya[c] = requant(sums[c]), yb[c] = requant(sums[SUMS_B + c]) for c < n, each channel's parameters read once for
 * both pixels. With right = -shift in [1, 23] and |acc| < 2^30 (requant2_ok), for acc = sum + bias:
 *   SRDHM(acc, m) = SMMULR(2 acc, m)                                   (tml_mbqm's DSP shortcut, see mbqm_fixed_apply)
 *   RDBPOT(v, r) + off = (v + 2^(r-1) + off * 2^r - [acc < 0]) >> r    (floor division; [v < 0] may be replaced
 *                                                                      by [acc < 0]: they differ only when v = 0,
 *                                                                      where both give 0 for r >= 1)
 * so one SMMLAR adds the rounding constant and the output offset, (2 off + 1) << (r - 1), and SSAT clamps to
 * int8. Per channel: 5 loads, 4 to prepare, 7 per output: 26 modelled cycles for 2 outputs (vs ~84 in C). */
/* one channel of requant2_dsp: its bias, multiplier and shift (= -right) read, pixel b's sum (SUMS_B words on) and
 * pixel a's, both outputs stored */
#define REQUANT2_ONE \
    "ldr r8, [r2], #4\n\t" \
    "ldr r9, [r3], #4\n\t" \
    "ldr r10, [r4], #4\n\t" \
    "ldr r12, [r0, #512]\n\t" \
    "ldr lr, [r0], #4\n\t" \
    "lsl r8, r8, #1\n\t" \
    "mvn r11, r10\n\t" \
    "lsl r11, r7, r11\n\t" \
    "rsb r10, r10, #0\n\t" \
    "add r12, r8, r12, lsl #1\n\t" \
    "add lr, r8, lr, lsl #1\n\t" \
    "smmlar r8, lr, r9, r11\n\t" \
    "smmlar r9, r12, r9, r11\n\t" \
    "add r8, r8, lr, asr #31\n\t" \
    "add r9, r9, r12, asr #31\n\t" \
    "asr r8, r8, r10\n\t" \
    "asr r9, r9, r10\n\t" \
    "ssat r8, #8, r8\n\t" \
    "ssat r9, #8, r9\n\t" \
    "strb r8, [r5], #1\n\t" \
    "strb r9, [r6], #1\n\t"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void requant2_dsp(const int32_t *sums, uint32_t n, const uint8_t *bias,
                                                          const uint8_t *mult, const uint8_t *shift, int8_t *ya,
                                                          int8_t *yb, int32_t off21)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "ldr r4, [sp, #36]\n\t" /* shift, ya, yb, off21: the stacked arguments */
                     "ldr r5, [sp, #40]\n\t"
                     "ldr r6, [sp, #44]\n\t"
                     "ldr r7, [sp, #48]\n\t"
                     "tst r1, #1\n\t" /* an odd channel count: one channel first, then two per pass */
                     "add r1, r0, r1, lsl #2\n\t"
                     "beq 2f\n\t" REQUANT2_ONE "2:\n\t"
                     "cmp r0, r1\n\t"
                     "beq 3f\n\t"
                     "1:\n\t" REQUANT2_ONE REQUANT2_ONE "cmp r0, r1\n\t"
                     "bne 1b\n\t"
                     "3:\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef REQUANT2_ONE

/* The general form of requant2_dsp (any parameters): ya/yb[o0 + i] from sums[i] and sums[SUMS_B + i], i < n. A function
 * of its own so its loop stays in registers. */
static __attribute__((noinline)) void requant_pairs(const int32_t *sums, uint32_t n, uint32_t o0,
                                                    const dense_q *qp, int8_t *ya, int8_t *yb)
{
    const dense_q qv = *qp, *q = &qv;
    uint32_t i;
    for (i = 0; i < n; i++) {
        const uint32_t o = o0 + i, c = q->per_channel ? o : 0;
        const int32_t b = tml_ld32(q->bias + 4 * o), m = tml_ld32(q->mult + 4 * c), sh = tml_ld32(q->shift + 4 * c);
        ya[o] = requant_v(sums[i], b, m, sh, q->out_off, q->lo, q->hi);
        yb[o] = requant_v(sums[SUMS_B + i], b, m, sh, q->out_off, q->lo, q->hi);
    }
}

/* Two pixels x two output channels. The pixels' inputs are widened once (offset added) into 32-bit words laid out
 * as SXTB16 leaves the weights: per 4 inputs [a: x0,x2] [b: x0,x2] [a: x1,x3] [b: x1,x3]. The inner loop then
 * needs per 4 inputs 2 LDR + 4 SXTB16 for the weights, 4 LDR for x and 8 SMLAD: 16 MAC in about 20 instructions,
 * every widened weight used twice and every widened input twice. */
/* A pixel pair's inputs read in place from the input tensor: `n` runs of `bytes` (a multiple of 4), `step` apart
 * (the rows of two receptive fields inside the input; an even number of output channels). */
typedef struct {
    uint32_t n, bytes;
    size_t step;
} pair_rows;

/* dense_pair's widened inputs read from two fields' rows in place: per 4 inputs of each pixel
 * [a: x0,x2] [b: x0,x2] [a: x1,x3] [b: x1,x3], the offset added. Per 8 inputs 4 LDR, 8 SXTAB16 and one STM of 8
 * words: 13 modelled cycles per 4 inputs (19 as GCC compiled the C loop); a row's bytes % 8 (4) first. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void widen_rows(const int8_t *xa, const int8_t *xb, const pair_rows *rows,
                                                        uint32_t xo2, int32_t *buf)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "ldr lr, [sp, #36]\n\t"      /* buf, the 5th argument */
                     "ldmia r2, {r4, r5, r6}\n\t" /* n, bytes, step */
                     "sub r6, r6, r5\n\t"
                     "push {r4, r5, r6}\n\t" /* [sp] rows left, [sp+4] bytes, [sp+8] step - bytes */
                     "0:\n\t"
                     "ldr r12, [sp, #4]\n\t"
                     "tst r12, #4\n\t"
                     "add r12, r0, r12\n\t" /* this row's end */
                     "beq 2f\n\t"
                     "ldr r8, [r0], #4\n\t"
                     "ldr r10, [r1], #4\n\t"
                     "sxtab16 r4, r3, r8\n\t"
                     "sxtab16 r5, r3, r10\n\t"
                     "sxtab16 r6, r3, r8, ror #8\n\t"
                     "sxtab16 r7, r3, r10, ror #8\n\t"
                     "stmia lr!, {r4-r7}\n\t"
                     "2:\n\t"
                     "cmp r0, r12\n\t"
                     "beq 3f\n\t"
                     "1:\n\t"
                     "ldr r8, [r0], #4\n\t"
                     "ldr r9, [r0], #4\n\t"
                     "ldr r10, [r1], #4\n\t"
                     "ldr r11, [r1], #4\n\t"
                     "sxtab16 r4, r3, r8\n\t"
                     "sxtab16 r5, r3, r10\n\t"
                     "sxtab16 r6, r3, r8, ror #8\n\t"
                     "sxtab16 r7, r3, r10, ror #8\n\t"
                     "sxtab16 r8, r3, r9\n\t"
                     "sxtab16 r10, r3, r9, ror #8\n\t"
                     "sxtab16 r9, r3, r11\n\t"
                     "sxtab16 r11, r3, r11, ror #8\n\t"
                     "stmia lr!, {r4-r11}\n\t"
                     "cmp r0, r12\n\t"
                     "bne 1b\n\t"
                     "3:\n\t"
                     "ldr r12, [sp, #8]\n\t"
                     "add r0, r12\n\t"
                     "add r1, r12\n\t"
                     "ldr r12, [sp]\n\t"
                     "subs r12, #1\n\t"
                     "str r12, [sp]\n\t"
                     "bne 0b\n\t"
                     "add sp, #12\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop

/* A pixel pair's inputs xa[0..n), xb[0..n) (n a multiple of 4) widened into buf in the pair layout (per 4 inputs
 * [a: x0,x2] [b: x0,x2] [a: x1,x3] [b: x1,x3], each plus xo); inline: a call costs short rows more than the
 * assembly widen_rows saves. */
static inline void widen_run(const int8_t *xa, const int8_t *xb, uint32_t n, uint32_t xo2, int32_t *buf)
{
    uint32_t i;
    for (i = 0; i < n; i += 4) {
        uint32_t va = tml_ldu32(xa + i), vb = tml_ldu32(xb + i);
        buf[i] = __sxtab16(xo2, va);
        buf[i + 1] = __sxtab16(xo2, vb);
        buf[i + 2] = tml_sxtab16_ror8(xo2, va);
        buf[i + 3] = tml_sxtab16_ror8(xo2, vb);
    }
}

static void dense_pair(const int8_t *xa, const int8_t *xb, uint32_t K, const int8_t *w, uint32_t Co,
                       const dense_q *qp, int8_t *ya, int8_t *yb, const pair_rows *rows)
{
    /* the kernels' path reads *qp a few times; the C requantization's works on a local copy (stores through int8_t
     * pointers may alias anything, which would force reloads of *qp), made only there */
    dense_q qv;
    const dense_q *q = qp;
    int32_t buf[PAIR_MAX_K];
    const uint32_t K4 = K & ~3u, xo2 = tml_pair(q->xo);
    uint32_t i, o;
    uint32_t Kb = K4; /* inputs the microkernel walks */
    int32_t sums[SUMS_B + 3 * GEMM_TRIPLES]; /* two pixels' sums, either kernel's (3 x 22 >= 2 x 32 channels) */
    if (rows != NULL)
        widen_rows(xa, xb, rows, xo2, buf);
    else /* one run (inline: a call costs short rows more than the assembly saves) */
        widen_run(xa, xb, K4, xo2, buf);
    if (K4 < K && (q->weights_overrun_ok || q->w16 != NULL)) {
        /* the last K % 4 inputs padded to 4 with the input zero point: the pad lanes widen to 0 and add nothing
         * whatever weight bytes (the next row's, or past the last row inside CONST) they meet */
        uint32_t va = 0, vb = 0;
        for (i = 4; i-- > 0;) {
            const uint32_t za = K4 + i < K ? (uint8_t)xa[K4 + i] : (uint8_t)(-q->xo);
            const uint32_t zb = K4 + i < K ? (uint8_t)xb[K4 + i] : (uint8_t)(-q->xo);
            va = va << 8 | za;
            vb = vb << 8 | zb;
        }
        buf[K4] = __sxtab16(xo2, va);
        buf[K4 + 1] = __sxtab16(xo2, vb);
        buf[K4 + 2] = tml_sxtab16_ror8(xo2, va);
        buf[K4 + 3] = tml_sxtab16_ror8(xo2, vb);
        Kb = K4 + 4;
    }
    if (q->w16 != NULL && q->w16_form == W16_REQUANT) {
        /* requantized in the kernels: Co / 3 triples, then for Co = 3t + 2 the last three channels (one computed
         * twice) or for Co = 3t + 1 the last channel alone */
        const int32_t *wt = q->w16 + (size_t)(Co / 3) * w16_triple_words(K, W16_REQUANT);
        const int32_t ys = (int32_t)(yb - ya);
        if (Co % 3 == 2) /* the overlapping triple right after the others (y advanced by 2 into it) */
            gemm_2x3_w16(buf, buf + Kb, q->w16, wt + w16_triple_words(K, W16_REQUANT), ya, ys);
        else if (Co >= 3)
            gemm_2x3_w16(buf, buf + Kb, q->w16, wt, ya, ys);
        if (Co % 3 == 1)
            gemm_2x1_w16(buf, buf + Kb, wt, ya + Co - 1, ys);
        if (q->const_mask != NULL)
            const_outputs(q->const_mask, q->const_val, Co, ya, yb);
        return;
    }
    qv = *qp;
    q = &qv;
    if (q->w16 != NULL) { /* the sums form: up to GEMM_TRIPLES triples per call, then the sums requantized */
        const int32_t *wt = q->w16;
        const uint32_t tw = w16_triple_words(K, W16_SUMS);
        for (o = 0; o < Co;) {
            const uint32_t triples = (Co - o + 2) / 3 < GEMM_TRIPLES ? (Co - o + 2) / 3 : GEMM_TRIPLES;
            const uint32_t n = Co - o < 3 * triples ? Co - o : 3 * triples;
            const uint32_t full = n == 3 * triples - 2 ? triples - 1 : triples; /* the rest: one channel */
            if (full > 0)
                gemm_2x3_w16(buf, buf + Kb, wt, wt + (size_t)full * tw, sums, 0);
            wt += (size_t)full * tw;
            if (full < triples) {
                gemm_2x1_w16(buf, buf + Kb, wt, sums + 3 * full, 0);
                wt += w16_single_words(K);
            }
            if (q->fast_requant) {
                requant2_dsp(sums, n, q->bias + 4 * o, q->mult + 4 * o, q->shift + 4 * o, ya + o, yb + o,
                             2 * q->out_off + 1);
                if (q->slow_mask != NULL)
                    fix_outputs(q->slow_mask, sums, o, n, q, ya, yb);
            } else
                requant_pairs(sums, n, o, q, ya, yb);
            o += n;
        }
        if (q->fast_requant && q->const_mask != NULL)
            const_outputs(q->const_mask, q->const_val, o, ya, yb);
        return;
    }
    for (o = 0; o + 2 <= Co;) {
        const uint32_t pairs = (Co - o) / 2 < GEMM_PAIRS ? (Co - o) / 2 : GEMM_PAIRS;
        uint32_t pr;
        gemm_2x2_dsp(buf, buf + Kb, w + (size_t)o * K, pairs, K, sums);
        for (pr = 0; Kb < K && pr < pairs; pr++) { /* the last K % 4 inputs */
            const int8_t *w0 = w + (size_t)(o + 2 * pr) * K, *w1 = w0 + K;
            for (i = K4; i < K; i++) {
                int32_t xva = xa[i] + q->xo, xvb = xb[i] + q->xo;
                sums[2 * pr] += xva * w0[i];
                sums[2 * pr + 1] += xva * w1[i];
                sums[SUMS_B + 2 * pr] += xvb * w0[i];
                sums[SUMS_B + 2 * pr + 1] += xvb * w1[i];
            }
        }
        if (q->fast_requant) {
            requant2_dsp(sums, 2 * pairs, q->bias + 4 * o, q->mult + 4 * o, q->shift + 4 * o, ya + o, yb + o,
                         2 * q->out_off + 1);
            if (q->slow_mask != NULL)
                fix_outputs(q->slow_mask, sums, o, 2 * pairs, q, ya, yb);
        } else
            requant_pairs(sums, 2 * pairs, o, q, ya, yb);
        o += 2 * pairs;
    }
    if (q->fast_requant && q->const_mask != NULL)
        const_outputs(q->const_mask, q->const_val, o, ya, yb);
    for (; o < Co; o++) {
        uint32_t c = q->per_channel ? o : 0;
        ya[o] = requant(tml_dot1(xa, w + (size_t)o * K, K, q->xo, 0), q->bias + 4 * o, q->mult + 4 * c,
                        q->shift + 4 * c, q->out_off, q->lo, q->hi);
        yb[o] = requant(tml_dot1(xb, w + (size_t)o * K, K, q->xo, 0), q->bias + 4 * o, q->mult + 4 * c,
                        q->shift + 4 * c, q->out_off, q->lo, q->hi);
    }
}

/* dense_pair's requantized-kernels path for one pixel pair of K inputs, K a multiple of 4 (the im2col loop's padded
 * patches, or with `rows` both windows inside the input): the same widening and kernel calls without dense_pair's
 * checks for the other paths, its copy of the parameters and its 3.5 KB frame. */
static __attribute__((noinline)) void pair_w16(const int8_t *xa, const int8_t *xb, uint32_t K, uint32_t Co,
                                               const dense_q *q, int8_t *ya, int8_t *yb, const pair_rows *rows)
{
    int32_t buf[PAIR_MAX_K];
    const uint32_t xo2 = tml_pair(q->xo), tw = w16_triple_words(K, W16_REQUANT);
    const int32_t *w16 = q->w16, *wt = w16 + (size_t)(Co / 3) * tw;
    const int32_t ys = (int32_t)(yb - ya);
    if (rows != NULL)
        widen_rows(xa, xb, rows, xo2, buf);
    else
        widen_run(xa, xb, K, xo2, buf);
    if (Co % 3 == 2)
        gemm_2x3_w16(buf, buf + K, w16, wt + tw, ya, ys);
    else if (Co >= 3)
        gemm_2x3_w16(buf, buf + K, w16, wt, ya, ys);
    if (Co % 3 == 1)
        gemm_2x1_w16(buf, buf + K, wt, ya + Co - 1, ys);
    if (q->const_mask != NULL)
        const_outputs(q->const_mask, q->const_val, Co, ya, yb);
}

/* dense_pair's requantized-kernels path for a whole 1x1 convolution over dense pixels (stride 1, C a multiple of
 * 4): the pixel pairs x[2p], x[2p + 1] (C bytes each) widened and run through the triples in one loop, so
 * dense_pair's frame and checks and conv_2d's pixel addressing are paid once per op, not per pair. */
static __attribute__((noinline)) void pw_pairs_w16(const int8_t *x, size_t pairs, uint32_t C, uint32_t Co,
                                                   const dense_q *q, int8_t *y)
{
    int32_t buf[PAIR_MAX_K];
    const uint32_t xo2 = tml_pair(q->xo), tw = w16_triple_words(C, W16_REQUANT);
    const int32_t *w16 = q->w16, *wt = w16 + (size_t)(Co / 3) * tw;
    const uint32_t *mask = q->const_mask;
    const int8_t *val = q->const_val;
    size_t pr;
    for (pr = 0; pr < pairs; pr++, x += 2 * C, y += 2 * Co) {
        const int8_t *xb = x + C;
        widen_run(x, xb, C, xo2, buf);
        if (Co % 3 == 2)
            gemm_2x3_w16(buf, buf + C, w16, wt + tw, y, (int32_t)Co);
        else if (Co >= 3)
            gemm_2x3_w16(buf, buf + C, w16, wt, y, (int32_t)Co);
        if (Co % 3 == 1)
            gemm_2x1_w16(buf, buf + C, wt, y + Co - 1, (int32_t)Co);
        if (mask != NULL)
            const_outputs(mask, val, Co, y, y + Co);
    }
}
#endif

/* dst[0..n) = src[0..n): short runs (a few channels, e.g. an RGB or single-channel tap row) as a byte loop, which
 * beats a library call; longer ones by memcpy. */
static inline void copy_bytes(int8_t *dst, const int8_t *src, uint32_t n)
{
    uint32_t k = 0;
    if (n >= 16) {
        memcpy(dst, src, n);
        return;
    }
#if TML_DSP
    for (; k + 4 <= n; k += 4) { /* a word at a time (the M4 allows unaligned LDR/STR) */
        uint32_t v = tml_ldu32(src + k);
        memcpy(dst + k, &v, 4);
    }
#endif
    for (; k < n; k++)
        dst[k] = src[k];
}

static inline void fill_bytes(int8_t *dst, int8_t v, uint32_t n)
{
    uint32_t k;
    if (n < 16)
        for (k = 0; k < n; k++)
            dst[k] = v;
    else
        memset(dst, v, n);
}

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
        tap_range(ix0, 1, Kw, W, &kx0, &kx1);
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

#if TML_DSP
/* a receptive field inside the input as one vector: its rows copied one after another, a word at a time (the M4
 * allows unaligned LDR/STR), the row's last bytes % 4 singly */
static __attribute__((noinline)) void copy_rows(int8_t *dst, const int8_t *src, const pair_rows *rows)
{
    const uint32_t n = rows->n, words = rows->bytes / 4, tail = rows->bytes % 4;
    const size_t step = rows->step - 4 * (size_t)words;
    uint32_t r, i;
    for (r = 0; r < n; r++, src += step) {
        for (i = 0; i < words; i++, src += 4, dst += 4) {
            const uint32_t v = tml_ldu32(src);
            memcpy(dst, &v, 4);
        }
        for (i = 0; i < tail; i++)
            *dst++ = src[i];
    }
}
#endif

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

static tml_status conv_2d(tml_model *m, const tml_op *op)
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
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_in(op, 1), &w);
    get(m, tml_op_in(op, 2), &b);
    get(m, tml_op_in(op, 3), &mu);
    get(m, tml_op_in(op, 4), &sh);
    get(m, tml_op_out(op), &y);
    get_params(op, p);
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
#if TML_DSP
    q.fast_requant = requant2_ok(&q, Co, fstride, const_mask, const_val, slow_mask);
    if (q.fast_requant && Co <= CONST_MAX_C) {
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
    /* the GEMM requantizes its own outputs unless some channel needs the C path or Co = 2 (no overlapping triple) */
    q.w16_form = q.fast_requant && q.slow_mask == NULL && Co != 2 ? W16_REQUANT : W16_SUMS;
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
            q.w16 = w16_prepare(m, wd, C, Co, npix, &q, q.w16_form);
        if (C <= PAIR_MAX_K && dense_input && C % 4 == 0 && q.w16 != NULL && q.w16_form == W16_REQUANT) {
            pw_pairs_w16(xd, npix / 2, C, Co, &q, yd);
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
                    xa = xd + (((pix / ((size_t)Ho * Wo)) * H + (pix / Wo % Ho) * p[0]) * W + (pix % Wo) * p[1]) * C;
                    xb = xd + (((pb / ((size_t)Ho * Wo)) * H + (pb / Wo % Ho) * p[0]) * W + (pb % Wo) * p[1]) * C;
                }
                dense_pair(xa, xb, C, wd, Co, &q, yd + pix * Co, yd + pb * Co, NULL);
            }
#endif
        for (; pix < npix; pix++)
            dense_row(xd + (((pix / ((size_t)Ho * Wo)) * H + (pix / Wo % Ho) * p[0]) * W + (pix % Wo) * p[1]) * C,
                      C, wd, Co, &q, yd + pix * Co);
        return TML_OK;
    }
#if TML_DSP
    if (patch_ok && !(Kh == 1 && Kw == 1) && fstride <= PAIR_MAX_K) {
        /* im2col, two output pixels per pass over the filters, in raster order (a row's last pixel pairs with the
         * next row's first): each pixel's receptive field gathered (padding positions get the input zero point, so
         * they add (zp + in_off) * w = 0), then dense_pair */
        int8_t patch2[PAIR_MAX_K];
        const size_t npix = (size_t)N * Ho * Wo;
        size_t pix;
        uint32_t pos[3] = {0, 0, 0}; /* n, oy, ox of the next pixel */
        pair_rows rows;
        const int rows_ok = p[3] == 1 && (Kw * C) % 4 == 0 && Co % 2 == 0;
        q.w16 = w16_prepare(m, wd, fstride, Co, npix, &q, q.w16_form);
        /* with widened weights a pair's K is rounded up to 4 (w16's blocks are the same), the patches' pad bytes set
         * once to the input zero point (widened to 0; no gather writes them): dense_pair's byte loop for the last
         * K % 4 inputs skipped (IC's and VWW's first layers, K = 27) */
        const uint32_t kpair = q.w16 != NULL && fstride + 3 <= PAIR_MAX_K && fstride + 3 <= CONV_PATCH
                                   ? (fstride + 3) & ~3u
                                   : fstride;
        fill_bytes(patch + fstride, (int8_t)(-q.xo), kpair - fstride);
        fill_bytes(patch2 + fstride, (int8_t)(-q.xo), kpair - fstride);
        /* pairs in the requantized form with no partial word: pair_w16 instead of dense_pair */
        const int lean = q.w16 != NULL && q.w16_form == W16_REQUANT && kpair % 4 == 0;
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
                        pair_w16(win[0], win[1], fstride, Co, &q, yd + pix * Co, yd + (pix + 1) * Co, &rows);
                    else
                        dense_pair(win[0], win[1], fstride, wd, Co, &q, yd + pix * Co, yd + (pix + 1) * Co, &rows);
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
                pair_w16(patch, patch2, kpair, Co, &q, yd + pix * Co, yd + (pix + 1) * Co, NULL);
            else if (k == 2)
                dense_pair(patch, patch2, kpair, wd, Co, &q, yd + pix * Co, yd + (pix + 1) * Co, NULL);
            else
                dense_row(patch, fstride, wd, Co, &q, yd + pix * Co);
        }
        return TML_OK;
    }
#endif
    for (n = 0; n < N; n++)
        for (oy = 0; oy < Ho; oy++) {
            int64_t iy0 = (int64_t)oy * p[0] - p[4];
            uint32_t ky0, ky1;
            tap_range(iy0, (uint32_t)p[2], Kh, H, &ky0, &ky1);
            for (ox = 0; ox < Wo; ox++) {
                int64_t ix0 = (int64_t)ox * p[1] - p[5];
                uint32_t kx0, kx1, ky, kx;
                int8_t *out = yd + (((size_t)n * Ho + oy) * Wo + ox) * Co;
                tap_range(ix0, (uint32_t)p[3], Kw, W, &kx0, &kx1);
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

#if TML_DSP
#define DW3_MAX_C 128 /* 3x3 depthwise: 1152 B of packed weights, 1 KB of two pixels' sums, 1152 B of padded window on the stack */

/* Strides of a whole 3x3 depthwise window, for dw3x3_dsp (read by its assembly at these offsets). */
typedef struct {
    int32_t tap_step;    /* bytes between horizontal taps: dilation_w * C */
    int32_t row_advance; /* from a row's third tap to the next row's first: dilation_h * W * C - 2 * tap_step */
    uint32_t xo2;        /* the input offset in both halfwords */
} dw3_geom;

/* One output pixel of a 3x3 depthwise window that lies inside the input, channels in groups of 4: sums[4g + j] for
 * g < groups. x: the window's first tap at channel 0; wpk: the weights packed per group, 9 words (one per tap, 4
 * channels each) after another, so one post-incremented pointer walks them. Per tap: LDR of 4 inputs, LDR of 4
 * weights, 2 SXTAB16 (input offset added), 2 SXTB16, SMLABB/SMLATT per channel: 11 cycles for 4 MAC, the window's
 * bookkeeping in registers (the C version spilled it). */
#define DW3_TAP                                                                                                \
    "ldr r9, [r0]\n\t"                                                                                         \
    "ldr r10, [r1], #4\n\t"                                                                                    \
    "sxtab16 r11, r8, r9\n\t"                                                                                  \
    "sxtb16 r12, r10\n\t"                                                                                      \
    "smlabb r4, r11, r12, r4\n\t"                                                                              \
    "smlatt r6, r11, r12, r6\n\t"                                                                              \
    "sxtab16 r11, r8, r9, ror #8\n\t"                                                                          \
    "sxtb16 r12, r10, ror #8\n\t"                                                                              \
    "smlabb r5, r11, r12, r5\n\t"                                                                              \
    "smlatt r7, r11, r12, r7\n\t"
#define DW3_ROW DW3_TAP "add r0, r2\n\t" DW3_TAP "add r0, r2\n\t" DW3_TAP

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void dw3x3_dsp(const int8_t *x, const uint32_t *wpk, uint32_t groups,
                                                       int32_t *sums, const dw3_geom *g)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "ldr r12, [sp, #36]\n\t" /* g, the 5th argument, above the 9 saved registers */
                     "sub sp, #8\n\t"
                     "str r2, [sp]\n\t"     /* groups left */
                     "str r0, [sp, #4]\n\t" /* this group's first tap */
                     "ldr r2, [r12]\n\t"
                     "ldr lr, [r12, #4]\n\t"
                     "ldr r8, [r12, #8]\n\t"
                     "1:\n\t"
                     "movs r4, #0\n\t"
                     "movs r5, #0\n\t"
                     "movs r6, #0\n\t"
                     "movs r7, #0\n\t" DW3_ROW "add r0, lr\n\t" DW3_ROW "add r0, lr\n\t" DW3_ROW
                     "stmia r3!, {r4-r7}\n\t"
                     "ldr r0, [sp, #4]\n\t"
                     "adds r0, #4\n\t"
                     "str r0, [sp, #4]\n\t"
                     "ldr r9, [sp]\n\t"
                     "subs r9, #1\n\t"
                     "str r9, [sp]\n\t"
                     "bne 1b\n\t"
                     "add sp, #8\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef DW3_ROW
#undef DW3_TAP

#define DWP_PLANE 512 /* one channel's padded input band for dw3_planes, halfwords: 4 planes, 4 KB of stack */
typedef char dwp_plane_is_1024_bytes[DWP_PLANE == 512 ? 1 : -1]; /* dwp_widen's store offsets */
#define DWP_MAX_SUMS 256    /* and its sums: 1 KB */

/* dwp_mac_s1/_s2: the sums of a band of output rows of one channel, from its padded int16 plane (offset added,
 * zeros in the padding, rows pw_bytes apart), output pixels in pairs. Per filter row the taps w0 w1 w2 are held as
 * P = (w0, w1) and Q = (w2, w1) (low, high halfword); with A = (x0, x1), B = (x2, x3), C = (x4, x5) of a plane row:
 *   stride 1: x0w0 + x1w1 + x2w2 = SMUAD(A, P) + SMLABB(B, Q);  x1w0 + x2w1 + x3w2 = SMULTB(A, P) + SMLADX(B, Q)
 *   stride 2: x0w0 + x1w1 + x2w2 = SMUAD(A, P) + SMLABB(B, Q);  x2w0 + x3w1 + x4w2 = SMUAD(B, P) + SMLABB(C, Q)
 * 18 MAC in 12 MAC instructions with the six weight words in registers for the whole band (dw3x3_dsp, on NHWC
 * data, widens every weight again at every pixel and does 1 MAC per instruction). */
typedef struct {
    uint32_t pq[6];     /* P0 Q0 P1 Q1 P2 Q2 */
    uint32_t pw_bytes;  /* plane row stride */
    uint32_t row_bytes; /* from one output row's first plane row to the next's: sy * pw_bytes */
    uint32_t row_span;  /* plane bytes an output row's pairs walk: pairs * (4 or 8) */
    uint32_t rows;      /* output rows in the band */
} dwp_geom;

/* [sp] this row's plane start, [sp+4] rows left, [sp+8] g, [sp+12] row_span */
#define DWP_PROLOGUE                                                                                           \
    "push {r4-r11, lr}\n\t"                                                                                    \
    "sub sp, #16\n\t"                                                                                          \
    "str r0, [sp]\n\t"                                                                                         \
    "ldr r3, [r2, #36]\n\t"                                                                                    \
    "str r3, [sp, #4]\n\t"                                                                                     \
    "str r2, [sp, #8]\n\t"                                                                                     \
    "ldr r3, [r2, #32]\n\t"                                                                                    \
    "str r3, [sp, #12]\n\t"                                                                                    \
    "ldmia r2, {r4-r9}\n\t"                                                                                    \
    "ldr r2, [r2, #24]\n\t"                                                                                    \
    "mov r12, r1\n\t"                                                                                          \
    "mov r1, r2\n\t" /* r1 pw_bytes, r2 sums */                                                                \
    "mov r2, r12\n\t"                                                                                          \
    "4:\n\t"                                                                                                   \
    "ldr r3, [sp, #12]\n\t"                                                                                    \
    "add r3, r0, r3\n\t" /* this row's end */                                                                  \
    "1:\n\t"
#define DWP_EPILOGUE                                                                                           \
    "strd r10, r11, [r2], #8\n\t"                                                                              \
    "cmp r0, r3\n\t"                                                                                           \
    "bne 1b\n\t"                                                                                               \
    "ldr r0, [sp]\n\t"                                                                                         \
    "ldr r12, [sp, #8]\n\t"                                                                                    \
    "ldr r12, [r12, #28]\n\t"                                                                                  \
    "add r0, r12\n\t"                                                                                          \
    "str r0, [sp]\n\t"                                                                                         \
    "ldr r12, [sp, #4]\n\t"                                                                                    \
    "subs r12, #1\n\t"                                                                                         \
    "str r12, [sp, #4]\n\t"                                                                                    \
    "bne 4b\n\t"                                                                                               \
    "add sp, #16\n\t"                                                                                          \
    "pop {r4-r11, pc}\n\t"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void dwp_mac_s1(const int16_t *plane, int32_t *sums, const dwp_geom *g)
{
    __asm__ volatile(DWP_PROLOGUE
                     "ldr r12, [r0]\n\t"
                     "ldr lr, [r0, #4]\n\t"
                     "smuad r10, r12, r4\n\t"
                     "smultb r11, r12, r4\n\t"
                     "smlabb r10, lr, r5, r10\n\t"
                     "smladx r11, lr, r5, r11\n\t"
                     "add lr, r0, r1\n\t"
                     "ldr r12, [lr]\n\t"
                     "ldr lr, [lr, #4]\n\t"
                     "smlad r10, r12, r6, r10\n\t"
                     "smlatb r11, r12, r6, r11\n\t"
                     "smlabb r10, lr, r7, r10\n\t"
                     "smladx r11, lr, r7, r11\n\t"
                     "add lr, r0, r1, lsl #1\n\t"
                     "ldr r12, [lr]\n\t"
                     "ldr lr, [lr, #4]\n\t"
                     "smlad r10, r12, r8, r10\n\t"
                     "smlatb r11, r12, r8, r11\n\t"
                     "smlabb r10, lr, r9, r10\n\t"
                     "smladx r11, lr, r9, r11\n\t"
                     "adds r0, #4\n\t" DWP_EPILOGUE);
}

__attribute__((naked, noinline)) static void dwp_mac_s2(const int16_t *plane, int32_t *sums, const dwp_geom *g)
{
    __asm__ volatile(DWP_PROLOGUE
                     "ldr r12, [r0]\n\t"
                     "ldr lr, [r0, #4]\n\t"
                     "smuad r10, r12, r4\n\t"
                     "ldr r12, [r0, #8]\n\t"
                     "smuad r11, lr, r4\n\t"
                     "smlabb r10, lr, r5, r10\n\t"
                     "smlabb r11, r12, r5, r11\n\t"
                     "add r12, r0, r1\n\t"
                     "ldr lr, [r12]\n\t"
                     "smlad r10, lr, r6, r10\n\t"
                     "ldr lr, [r12, #4]\n\t"
                     "smlad r11, lr, r6, r11\n\t"
                     "smlabb r10, lr, r7, r10\n\t"
                     "ldr lr, [r12, #8]\n\t"
                     "smlabb r11, lr, r7, r11\n\t"
                     "add r12, r0, r1, lsl #1\n\t"
                     "ldr lr, [r12]\n\t"
                     "smlad r10, lr, r8, r10\n\t"
                     "ldr lr, [r12, #4]\n\t"
                     "smlad r11, lr, r8, r11\n\t"
                     "smlabb r10, lr, r9, r10\n\t"
                     "ldr lr, [r12, #8]\n\t"
                     "smlabb r11, lr, r9, r11\n\t"
                     "adds r0, #8\n\t" DWP_EPILOGUE);
}
#undef DWP_PROLOGUE
#undef DWP_EPILOGUE

/* One channel's band of outputs out[(r * wo + i) * ostride] = requant(sums[r * (wo + skip) + i]) with its constants
 * prepared once: requant2_dsp's shortcut (see there). Outputs in pairs (an odd row's first alone): one LDRD of two
 * sums, the second byte stored at [out + ostride], the loop's compare and branch once per two: 11 modelled cycles
 * per output, against 13 one at a time. */
typedef struct {
    int32_t bias2, mult, round, right; /* 2 bias, m, (2 off + 1) << (right - 1), right */
    uint32_t wo, skip_bytes, ostride, rows;
} dwp_rq;

#define DWP_RQ_ONE(s)                                                                                          \
    "add " s ", r4, " s ", lsl #1\n\t" /* t = 2 (sum + bias) */                                                 \
    "add lr, r6, " s ", asr #31\n\t"                                                                           \
    "smmlar " s ", " s ", r5, lr\n\t"                                                                          \
    "asr " s ", " s ", r7\n\t"                                                                                 \
    "ssat " s ", #8, " s "\n\t"

__attribute__((naked, noinline)) static void dwp_requant_dsp(const int32_t *sums, int8_t *out, const dwp_rq *q)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "ldmia r2, {r4-r11}\n\t"
                     "4:\n\t"
                     "add r3, r0, r8, lsl #2\n\t"
                     "tst r8, #1\n\t"
                     "beq 2f\n\t"
                     "ldr r12, [r0], #4\n\t" DWP_RQ_ONE("r12")
                     "strb r12, [r1]\n\t"
                     "add r1, r10\n\t"
                     "2:\n\t"
                     "cmp r0, r3\n\t"
                     "beq 3f\n\t"
                     "1:\n\t"
                     "ldrd r12, r2, [r0], #8\n\t" DWP_RQ_ONE("r12") DWP_RQ_ONE("r2")
                     "strb r12, [r1]\n\t"
                     "strb r2, [r1, r10]\n\t"
                     "add r1, r1, r10, lsl #1\n\t"
                     "cmp r0, r3\n\t"
                     "bne 1b\n\t"
                     "3:\n\t"
                     "add r0, r9\n\t"
                     "subs r11, #1\n\t"
                     "bne 4b\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#undef DWP_RQ_ONE

/* Stride 1 both ways, the 4 channels of a group (their planes DWP_PLANE halfwords apart): two output rows of one
 * output pair per pass, from 4 plane rows (the middle two serve both rows), the 4 sums requantized as
 * dwp_requant_dsp does and stored at once, so the sums never go to memory. The MACs need every register (6 weight
 * words, 4 sums, 2 inputs, the plane pointer and stride), so the requantization constants come from the frame and
 * the weights go back with one LDM: per pass 8 loads, 24 MAC instructions (36 MAC), 20 to requantize, 4 stores,
 * ~92 modelled cycles for 4 outputs (dwp_mac_s1 and dwp_requant_dsp: ~104 and more per row). An odd width's last
 * column has a pass of its own (12 MAC instructions, 2 outputs). Widths >= 2; an odd row count leaves the band's last
 * row to dwp_mac_s1 and dwp_requant_dsp. */
typedef struct {
    uint32_t pq[6];                    /* P0 Q0 P1 Q1 P2 Q2 (dwp_geom) */
    int32_t bias2, mult, round, right; /* as dwp_rq */
} dwp_ch;

typedef struct {
    uint32_t pw_bytes;   /* plane row stride */
    uint32_t ostep;      /* output bytes between pixels (C) */
    uint32_t orow;       /* and between rows (Wo C) */
    uint32_t span, odd;  /* output bytes of a row's whole pairs (Wo / 2 * 2 ostep, > 0), Wo & 1 */
    uint32_t rowpairs;   /* pairs of output rows (> 0) */
    const dwp_ch *ch;    /* the channels' weights and constants */
    uint32_t nch;        /* channels (> 0) */
} dwp_q;

/* frame: [0] pw_bytes, [4] the channel's dwp_ch, [44] ostep, [48] orow, [52] this pass's output, [56] the output
 * after the row's whole pairs, [60] span, [64] odd, [68] row pairs left, [72] this row pair's plane, [76] its output,
 * [80] rowpairs, [84] the next dwp_ch, [88] channels left, [92] the next channel's plane, [96] its output */
#define DWP_RQ_ONE(s)                                                                                          \
    "add " s ", r4, " s ", lsl #1\n\t"                                                                           \
    "add lr, r6, " s ", asr #31\n\t"                                                                           \
    "smmlar " s ", " s ", r5, lr\n\t"                                                                          \
    "asr " s ", " s ", r7\n\t"                                                                                 \
    "ssat " s ", #8, " s "\n\t"
#define DWP_Q_CONSTS                                                                                           \
    "ldr r4, [sp, #28]\n\t"                                                                                    \
    "ldr r5, [sp, #32]\n\t"                                                                                    \
    "ldr r6, [sp, #36]\n\t"                                                                                    \
    "ldr r7, [sp, #40]\n\t"                                                                                    \
    "ldr r8, [sp, #44]\n\t"                                                                                    \
    "ldr r12, [sp, #48]\n\t"                                                                                   \
    "ldr r9, [sp, #52]\n\t"

__attribute__((naked, noinline)) static void dwp_s1q(const int16_t *plane, int8_t *out, const dwp_q *q)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "sub sp, #104\n\t"
                     "ldmia r2, {r3-r10}\n\t"
                     "str r3, [sp]\n\t"
                     "str r4, [sp, #44]\n\t"
                     "str r5, [sp, #48]\n\t"
                     "str r6, [sp, #60]\n\t"
                     "str r7, [sp, #64]\n\t"
                     "str r8, [sp, #80]\n\t"
                     "str r9, [sp, #84]\n\t"
                     "str r10, [sp, #88]\n\t"
                     "str r0, [sp, #92]\n\t"
                     "str r1, [sp, #96]\n\t"
                     "5:\n\t" /* a channel */
                     "ldr r2, [sp, #84]\n\t"
                     "ldmia r2!, {r3-r12}\n\t"
                     "str r2, [sp, #84]\n\t"
                     "add r2, sp, #4\n\t"
                     "stmia r2, {r3-r12}\n\t"
                     "ldr r0, [sp, #92]\n\t"
                     "ldr r1, [sp, #96]\n\t"
                     "add r3, r0, #1024\n\t"
                     "str r3, [sp, #92]\n\t"
                     "adds r3, r1, #1\n\t"
                     "str r3, [sp, #96]\n\t"
                     "str r0, [sp, #72]\n\t"
                     "str r1, [sp, #76]\n\t"
                     "str r1, [sp, #52]\n\t"
                     "ldr r3, [sp, #60]\n\t"
                     "add r3, r1\n\t"
                     "str r3, [sp, #56]\n\t"
                     "ldr r3, [sp, #80]\n\t"
                     "str r3, [sp, #68]\n\t"
                     "ldm sp, {r1, r4-r9}\n\t"
                     "1:\n\t"
                     "sub lr, r0, r1\n\t" /* plane row 0 (r0 is at row 1): output row a, filter row 0 */
                     "ldr r12, [lr]\n\t"
                     "ldr lr, [lr, #4]\n\t"
                     "smuad r10, r12, r4\n\t"
                     "smultb r11, r12, r4\n\t"
                     "smlabb r10, lr, r5, r10\n\t"
                     "smladx r11, lr, r5, r11\n\t"
                     "ldr r12, [r0]\n\t" /* plane row 1: a's filter row 1, b's row 0 */
                     "ldr lr, [r0, #4]\n\t"
                     "smlad r10, r12, r6, r10\n\t"
                     "smlatb r11, r12, r6, r11\n\t"
                     "smuad r2, r12, r4\n\t"
                     "smultb r3, r12, r4\n\t"
                     "smlabb r10, lr, r7, r10\n\t"
                     "smladx r11, lr, r7, r11\n\t"
                     "smlabb r2, lr, r5, r2\n\t"
                     "smladx r3, lr, r5, r3\n\t"
                     "add lr, r0, r1\n\t" /* plane row 2: a's filter row 2, b's row 1 */
                     "ldr r12, [lr]\n\t"
                     "ldr lr, [lr, #4]\n\t"
                     "smlad r10, r12, r8, r10\n\t"
                     "smlatb r11, r12, r8, r11\n\t"
                     "smlad r2, r12, r6, r2\n\t"
                     "smlatb r3, r12, r6, r3\n\t"
                     "smlabb r10, lr, r9, r10\n\t"
                     "smladx r11, lr, r9, r11\n\t"
                     "smlabb r2, lr, r7, r2\n\t"
                     "smladx r3, lr, r7, r3\n\t"
                     "add lr, r0, r1, lsl #1\n\t" /* plane row 3: b's filter row 2 */
                     "ldr r12, [lr]\n\t"
                     "ldr lr, [lr, #4]\n\t"
                     "smlad r2, r12, r8, r2\n\t"
                     "smlatb r3, r12, r8, r3\n\t"
                     "smlabb r2, lr, r9, r2\n\t"
                     "smladx r3, lr, r9, r3\n\t"
                     "adds r0, #4\n\t" DWP_Q_CONSTS
                     "ldr r1, [sp, #56]\n\t" DWP_RQ_ONE("r10") DWP_RQ_ONE("r11") DWP_RQ_ONE("r2") DWP_RQ_ONE("r3")
                     "strb r10, [r9]\n\t"
                     "strb r11, [r9, r8]\n\t"
                     "add lr, r9, r12\n\t"
                     "strb r2, [lr]\n\t"
                     "strb r3, [lr, r8]\n\t"
                     "add r9, r9, r8, lsl #1\n\t"
                     "str r9, [sp, #52]\n\t"
                     "cmp r9, r1\n\t"
                     "ldm sp, {r1, r4-r9}\n\t"
                     "bne 1b\n\t"
                     "ldr lr, [sp, #64]\n\t"
                     "cmp lr, #0\n\t"
                     "beq 3f\n\t"
                     /* an odd width's last column: the first output of the pair in both rows */
                     "sub lr, r0, r1\n\t"
                     "ldr r12, [lr]\n\t"
                     "ldr lr, [lr, #4]\n\t"
                     "smuad r10, r12, r4\n\t"
                     "smlabb r10, lr, r5, r10\n\t"
                     "ldr r12, [r0]\n\t"
                     "ldr lr, [r0, #4]\n\t"
                     "smlad r10, r12, r6, r10\n\t"
                     "smuad r2, r12, r4\n\t"
                     "smlabb r10, lr, r7, r10\n\t"
                     "smlabb r2, lr, r5, r2\n\t"
                     "add lr, r0, r1\n\t"
                     "ldr r12, [lr]\n\t"
                     "ldr lr, [lr, #4]\n\t"
                     "smlad r10, r12, r8, r10\n\t"
                     "smlad r2, r12, r6, r2\n\t"
                     "smlabb r10, lr, r9, r10\n\t"
                     "smlabb r2, lr, r7, r2\n\t"
                     "add lr, r0, r1, lsl #1\n\t"
                     "ldr r12, [lr]\n\t"
                     "ldr lr, [lr, #4]\n\t"
                     "smlad r2, r12, r8, r2\n\t"
                     "smlabb r2, lr, r9, r2\n\t" DWP_Q_CONSTS DWP_RQ_ONE("r10") DWP_RQ_ONE("r2")
                     "strb r10, [r9]\n\t"
                     "add lr, r9, r12\n\t"
                     "strb r2, [lr]\n\t"
                     "3:\n\t" /* the next pair of rows */
                     "ldr r0, [sp, #72]\n\t"
                     "ldr r1, [sp]\n\t"
                     "ldr r9, [sp, #76]\n\t"
                     "ldr r12, [sp, #48]\n\t"
                     "add r0, r0, r1, lsl #1\n\t"
                     "add r9, r9, r12, lsl #1\n\t"
                     "str r0, [sp, #72]\n\t"
                     "str r9, [sp, #76]\n\t"
                     "str r9, [sp, #52]\n\t"
                     "ldr r12, [sp, #60]\n\t"
                     "add r12, r9\n\t"
                     "str r12, [sp, #56]\n\t"
                     "ldr r12, [sp, #68]\n\t"
                     "subs r12, #1\n\t"
                     "str r12, [sp, #68]\n\t"
                     "ldm sp, {r1, r4-r9}\n\t"
                     "bne 1b\n\t"
                     "ldr r12, [sp, #88]\n\t" /* the next channel */
                     "subs r12, #1\n\t"
                     "str r12, [sp, #88]\n\t"
                     "bne 5b\n\t"
                     "add sp, #104\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#undef DWP_Q_CONSTS
#undef DWP_RQ_ONE
#pragma GCC diagnostic pop

/* dwp_widen: one group of 4 channels of a band into dw3_planes' 4 planes (DWP_PLANE halfwords apart), offset added,
 * channel k in plane k: `rows` input rows (in_row bytes apart) to plane rows pw_bytes apart, each an odd first
 * column alone (head), then two pixels into one word of each plane, two such pairs per pass, then a last column
 * alone (tail). A pass: 4 LDR, 8 SXTAB16, 8 PKHBT/PKHTB, 8 STR, 34 modelled cycles per 16 inputs (16 per 4 one
 * pixel at a time). */
typedef struct {
    uint32_t c;        /* bytes between input pixels */
    uint32_t in_row;   /* bytes between input rows */
    uint32_t rows;     /* input rows (> 0) */
    uint32_t pw_bytes; /* plane row stride */
    uint32_t head;     /* 1: the first column alone (it sits at an odd halfword) */
    uint32_t pairs;    /* then pixel pairs */
    uint32_t tail;     /* 1: a last column alone */
    uint32_t xo2;      /* the input offset in both halfwords */
} dwp_wg;

/* one pixel r0 -> halfwords [r1] of the 4 planes, r0 += C, r1 += 2 */
#define DWP_WIDEN_ONE                                                                                          \
    "ldr r5, [r0]\n\t"                                                                                         \
    "add r0, r2\n\t"                                                                                           \
    "sxtab16 r6, r3, r5\n\t"                                                                                   \
    "sxtab16 r7, r3, r5, ror #8\n\t"                                                                           \
    "strh r6, [r1]\n\t"                                                                                        \
    "strh r7, [r1, #1024]\n\t"                                                             \
    "lsr r6, r6, #16\n\t"                                                                                      \
    "lsr r7, r7, #16\n\t"                                                                                      \
    "strh r6, [r1, #2048]\n\t"                                                            \
    "strh r7, [r1, #3072]\n\t"                                                            \
    "add r1, #2\n\t"
/* pixels a and b (loaded) -> one word of each plane at [r1], r1 += 4 */
#define DWP_WIDEN_PAIR(a, b)                                                                                   \
    "sxtab16 r7, r3, " a "\n\t"                                                                                \
    "sxtab16 r8, r3, " b "\n\t"                                                                                \
    "sxtab16 " a ", r3, " a ", ror #8\n\t"                                                                      \
    "sxtab16 " b ", r3, " b ", ror #8\n\t"                                                                      \
    "pkhbt r9, r7, r8, lsl #16\n\t"                                                                             \
    "pkhtb r7, r8, r7, asr #16\n\t"                                                                             \
    "str r7, [r1, #2048]\n\t"                                                                                   \
    "pkhbt r7, " a ", " b ", lsl #16\n\t"                                                                       \
    "pkhtb " a ", " b ", " a ", asr #16\n\t"                                                                    \
    "str r7, [r1, #1024]\n\t"                                                                                   \
    "str " a ", [r1, #3072]\n\t"                                                                                \
    "str r9, [r1], #4\n\t"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void dwp_widen(const int8_t *x, int16_t *plane, const dwp_wg *g)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "sub sp, #32\n\t" /* [sp] this row's input, [4] its plane row, [8] head, [12] pairs, [16] rows
                                          left, [20] pw_bytes, [24] in_row, [28] tail */
                     "str r0, [sp]\n\t"
                     "str r1, [sp, #4]\n\t"
                     "ldr r3, [r2, #28]\n\t"
                     "ldr r4, [r2, #8]\n\t"
                     "ldr r5, [r2, #12]\n\t"
                     "ldr r6, [r2, #4]\n\t"
                     "ldr r7, [r2, #16]\n\t"
                     "ldr r8, [r2, #20]\n\t"
                     "ldr r9, [r2, #24]\n\t"
                     "ldr r2, [r2]\n\t"
                     "str r7, [sp, #8]\n\t"
                     "str r8, [sp, #12]\n\t"
                     "str r4, [sp, #16]\n\t"
                     "str r5, [sp, #20]\n\t"
                     "str r6, [sp, #24]\n\t"
                     "str r9, [sp, #28]\n\t"
                     "add r12, r2, r2, lsl #1\n\t" /* 3 C */
                     "4:\n\t"
                     "ldr r0, [sp]\n\t"
                     "ldr r1, [sp, #4]\n\t"
                     "ldr r4, [sp, #24]\n\t"
                     "ldr r5, [sp, #20]\n\t"
                     "ldr r8, [sp, #8]\n\t"
                     "ldr r9, [sp, #12]\n\t"
                     "add r4, r0, r4\n\t"
                     "add r5, r1, r5\n\t"
                     "str r4, [sp]\n\t"
                     "str r5, [sp, #4]\n\t"
                     "cmp r8, #0\n\t"
                     "beq 5f\n\t" DWP_WIDEN_ONE "5:\n\t"
                     "lsrs r4, r9, #1\n\t" /* passes of two pairs; an odd pair first */
                     "bcc 8f\n\t"
                     "ldr r5, [r0]\n\t"
                     "ldr r6, [r0, r2]\n\t"
                     "add r0, r0, r2, lsl #1\n\t" DWP_WIDEN_PAIR("r5", "r6") "8:\n\t"
                     "cbz r4, 6f\n\t"
                     "1:\n\t"
                     "ldr r5, [r0]\n\t"
                     "ldr r6, [r0, r2]\n\t"
                     "ldr r10, [r0, r2, lsl #1]\n\t"
                     "ldr r11, [r0, r12]\n\t"
                     "add r0, r0, r2, lsl #2\n\t" DWP_WIDEN_PAIR("r5", "r6") DWP_WIDEN_PAIR("r10", "r11")
                     "subs r4, #1\n\t"
                     "bne 1b\n\t"
                     "6:\n\t"
                     "ldr lr, [sp, #28]\n\t"
                     "cmp lr, #0\n\t"
                     "beq 7f\n\t" DWP_WIDEN_ONE "7:\n\t"
                     "ldr r4, [sp, #16]\n\t"
                     "subs r4, #1\n\t"
                     "str r4, [sp, #16]\n\t"
                     "bne 4b\n\t"
                     "add sp, #32\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef DWP_WIDEN_ONE
#undef DWP_WIDEN_PAIR

/* PKHBT a, b, LSL #16: a's low halfword, b's low halfword above it; PKHTB b, a, ASR #16: a's high halfword below
 * b's */
static inline uint32_t dwp_lo2(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline uint32_t dwp_hi2(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* The filter words (P, Q per filter row, dwp_geom) of the 4 channels at w (taps C bytes apart): per plane row r the
 * taps (r, j), or (j, r) when the planes are transposed; one word load per tap for the 4 channels, split by SXTB16
 * and paired by PKHBT/PKHTB. */
static void dwp_pack4(const int8_t *w, uint32_t C, int tr, dwp_ch *ch)
{
    uint32_t r;
    for (r = 0; r < 3; r++) {
        const uint32_t t0 = tr ? r : 3 * r, dt = tr ? 3 : 1;
        const uint32_t v0 = tml_ldu32(w + t0 * C), v1 = tml_ldu32(w + (t0 + dt) * C),
                       v2 = tml_ldu32(w + (t0 + 2 * dt) * C);
        const uint32_t e0 = (uint32_t)__sxtb16(v0), e1 = (uint32_t)__sxtb16(v1), e2 = (uint32_t)__sxtb16(v2);
        const uint32_t o0 = (uint32_t)tml_sxtab16_ror8(0, v0), o1 = (uint32_t)tml_sxtab16_ror8(0, v1),
                       o2 = (uint32_t)tml_sxtab16_ror8(0, v2);
        ch[0].pq[2 * r] = dwp_lo2(e0, e1); /* (w0, w1) */
        ch[0].pq[2 * r + 1] = dwp_lo2(e2, e1); /* (w2, w1) */
        ch[1].pq[2 * r] = dwp_lo2(o0, o1);
        ch[1].pq[2 * r + 1] = dwp_lo2(o2, o1);
        ch[2].pq[2 * r] = dwp_hi2(e0, e1);
        ch[2].pq[2 * r + 1] = dwp_hi2(e2, e1);
        ch[3].pq[2 * r] = dwp_hi2(o0, o1);
        ch[3].pq[2 * r + 1] = dwp_hi2(o2, o1);
    }
}

/* dwp_s1q's modelled cycles per channel on an ho x wo output (~90 per 4 outputs, 75 for an odd width's last column,
 * 26 per row pair) with an odd last row on dwp_mac_s1 and dwp_requant_dsp (~31 per pair, 11 per output, 60): what
 * dw3_planes compares to lay a stride-1 band out transposed. */
static uint32_t dwp_s1_cost(uint32_t ho, uint32_t wo)
{
    return ho / 2 * (wo / 2 * 90 + (wo & 1u) * 75 + 26) + (ho & 1u) * ((wo + 1) / 2 * 31 + wo * 11 + 60);
}

/* 3x3 depthwise, depth multiplier 1, dilation 1, stride 1 or 2 across (any down), channels a multiple of 4,
 * requant2_ok's shortcut exact. Band by band of output rows and 4 channels at a time, the channels' input band is
 * widened into 4 padded int16 planes (offset added; one LDR and 2 SXTAB16 per 4 inputs, the padding zeroed once
 * per band), then each plane goes through dwp_mac_s1/_s2 and dwp_requant_dsp. 0 when the op is not of that kind (or
 * a band of one output row does not fit), so the caller uses another kernel. */
static __attribute__((noinline)) int dw3_planes(const int8_t *xd, uint32_t N, uint32_t H, uint32_t W, uint32_t C,
                                                const int8_t *wd, const uint8_t *bias, const uint8_t *mult,
                                                const uint8_t *shift, const int32_t *p, uint32_t Ho, uint32_t Wo,
                                                int8_t *yd)
{
    uint32_t planew[4][DWP_PLANE / 2]; /* words: the plane rows stay word-aligned (pw is even) */
    int32_t sums[DWP_MAX_SUMS];
    const uint32_t sy = (uint32_t)p[0], sx = (uint32_t)p[1];
    /* stride 1 both ways: the planes hold the input transposed (its columns as plane rows, the filter transposed
     * with it) when dwp_s1q then makes fewer passes, as on KWS's 25 x 5 */
    const int tr = sx == 1 && sy == 1 && Ho >= 2 && (Ho + 1) / 2 * 2 + 2 <= DWP_PLANE / 3 &&
                   dwp_s1_cost(Wo, Ho) < dwp_s1_cost(Ho, Wo);
    const uint32_t Hp = tr ? W : H, Wp = tr ? H : W, Hop = tr ? Wo : Ho, Wop = tr ? Ho : Wo; /* in plane terms */
    const int32_t pt = tr ? p[5] : p[4], pl = tr ? p[4] : p[5];
    const uint32_t in_px = tr ? W * C : C, in_row = tr ? C : W * C; /* input bytes along a plane row, down */
    const uint32_t out_px = tr ? Wo * C : C, out_row = tr ? C : Wo * C;
    const uint32_t wo2 = (Wop + 1) & ~1u;
    const uint32_t pw = sx == 1 ? wo2 + 2 : 2 * wo2 + 2; /* halfwords per plane row: every pair's reads inside */
    const uint32_t xo2 = tml_pair(p[6]);
    uint32_t rows, n, c, oy0, k;
    dwp_geom g;
    dwp_rq q;
    dwp_wg wg;
    dwp_q dq;
    dwp_ch chp[4];
    if (p[2] != 1 || p[3] != 1 || sx < 1 || sx > 2 || sy < 1 || 3 * pw > DWP_PLANE || wo2 > DWP_MAX_SUMS)
        return 0;
    rows = (DWP_PLANE / pw - 3) / sy + 1; /* output rows per band: (rows - 1) sy + 3 plane rows */
    if (rows > DWP_MAX_SUMS / wo2)
        rows = DWP_MAX_SUMS / wo2;
    g.pw_bytes = 2 * pw;
    g.row_bytes = 2 * pw * sy;
    g.row_span = (wo2 / 2) * (sx == 1 ? 4 : 8);
    q.wo = Wop;
    q.skip_bytes = 4 * (wo2 - Wop);
    q.ostride = out_px; /* transposed, dwp_requant_dsp gets one row at a time */
    dq.pw_bytes = 2 * pw;
    dq.ostep = out_px;
    dq.orow = out_row;
    dq.span = Wop / 2 * 2 * out_px;
    dq.odd = Wop & 1u;
    dq.ch = chp;
    dq.nch = 4;
    wg.c = in_px;
    wg.in_row = in_row;
    wg.pw_bytes = 2 * pw;
    wg.xo2 = xo2;
    for (n = 0; n < N; n++)
        for (oy0 = 0; oy0 < Hop; oy0 += rows) {
            const uint32_t nrows = Hop - oy0 < rows ? Hop - oy0 : rows, prows = (nrows - 1) * sy + 3;
            const uint32_t fused = sx == 1 && sy == 1 && Wop >= 2 ? nrows & ~1u : 0; /* rows dwp_s1q computes */
            const int64_t iy_top = (int64_t)oy0 * sy - pt;
            const uint32_t vlo = (uint32_t)pl < pw ? (uint32_t)pl : pw; /* plane columns of the input */
            const uint32_t vhi = (uint64_t)Wp + (uint32_t)pl < pw ? Wp + (uint32_t)pl : pw;
            const uint32_t py0 = iy_top < 0 ? (uint32_t)-iy_top : 0; /* plane rows of the input */
            const uint32_t py1 = iy_top + prows > Hp ? (uint32_t)((int64_t)Hp - iy_top) : prows;
            const int8_t *xband = xd + (size_t)n * H * W * C + (size_t)(iy_top + py0) * in_row +
                                  (size_t)(vlo - (uint32_t)pl) * in_px;
            /* the band's planes: input rows iy_top .. iy_top + prows - 1, columns -pad_left .. pw - 1 - pad_left */
            for (k = 0; k < 4; k++)
                memset(planew[k], 0, 2 * pw * prows);
            wg.rows = py1 > py0 ? py1 - py0 : 0;
            wg.head = vhi > vlo ? vlo & 1u : 0;
            wg.pairs = vhi > vlo ? (vhi - vlo - wg.head) / 2 : 0;
            wg.tail = vhi > vlo ? (vhi - vlo - wg.head) & 1u : 0;
            g.rows = q.rows = nrows - fused;
            dq.rowpairs = fused / 2;
            for (c = 0; c < C; c += 4) {
                int8_t *o = yd + (size_t)n * Ho * Wo * C + (size_t)oy0 * out_row + c;
                if (py1 > py0 && vhi > vlo)
                    dwp_widen(xband + c, (int16_t *)planew[0] + py0 * pw + vlo, &wg);
                dwp_pack4(wd + c, C, tr, chp);
                for (k = 0; k < 4; k++) {
                    const uint32_t ch = c + k;
                    dwp_ch *e = &chp[k];
                    e->bias2 = (int32_t)((uint32_t)tml_ld32(bias + 4 * ch) << 1);
                    e->mult = tml_ld32(mult + 4 * ch);
                    e->right = -tml_ld32(shift + 4 * ch);
                    e->round = (int32_t)((uint32_t)(2 * p[7] + 1) << (e->right - 1));
                }
                if (fused) /* the plane pointer at its row 1 */
                    dwp_s1q((const int16_t *)planew[0] + pw, o, &dq);
                if (fused < nrows) /* the rows dwp_s1q leaves: sums, then requantized */
                    for (k = 0; k < 4; k++) {
                        const int16_t *pl = (const int16_t *)planew[k] + (size_t)fused * sy * pw;
                        memcpy(g.pq, chp[k].pq, sizeof g.pq);
                        q.bias2 = chp[k].bias2;
                        q.mult = chp[k].mult;
                        q.round = chp[k].round;
                        q.right = chp[k].right;
                        if (sx == 1)
                            dwp_mac_s1(pl, sums, &g);
                        else
                            dwp_mac_s2(pl, sums, &g);
                        dwp_requant_dsp(sums, o + (size_t)fused * out_row + k, &q);
                    }
            }
        }
    return 1;
}
#endif

#if TML_DSP
/* 3x3, depth multiplier 1, on NHWC windows: dw3x3_dsp per pixel, windows that overlap the padding copied first */
static __attribute__((noinline)) void dw3_windows(const operand *xp, const operand *wp, const operand *bp,
                                                  const operand *mup, const operand *shp, const operand *yp,
                                                  const int32_t *p)
{
    const operand x = *xp, w = *wp, b = *bp, mu = *mup, sh = *shp, y = *yp;
    const uint32_t N = x.d[0], H = x.d[1], W = x.d[2], C = x.d[3], Co = w.t.dims[3], Ho = y.d[1], Wo = y.d[2];
    const int8_t *xd = (const int8_t *)x.data, *wd = (const int8_t *)w.data;
    int8_t *yd = (int8_t *)y.out;
    uint32_t n, oy, ox;
    uint32_t wpk[9 * DW3_MAX_C / 4];
    int32_t sums[SUMS_B + DW3_MAX_C]; /* two pixels' sums, as requant2_dsp reads them */
    int dw3_fast = 0;
    int8_t window[9 * DW3_MAX_C];
    dw3_geom g3, g3w;
    /* 3x3, depth multiplier 1: weights packed per group of 4 channels for dw3x3_dsp, once per op. A window that
     * overlaps the padding is first copied into `window` with the padding set to the input zero point (so it adds
     * (zp + in_off) * w = 0), which needs -in_off to be an int8. */
    {
        uint32_t gi, t;
        for (gi = 0; gi < Co / 4; gi++)
            for (t = 0; t < 9; t++)
                wpk[9 * gi + t] = (uint32_t)tml_ld32(wd + (size_t)t * Co + 4 * gi);
        g3.tap_step = p[3] * (int32_t)C;
        g3.row_advance = p[2] * (int32_t)(W * C) - 2 * g3.tap_step;
        g3.xo2 = tml_pair(p[6]);
        g3w.tap_step = (int32_t)C;
        g3w.row_advance = (int32_t)C;
        g3w.xo2 = g3.xo2;
        dw3_fast = dw3_fast_ok(p, Co, (const uint8_t *)b.data, (const uint8_t *)sh.data);
    }
    {
        for (n = 0; n < N; n++)
            for (oy = 0; oy < Ho; oy++) {
                const int64_t iy0 = (int64_t)oy * p[0] - p[4];
                const int row_inside = iy0 >= 0 && iy0 + 2 * (int64_t)p[2] < H;
                int64_t ix0 = -(int64_t)p[5];
                int32_t *dsums = sums; /* pixel a's sums; pixel b's (an odd ox) SUMS_B words on */
                int8_t *out = yd + ((size_t)n * Ho + oy) * Wo * Co;
                for (ox = 0; ox < Wo; ox++, ix0 += p[1], out += Co) {
                    if (row_inside && ix0 >= 0 && ix0 + 2 * (int64_t)p[3] < W) { /* the window inside the input */
                        dw3x3_dsp(xd + (((size_t)n * H + (size_t)iy0) * W + (size_t)ix0) * C, wpk, Co / 4, dsums, &g3);
                    } else {
                        uint32_t ky, kx;
                        int8_t *q = window;
                        for (ky = 0; ky < 3; ky++)
                            for (kx = 0; kx < 3; kx++, q += C) {
                                int64_t iy = iy0 + (int64_t)ky * p[2], ix = ix0 + (int64_t)kx * p[3];
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                    fill_bytes(q, (int8_t)(-p[6]), C);
                                else
                                    copy_bytes(q, xd + (((size_t)n * H + (size_t)iy) * W + (size_t)ix) * C, C);
                            }
                        dw3x3_dsp(window, wpk, Co / 4, dsums, &g3w);
                    }
                    if (dw3_fast && dsums != sums) { /* this pixel and the one before: requantized together */
                        requant2_dsp(sums, Co, (const uint8_t *)b.data, (const uint8_t *)mu.data,
                                     (const uint8_t *)sh.data, out - Co, out, 2 * p[7] + 1);
                        dsums = sums;
                    } else if (dw3_fast && ox + 1 < Wo) {
                        dsums = sums + SUMS_B;
                    } else {
                        requant_row(dsums, Co, (const uint8_t *)b.data, (const uint8_t *)mu.data,
                                    (const uint8_t *)sh.data, p[7], p[8], p[9], out);
                    }
                }
            }
    }
}
#endif

static tml_status depthwise_conv_2d(tml_model *m, const tml_op *op)
{
    operand x, w, b, mu, sh, y;
    int32_t p[TML_MAX_PARAMS], acc[DW_BLOCK];
    uint32_t n, oy, ox, N, H, W, C, Kh, Kw, Co, Ho, Wo, dm;
    const int8_t *xd, *wd;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_in(op, 1), &w);
    get(m, tml_op_in(op, 2), &b);
    get(m, tml_op_in(op, 3), &mu);
    get(m, tml_op_in(op, 4), &sh);
    get(m, tml_op_out(op), &y);
    get_params(op, p);
    N = x.d[0]; H = x.d[1]; W = x.d[2]; C = x.d[3];
    Kh = w.t.dims[1]; Kw = w.t.dims[2]; Co = w.t.dims[3];
    Ho = y.d[1]; Wo = y.d[2];
    dm = (uint32_t)p[10];
    xd = (const int8_t *)x.data;
    wd = (const int8_t *)w.data;
    yd = (int8_t *)y.out;
#if TML_DSP
    /* 3x3, depth multiplier 1: channel by channel on int16 planes when requant2_dsp's shortcut is exact, else on
     * NHWC windows (each its own function: their stack buffers are not live together) */
    if (dm == 1 && Kh == 3 && Kw == 3 && p[6] >= -255 && p[6] <= 255 && (Co & 3u) == 0 &&
        dw3_fast_ok(p, Co, (const uint8_t *)b.data, (const uint8_t *)sh.data) &&
        dw3_planes(xd, N, H, W, C, wd, (const uint8_t *)b.data, (const uint8_t *)mu.data, (const uint8_t *)sh.data, p,
                   Ho, Wo, yd))
        return TML_OK;
    if (dm == 1 && (Co & 3u) == 0 && Kh == 3 && Kw == 3 && Co <= DW3_MAX_C && p[6] >= -127) {
        dw3_windows(&x, &w, &b, &mu, &sh, &y, p);
        return TML_OK;
    }
#endif
    for (n = 0; n < N; n++)
        for (oy = 0; oy < Ho; oy++) {
            int64_t iy0 = (int64_t)oy * p[0] - p[4];
            uint32_t ky0, ky1;
            tap_range(iy0, (uint32_t)p[2], Kh, H, &ky0, &ky1);
#if TML_DSP
            /* first valid input row of this output row's windows (used when the window is not empty) */
            const int8_t *xrow0 = ky1 > ky0 ? xd + ((size_t)n * H + (size_t)(iy0 + (int64_t)ky0 * p[2])) * W * C : xd;
#endif
            for (ox = 0; ox < Wo; ox++) {
                int64_t ix0 = (int64_t)ox * p[1] - p[5];
                uint32_t kx0, kx1, c0;
                int8_t *out = yd + (((size_t)n * Ho + oy) * Wo + ox) * Co;
                tap_range(ix0, (uint32_t)p[3], Kw, W, &kx0, &kx1);
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

static tml_status fully_connected(tml_model *m, const tml_op *op)
{
    operand x, w, b, mu, sh, y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t r, rows, Ci, Co, per_channel;
    const int8_t *xd, *wd;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_in(op, 1), &w);
    get(m, tml_op_in(op, 2), &b);
    get(m, tml_op_in(op, 3), &mu);
    get(m, tml_op_in(op, 4), &sh);
    get(m, tml_op_out(op), &y);
    get_params(op, p);
    Co = w.t.dims[0];
    Ci = w.t.dims[1];
    rows = tml_elements(&x.t) / Ci;
    per_channel = tml_elements(&mu.t) > 1;
    xd = (const int8_t *)x.data;
    wd = (const int8_t *)w.data;
    yd = (int8_t *)y.out;
    {
        dense_q q;
        q.bias = (const uint8_t *)b.data;
        q.mult = (const uint8_t *)mu.data;
        q.shift = (const uint8_t *)sh.data;
        q.per_channel = (int)per_channel;
        q.xo = p[0];
        q.wo = p[1];
        q.out_off = p[2];
        q.lo = p[3];
        q.hi = p[4];
        q.fast_requant = 0;
        q.weights_overrun_ok = 0;
        q.const_mask = NULL;
        q.const_val = NULL;
        q.slow_mask = NULL;
        q.w16 = NULL;
        for (r = 0; r < rows; r++)
            dense_row(xd + (size_t)r * Ci, Ci, wd, Co, &q, yd + (size_t)r * Co);
    }
    return TML_OK;
}

static tml_status pool_2d(tml_model *m, const tml_op *op, int is_max)
{
    operand x, y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t n, oy, ox, c, H, W, C, Ho, Wo;
    const int8_t *xd;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_out(op), &y);
    get_params(op, p);
    H = x.d[1]; W = x.d[2]; C = x.d[3];
    Ho = y.d[1]; Wo = y.d[2];
    xd = (const int8_t *)x.data;
    yd = (int8_t *)y.out;
    for (n = 0; n < x.d[0]; n++)
        for (oy = 0; oy < Ho; oy++) {
            int64_t iy0 = (int64_t)oy * p[0] - p[4];
            uint32_t ky0, ky1;
            tap_range(iy0, 1, (uint32_t)p[2], H, &ky0, &ky1);
            for (ox = 0; ox < Wo; ox++) {
                int64_t ix0 = (int64_t)ox * p[1] - p[5];
                uint32_t kx0, kx1, count;
                int8_t *out = yd + (((size_t)n * Ho + oy) * Wo + ox) * C;
                tap_range(ix0, 1, (uint32_t)p[3], W, &kx0, &kx1);
                count = (ky1 - ky0) * (kx1 - kx0);
                c = 0;
#if TML_DSP
                if (!is_max && count >= 1 && count <= 255) {
                    /* 4 channels at a time, summed in 16-bit lanes by SXTAB16 (|sum| <= 255 * 128 fits) */
                    const int8_t *x0 = xd + (((size_t)n * H + (size_t)(iy0 + ky0)) * W + (size_t)(ix0 + kx0)) * C;
                    for (; c + 4 <= C; c += 4) {
                        uint32_t e = 0, o = 0, ky, kx, j;
                        int32_t s[4];
                        for (ky = ky0; ky < ky1; ky++) {
                            const int8_t *xr = x0 + (size_t)(ky - ky0) * W * C + c;
                            for (kx = kx0; kx < kx1; kx++, xr += C) {
                                const uint32_t v = tml_ldu32(xr);
                                e = (uint32_t)__sxtab16(e, v);
                                o = (uint32_t)tml_sxtab16_ror8(o, v);
                            }
                        }
                        s[0] = (int16_t)e;
                        s[1] = (int16_t)o;
                        s[2] = (int16_t)(e >> 16);
                        s[3] = (int16_t)(o >> 16);
                        for (j = 0; j < 4; j++) {
                            const int32_t acc = s[j];
                            const int32_t v = acc > 0 ? (acc + (int32_t)count / 2) / (int32_t)count
                                                      : (acc - (int32_t)count / 2) / (int32_t)count;
                            out[c + j] = (int8_t)tml_clamp(v, p[6], p[7]);
                        }
                    }
                }
#endif
                for (; c < C; c++) {
                    int32_t acc = is_max ? -128 : 0, v;
                    uint32_t ky, kx;
                    for (ky = ky0; ky < ky1; ky++)
                        for (kx = kx0; kx < kx1; kx++) {
                            int32_t xv = xd[(((size_t)n * H + (size_t)(iy0 + ky)) * W + (size_t)(ix0 + kx)) * C + c];
                            if (is_max)
                                acc = xv > acc ? xv : acc;
                            else
                                acc += xv;
                        }
                    if (is_max) {
                        v = acc;
                    } else if (count == 0) {
                        v = 0; /* window entirely in padding: TFLM divides by zero here; we define 0 */
                    } else {
                        v = acc > 0 ? (acc + (int32_t)count / 2) / (int32_t)count
                                    : (acc - (int32_t)count / 2) / (int32_t)count;
                    }
                    out[c] = (int8_t)tml_clamp(v, p[6], p[7]);
                }
            }
        }
    return TML_OK;
}

/* Strides of a broadcast operand over the output's 4-D index space (0 where the operand's dim is 1). */
static void bcast_strides(const uint32_t d[4], uint32_t s[4])
{
    s[3] = d[3] == 1 ? 0 : 1;
    s[2] = d[2] == 1 ? 0 : d[3];
    s[1] = d[1] == 1 ? 0 : d[3] * d[2];
    s[0] = d[0] == 1 ? 0 : d[3] * d[2] * d[1];
}

static tml_status add_mul(tml_model *m, const tml_op *op, int is_add)
{
    operand a, b, y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t sa[4], sb[4], i0, i1, i2, i3;
    const int8_t *ad, *bd;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &a);
    get(m, tml_op_in(op, 1), &b);
    get(m, tml_op_out(op), &y);
    get_params(op, p);
    bcast_strides(a.d, sa);
    bcast_strides(b.d, sb);
    ad = (const int8_t *)a.data;
    bd = (const int8_t *)b.data;
    yd = (int8_t *)y.out;
#if TML_DSP
    if (is_add && !memcmp(a.d, y.d, sizeof a.d) && !memcmp(b.d, y.d, sizeof b.d)) {
        /* no broadcast (residual connections): one flat loop, the three rescalings prepared once. Each input's
         * rescaling depends on its int8 value alone, so it is tabled for all 256 values first (2 KB of stack):
         * per element two table reads and the output's rescaling remain. */
        mbqm_fixed fa, fb, fy;
        int32_t table_a[256], table_b[256];
        const int32_t *ta = table_a + 128, *tb = table_b + 128;
        const uint32_t n = y.d[0] * y.d[1] * y.d[2] * y.d[3];
        const int32_t a_off = p[0], b_off = p[3], lsh = p[6], y_off = p[9], lo = p[10], hi = p[11];
        uint32_t i, amax = 0, bmax = 0;
        int32_t v;
        mbqm_fix(&fa, p[1], p[2]);
        mbqm_fix(&fb, p[4], p[5]);
        mbqm_fix(&fy, p[7], p[8]);
        for (v = -128; v < 128; v++) {
            table_a[v + 128] = mbqm_fixed_apply(&fa, (v + a_off) * (1 << lsh));
            table_b[v + 128] = mbqm_fixed_apply(&fb, (v + b_off) * (1 << lsh));
            const int32_t va = table_a[v + 128], vb = table_b[v + 128];
            const uint32_t ua = va < 0 ? 0u - (uint32_t)va : (uint32_t)va, ub = vb < 0 ? 0u - (uint32_t)vb : (uint32_t)vb;
            amax = ua > amax ? ua : amax;
            bmax = ub > bmax ? ub : bmax;
        }
        if (fy.left == 0 && fy.right >= 1 && fy.right <= 23 && (uint64_t)amax + bmax < (1u << 30)) {
            /* every sum of two table values below 2^30 and a right shift the offset can join (as requant_row_fixed):
             * no general path to test per element */
            const int32_t add = (int32_t)((1u << fy.right) >> 1) + (int32_t)((uint32_t)y_off << fy.right);
            for (i = 0; i < n; i++) {
                const int32_t r = mbqm_smmulr(ta[ad[i]] + tb[bd[i]], fy.m, fy.right, add);
                yd[i] = (int8_t)(r < lo ? lo : r > hi ? hi : r);
            }
            return TML_OK;
        }
        for (i = 0; i < n; i++)
            yd[i] = (int8_t)tml_clamp(mbqm_fixed_apply(&fy, ta[ad[i]] + tb[bd[i]]) + y_off, lo, hi);
        return TML_OK;
    }
#endif
    for (i0 = 0; i0 < y.d[0]; i0++)
        for (i1 = 0; i1 < y.d[1]; i1++)
            for (i2 = 0; i2 < y.d[2]; i2++) {
                size_t ab = (size_t)i0 * sa[0] + (size_t)i1 * sa[1] + (size_t)i2 * sa[2];
                size_t bb = (size_t)i0 * sb[0] + (size_t)i1 * sb[1] + (size_t)i2 * sb[2];
                int8_t *out = yd + (((size_t)i0 * y.d[1] + i1) * y.d[2] + i2) * y.d[3];
                for (i3 = 0; i3 < y.d[3]; i3++) {
                    int32_t av = ad[ab + (size_t)i3 * sa[3]], bv = bd[bb + (size_t)i3 * sb[3]], r;
                    if (is_add) { /* the kernels' MBQM: SMMULR-based on the M4, same results (tml_unit.c) */
                        int32_t xa = REQUANT_MBQM((av + p[0]) * (1 << p[6]), p[1], p[2]);
                        int32_t xb = REQUANT_MBQM((bv + p[3]) * (1 << p[6]), p[4], p[5]);
                        r = REQUANT_MBQM(xa + xb, p[7], p[8]) + p[9];
                        r = tml_clamp(r, p[10], p[11]);
                    } else {
                        r = REQUANT_MBQM((av + p[0]) * (bv + p[1]), p[2], p[3]) + p[4];
                        r = tml_clamp(r, p[5], p[6]);
                    }
                    out[i3] = (int8_t)r;
                }
            }
    return TML_OK;
}

/* gemmlowp fixed-point helpers for SOFTMAX (docs/blob-format.md, "SOFTMAX"). */
static int32_t half_sum(int32_t a, int32_t b)
{
    int64_t s = (int64_t)a + b;
    return (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
}

static int32_t sat_shl(int32_t x, int k)
{
    int32_t t = (int32_t)(((uint32_t)1 << (31 - k)) - 1u);
    if (x > t)
        return INT32_MAX;
    if (x < -t)
        return INT32_MIN;
    return (int32_t)((uint32_t)x << k);
}

static int32_t wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

static int32_t one_over_one_plus_x(int32_t a)
{
    int32_t half_den = half_sum(a, INT32_MAX);
    int32_t x = wrap_add(1515870810, tml_srdhm(half_den, -1010580540));
    int i;
    for (i = 0; i < 3; i++) {
        int32_t t = tml_srdhm(half_den, x);
        int32_t one_minus = (int32_t)((uint32_t)(1u << 29) - (uint32_t)t);
        x = wrap_add(x, sat_shl(tml_srdhm(x, one_minus), 2));
    }
    return sat_shl(x, 1);
}

static int clz32(uint32_t v)
{
    int n = 0;
    if (!v)
        return 32;
    while (!(v & 0x80000000u)) {
        v <<= 1;
        n++;
    }
    return n;
}

static tml_status softmax(tml_model *m, const tml_op *op)
{
    operand x, t, y;
    uint32_t rows, C, r, c;
    const int8_t *xd;
    const uint8_t *table;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_in(op, 1), &t);
    get(m, tml_op_out(op), &y);
    C = x.d[3];
    rows = tml_elements(&x.t) / C;
    xd = (const int8_t *)x.data;
    table = (const uint8_t *)t.data;
    yd = (int8_t *)y.out;
    for (r = 0; r < rows; r++) {
        const int8_t *xr = xd + (size_t)r * C;
        int8_t *out = yd + (size_t)r * C;
        int32_t mx = -128, recip, shifted;
        uint32_t sum = 0;
        int headroom, e;
        for (c = 0; c < C; c++)
            mx = xr[c] > mx ? xr[c] : mx;
        for (c = 0; c < C; c++)
            sum += (uint32_t)tml_rdbpot(tml_ld32(table + 4 * (uint32_t)(mx - xr[c])), 12);
        headroom = clz32(sum);
        shifted = (int32_t)((headroom < 32 ? sum << headroom : 0u) - 0x80000000u);
        recip = one_over_one_plus_x(shifted);
        e = (12 - headroom) + 31 - 8;
        for (c = 0; c < C; c++) {
            int32_t v = tml_srdhm(recip, tml_ld32(table + 4 * (uint32_t)(mx - xr[c])));
            int64_t q = e >= 0 ? tml_rdbpot64(v, e) : (int64_t)v << -e;
            out[c] = (int8_t)(q - 128 < -128 ? -128 : (q - 128 > 127 ? 127 : q - 128));
        }
    }
    return TML_OK;
}

static tml_status lut(tml_model *m, const tml_op *op)
{
    operand x, t, y;
    uint32_t i, n;
    const int8_t *xd, *table;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_in(op, 1), &t);
    get(m, tml_op_out(op), &y);
    n = tml_elements(&x.t);
    xd = (const int8_t *)x.data;
    table = (const int8_t *)t.data;
    yd = (int8_t *)y.out;
    for (i = 0; i < n; i++) /* in place is fine: element i is read before it is written */
        yd[i] = table[xd[i] + 128];
    return TML_OK;
}

static tml_status pad(tml_model *m, const tml_op *op)
{
    operand x, y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t i0, i1, i2;
    const int8_t *xd;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_out(op), &y);
    get_params(op, p);
    xd = (const int8_t *)x.data;
    yd = (int8_t *)y.out;
    memset(yd, (int8_t)p[8], y.t.bytes);
    for (i0 = 0; i0 < x.d[0]; i0++)
        for (i1 = 0; i1 < x.d[1]; i1++)
            for (i2 = 0; i2 < x.d[2]; i2++) {
                size_t src = (((size_t)i0 * x.d[1] + i1) * x.d[2] + i2) * x.d[3];
                size_t dst = ((((size_t)i0 + p[0]) * y.d[1] + i1 + p[2]) * y.d[2] + i2 + p[4]) * y.d[3] + p[6];
                memcpy(yd + dst, xd + src, x.d[3]);
            }
    return TML_OK;
}

static tml_status mean(tml_model *m, const tml_op *op)
{
    operand x, y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t lo[4], hi[4], c[4], o = 0, s[4];
    int k;
    const int8_t *xd;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_out(op), &y);
    get_params(op, p);
    xd = (const int8_t *)x.data;
    yd = (int8_t *)y.out;
    s[3] = 1;
    for (k = 2; k >= 0; k--)
        s[k] = s[k + 1] * x.d[k + 1];
    /* odometer over the kept axes (row-major, which is the output's order); inner loops over reduced axes */
    for (k = 0; k < 4; k++)
        c[k] = 0;
    for (;;) {
        int32_t acc = 0;
        uint32_t j0, j1, j2, j3;
        for (k = 0; k < 4; k++) {
            int red = (p[0] >> k) & 1;
            lo[k] = red ? 0 : c[k];
            hi[k] = red ? x.d[k] : c[k] + 1;
        }
        for (j0 = lo[0]; j0 < hi[0]; j0++)
            for (j1 = lo[1]; j1 < hi[1]; j1++)
                for (j2 = lo[2]; j2 < hi[2]; j2++)
                    for (j3 = lo[3]; j3 < hi[3]; j3++)
                        acc += xd[j0 * s[0] + j1 * s[1] + j2 * s[2] + j3 * s[3]] - p[1];
        yd[o++] = (int8_t)tml_clamp(tml_mbqm(acc, p[3], p[4]) + p[2], -128, 127);
        for (k = 3; k >= 0; k--) {
            if ((p[0] >> k) & 1)
                continue;
            if (++c[k] < x.d[k])
                break;
            c[k] = 0;
        }
        if (k < 0)
            break;
    }
    return TML_OK;
}

static tml_status concatenation(tml_model *m, const tml_op *op)
{
    static const uint8_t esize[6] = {0, 1, 1, 2, 4, 4};
    operand y;
    uint32_t axis = (uint32_t)tml_op_param(op, 0), outer = 1, k, i, o, base = 0, ystride, es;
    int8_t *yd;
    get(m, tml_op_out(op), &y);
    es = esize[y.t.dtype];
    for (k = 0; k < axis; k++)
        outer *= y.d[k];
    ystride = es;
    for (k = axis; k < 4; k++)
        ystride *= y.d[k];
    yd = (int8_t *)y.out;
    for (i = 0; i < op->n_in; i++) {
        operand x;
        uint32_t chunk;
        get(m, tml_op_in(op, i), &x);
        chunk = es;
        for (k = axis; k < 4; k++)
            chunk *= x.d[k];
        for (o = 0; o < outer; o++)
            memcpy(yd + (size_t)o * ystride + base, (const int8_t *)x.data + (size_t)o * chunk, chunk);
        base += chunk;
    }
    return TML_OK;
}

static tml_status quantize(tml_model *m, const tml_op *op)
{
    operand x, y;
    uint32_t i, n;
    const uint8_t *xd;
    int8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_out(op), &y);
    n = tml_elements(&x.t);
    xd = (const uint8_t *)x.data;
    yd = (int8_t *)y.out;
    for (i = 0; i < n; i++) {
        float f, q;
        int32_t v;
        memcpy(&f, xd + 4 * i, 4);
        q = roundf(f / y.t.scale); /* binary32 division, then round half away from zero */
        if (q != q)
            v = 0; /* NaN: TFLM's cast is undefined; we map it to the zero point */
        else if (q > 1e6f)
            v = 1000000;
        else if (q < -1e6f)
            v = -1000000;
        else
            v = (int32_t)q;
        yd[i] = (int8_t)tml_clamp(v + y.t.zero_point, -128, 127);
    }
    return TML_OK;
}

static tml_status dequantize(tml_model *m, const tml_op *op)
{
    operand x, y;
    uint32_t i, n;
    const int8_t *xd;
    uint8_t *yd;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_out(op), &y);
    n = tml_elements(&x.t);
    xd = (const int8_t *)x.data;
    yd = y.out;
    for (i = 0; i < n; i++) {
        float f = (float)((double)x.t.scale * (double)(xd[i] - x.t.zero_point));
        memcpy(yd + 4 * i, &f, 4);
    }
    return TML_OK;
}

static tml_status copy(tml_model *m, const tml_op *op)
{
    operand x, y;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_out(op), &y);
    memmove(y.out, x.data, y.t.bytes);
    return TML_OK;
}

/* TREE_ENSEMBLE (§10): y = init, then each tree walks from its root by comparing order keys of float32 bit
 * patterns (integer compares only, no FPU) and adds its leaf row. The loader proved every walk ends and every
 * index is in range; a NaN feature has no key and fails the inference. */
static tml_status tree_ensemble(tml_model *m, const tml_op *op)
{
    operand x, nodes, leaves, trees, init, y;
    uint32_t t, n_trees, width, j;
    const uint32_t *xb;
    int32_t *yv;
    get(m, tml_op_in(op, 0), &x);
    get(m, tml_op_in(op, 1), &nodes);
    get(m, tml_op_in(op, 2), &leaves);
    get(m, tml_op_in(op, 3), &trees);
    get(m, tml_op_in(op, 4), &init);
    get(m, tml_op_out(op), &y);
    xb = (const uint32_t *)x.data; /* the loader checked x and y are 4-byte aligned in the arena */
    yv = (int32_t *)(void *)y.out;
    n_trees = trees.t.dims[0];
    width = leaves.t.dims[1];
    memcpy(yv, init.data, y.t.bytes);
    for (t = 0; t < n_trees; t++) {
        const uint8_t *tr = (const uint8_t *)trees.data + 8u * t;
        int32_t at = tml_ld32(tr), first = tml_ld32(tr + 4);
        const uint8_t *row;
        while (at >= 0) {
            const uint8_t *nd = (const uint8_t *)nodes.data + 16u * (uint32_t)at;
            uint32_t b = xb[tml_ld32(nd)], mag = b & 0x7FFFFFFFu;
            int32_t key;
            if (mag > (uint32_t)TML_F32_INF_BITS) {
                static const char nan[] = "TREE_ENSEMBLE: input feature is NaN";
                memcpy(m->reason, nan, sizeof nan);
                m->status = TML_E_RUNTIME;
                return TML_E_RUNTIME;
            }
            key = b >> 31 ? -(int32_t)mag : (int32_t)b; /* order key: -0.0 and +0.0 both 0 */
            at = tml_ld32(nd + (key <= tml_ld32(nd + 4) ? 8 : 12));
        }
        row = (const uint8_t *)leaves.data + 4u * width * (uint32_t)~at;
        for (j = 0; j < width; j++) /* sums wrap like int32 two's complement; the compiler bounds them */
            yv[first + (int32_t)j] = (int32_t)((uint32_t)yv[first + (int32_t)j] + (uint32_t)tml_ld32(row + 4u * j));
    }
    return TML_OK;
}

tml_status tml_run_op(tml_model *m, const tml_op *op)
{
#ifdef TML_FAST
    if (tml_fast_run(m, op)) /* the host kernels (tml_fast.c) took it */
        return TML_OK;
#endif
    switch (op->opcode) {
    case OP_CONV_2D: return conv_2d(m, op);
    case OP_DEPTHWISE_CONV_2D: return depthwise_conv_2d(m, op);
    case OP_FULLY_CONNECTED: return fully_connected(m, op);
    case OP_AVERAGE_POOL_2D: return pool_2d(m, op, 0);
    case OP_MAX_POOL_2D: return pool_2d(m, op, 1);
    case OP_ADD: return add_mul(m, op, 1);
    case OP_MUL: return add_mul(m, op, 0);
    case OP_SOFTMAX: return softmax(m, op);
    case OP_LUT: return lut(m, op);
    case OP_PAD: return pad(m, op);
    case OP_MEAN: return mean(m, op);
    case OP_CONCATENATION: return concatenation(m, op);
    case OP_QUANTIZE: return quantize(m, op);
    case OP_DEQUANTIZE: return dequantize(m, op);
    case OP_COPY: return copy(m, op);
    case OP_TREE_ENSEMBLE: return tree_ensemble(m, op);
    }
    m->status = TML_E_RUNTIME;
    return TML_E_RUNTIME;
}

const char *tml_kernel_set(void) { return TML_DSP ? "cortex-m-dsp" : "reference"; }

/* The MBQM the kernels of this build use (SMMULR-based on Cortex-M DSP), exported for tests/c/tml_unit.c. */
int32_t tml_kernel_mbqm(int32_t x, int32_t m, int32_t s) { return REQUANT_MBQM(x, m, s); }
