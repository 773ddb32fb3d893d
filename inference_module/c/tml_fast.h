/* What the host kernels share (tml_fast.c: dispatch, DEPTHWISE_CONV_2D, ADD; tml_fast_conv.c: CONV_2D and
 * FULLY_CONNECTED): 256-bit generic vectors, the x86 builtins behind their target macros, the 8-lane
 * requantization and the operands of a weighted op. Host builds only (-DTML_FAST). */
#ifndef TML_FAST_H
#define TML_FAST_H

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

static inline void requant_prepare(requant_params *q, uint32_t n, const uint8_t *bias, const uint8_t *mult,
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

static inline int read_conv(const tml_model *m, const tml_op *op, conv_operands *c)
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


/* tml_fast_conv.c's kernels: 1 when they ran the op, 0 when they decline it */
int tml_fast_conv_2d(tml_model *m, const tml_op *op);
int tml_fast_fully_connected(tml_model *m, const tml_op *op);

#endif
