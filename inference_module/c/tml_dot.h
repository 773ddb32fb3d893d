/* The inner loops that carry almost all MACs: dot products of int8 vectors with zero-point offsets.
 *
 * Two implementations of one contract, chosen at compile time:
 *  - portable C (host builds and Cortex-M without the DSP extension);
 *  - Cortex-M DSP (__ARM_FEATURE_DSP): 4 int8 are loaded with one LDR, widened two at a time with SXTAB16 (which
 *    also adds the zero-point offset to both halfwords for free), and multiplied pairwise with SMLAD, 2 MAC per
 *    instruction. Four output channels share each widened input word.
 *
 * Contract: sums start at 0 and are returned through `acc`; callers guarantee n <= TML_MAX_DOT so no int32
 * accumulator overflows (|x + xo| <= 255, |w + wo| <= 255).
 */
#ifndef TML_DOT_H
#define TML_DOT_H

#include "tml_internal.h"

#if defined(__ARM_FEATURE_DSP) && !defined(TML_FORCE_PORTABLE)
#define TML_DSP 1
#include <arm_acle.h>

static inline uint32_t tml_ror8(uint32_t v) { return (v >> 8) | (v << 24); }
/* SXTAB16 with its built-in ROR #8 (GCC does not fold a separate rotate into the intrinsic). */
static inline int32_t tml_sxtab16_ror8(uint32_t a, uint32_t b)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline int32_t tml_sxtb16_ror8(uint32_t b)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(b));
    return r;
}
static inline uint32_t tml_pair(int32_t v) { return ((uint32_t)v & 0xffffu) * 0x10001u; }
static inline uint32_t tml_ldu32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int32_t tml_dot1(const int8_t *x, const int8_t *w, uint32_t n, int32_t xo, int32_t wo)
{
    const uint32_t xo2 = tml_pair(xo), wo2 = tml_pair(wo);
    int32_t a = 0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t xv = tml_ldu32(x + i), wv = tml_ldu32(w + i);
        a = __smlad(__sxtab16(xo2, xv), __sxtab16(wo2, wv), a);
        a = __smlad(tml_sxtab16_ror8(xo2, xv), tml_sxtab16_ror8(wo2, wv), a);
    }
    for (; i < n; i++)
        a += (x[i] + xo) * (w[i] + wo);
    return a;
}

/* Two output channels per pass over x: with the input offset packed in a register, 4 pointers, 2 accumulators and
 * 4 temporaries the loop stays in registers (a 4-channel pass spills on Cortex-M4). Per 4 inputs: 1 LDR + 2
 * SXTAB16 for x, then per channel 1 LDR + 2 SXTB16 + 2 SMLAD: 13 instructions for 8 MAC. */
static inline void tml_dot2(const int8_t *x, const int8_t *w0, const int8_t *w1, uint32_t n, uint32_t xo2,
                            int32_t *acc0, int32_t *acc1)
{
    int32_t a0 = 0, a1 = 0;
    const int8_t *end = x + (n & ~3u);
    while (x < end) {
        uint32_t xv = tml_ldu32(x), wv;
        int32_t xe = __sxtab16(xo2, xv), xd = tml_sxtab16_ror8(xo2, xv);
        x += 4;
        wv = tml_ldu32(w0);
        w0 += 4;
        a0 = __smlad(xe, __sxtb16(wv), a0);
        a0 = __smlad(xd, tml_sxtb16_ror8(wv), a0);
        wv = tml_ldu32(w1);
        w1 += 4;
        a1 = __smlad(xe, __sxtb16(wv), a1);
        a1 = __smlad(xd, tml_sxtb16_ror8(wv), a1);
    }
    *acc0 += a0;
    *acc1 += a1;
}

/* acc[j] = sum_i (x[i] + xo) * (w[j*ws + i] + wo), j = 0..3 */
static inline void tml_dot4(const int8_t *x, const int8_t *w, uint32_t ws, uint32_t n, int32_t xo, int32_t wo,
                            int32_t acc[4])
{
    uint32_t i, j, head = n & ~3u;
    if (wo != 0) { /* asymmetric weights (rare): the generic per-channel loop */
        for (j = 0; j < 4; j++)
            acc[j] += tml_dot1(x, w + j * ws, n, xo, wo);
        return;
    }
    tml_dot2(x, w, w + ws, n, tml_pair(xo), &acc[0], &acc[1]);
    tml_dot2(x, w + 2 * ws, w + 3 * ws, n, tml_pair(xo), &acc[2], &acc[3]);
    for (i = head; i < n; i++) {
        int32_t xv = x[i] + xo;
        for (j = 0; j < 4; j++)
            acc[j] += xv * w[j * ws + i];
    }
}

/* Depthwise tap, 4 channels: acc[j] += (x[j] + xo) * w[j]. Lanes stay separate, so SMLABB/SMLATT (1 MAC each). */
static inline void tml_mac4_lanes(const int8_t *x, const int8_t *w, uint32_t xo2, int32_t acc[4])
{
    uint32_t xv = tml_ldu32(x), wv = tml_ldu32(w);
    int32_t xe = __sxtab16(xo2, xv), xd = tml_sxtab16_ror8(xo2, xv);
    int32_t we = __sxtb16(wv), wd = tml_sxtb16_ror8(wv);
    acc[0] = __smlabb(xe, we, acc[0]);
    acc[2] = __smlatt(xe, we, acc[2]);
    acc[1] = __smlabb(xd, wd, acc[1]);
    acc[3] = __smlatt(xd, wd, acc[3]);
}

#else /* portable C */
#define TML_DSP 0

static inline void tml_dot4(const int8_t *x, const int8_t *w, uint32_t ws, uint32_t n, int32_t xo, int32_t wo,
                            int32_t acc[4])
{
    const int8_t *w0 = w, *w1 = w + ws, *w2 = w + 2 * ws, *w3 = w + 3 * ws;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    uint32_t i;
    if (wo == 0) { /* the common case (symmetric int8 weights): one add fewer per MAC */
        for (i = 0; i < n; i++) {
            int32_t xv = x[i] + xo;
            a0 += xv * w0[i];
            a1 += xv * w1[i];
            a2 += xv * w2[i];
            a3 += xv * w3[i];
        }
    } else {
        for (i = 0; i < n; i++) {
            int32_t xv = x[i] + xo;
            a0 += xv * (w0[i] + wo);
            a1 += xv * (w1[i] + wo);
            a2 += xv * (w2[i] + wo);
            a3 += xv * (w3[i] + wo);
        }
    }
    acc[0] += a0;
    acc[1] += a1;
    acc[2] += a2;
    acc[3] += a3;
}

static inline int32_t tml_dot1(const int8_t *x, const int8_t *w, uint32_t n, int32_t xo, int32_t wo)
{
    int32_t a = 0;
    uint32_t i;
    for (i = 0; i < n; i++)
        a += (x[i] + xo) * (w[i] + wo);
    return a;
}
#endif

#endif
