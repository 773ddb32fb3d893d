/* FULLY_CONNECTED and the dense row product it shares with CONV_2D's 1x1 filters: y[o] = requant(sum_i (x[i] + xo)
 * * (w[o, i] + wo) + b[o]). On Cortex-M DSP the row is widened once and four channels go per pass (gemv_1x4_dsp). */
#include "tml_kernels.h"

#if TML_DSP
#define ROW_MAX_K4 640 /* dense_row's widened input: 320 words (1.25 KB) of stack */
#define ROW_SUMS 64     /* dense_row's sums per requantization pass: 256 bytes of stack */

/* MBQM's general path, out of line so that requant_row_fixed's loop keeps its values in registers */
static __attribute__((noinline)) int32_t mbqm_general(int32_t x, int32_t m, int32_t s) { return tml_mbqm(x, m, s); }

/* requant_row with one multiplier and shift for every channel (AD's FULLY_CONNECTED layers): with a right shift r
 * of 1..23, for |acc| < 2^30 (else the general path), SRDHM is SMMULR(2 acc, m) (mbqm_fixed_apply) and
 * RDBPOT + out_off is (v + 2^(r-1) + out_off 2^r - [v < 0]) >> r, which cannot overflow for |v| < 2^30, |out_off|
 * <= 128: ~12 cycles per output instead of ~70 with mbqm_dsp's preparation per output. */

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

void tml_dense_row(const int8_t *x, uint32_t K, const int8_t *w, uint32_t Co, const dense_q *qp, int8_t *y)
{
    const dense_q qv = *qp, *q = &qv; /* see tml_dense_pair */
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


tml_status tml_fully_connected(tml_model *m, const tml_op *op)
{
    operand x, w, b, mu, sh, y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t r, rows, Ci, Co, per_channel;
    const int8_t *xd, *wd;
    int8_t *yd;
    tml_get_weighted(m, op, &x, &w, &b, &mu, &sh, &y);
    tml_get_params(op, p);
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
        q.w16_map = NULL;
        q.w8 = NULL;
        q.w8_k = 0;
        for (r = 0; r < rows; r++)
            tml_dense_row(xd + (size_t)r * Ci, Ci, wd, Co, &q, yd + (size_t)r * Co);
    }
    return TML_OK;
}
