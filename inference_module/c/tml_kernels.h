/* What the kernel files share (tml_ops.c, tml_dense.c, tml_gemm.c, tml_conv.c, tml_dw_m4.c, tml_depthwise.c):
 * operand access, the requantization every kernel ends with, and the kernels one op kind borrows from another.
 * Internal to the runtime: not installed, not part of tml.h. */
#ifndef TML_KERNELS_H
#define TML_KERNELS_H

#include "tml_dot.h"

#define DW_BLOCK 64     /* depthwise channels accumulated at once: 256 bytes of stack */
#define CONV_PATCH 1024 /* largest per-pixel receptive field gathered for CONV_2D: 1 KB of stack */

typedef struct {
    tml_tensor t;
    uint32_t d[4];
    const void *data;
    uint8_t *out; /* writable view (arena tensors only) */
} operand;



/* o = the op's tensor `index`: its shape as 4 dims, its data (CONST or arena) and a writable view of arena tensors */
void tml_get_operand(const tml_model *m, uint16_t index, operand *o);
/* the operands of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: input, weights, bias, per-channel multipliers and
 * shifts, output */
void tml_get_weighted(const tml_model *m, const tml_op *op, operand *x, operand *w, operand *b, operand *mu,
                      operand *sh, operand *y);
/* p[0..n_params) = the op's int32 parameters */
void tml_get_params(const tml_op *op, int32_t *p);
/* The running op's bit of tml_model.tile_plain in a PATCH stage (0 outside one): a check of the op's constants that
 * passed on its first tile (same op, same answer) is not repeated on the others */
static inline uint32_t tml_tile_bit(const tml_model *m) { return m->n_tile && m->tile_op < 32 ? 1u << m->tile_op : 0; }

/* Range of filter taps k in [0, K) with 0 <= o + k*d < size. */
static inline void tml_tap_range(int64_t o, uint32_t d, uint32_t K, uint32_t size, uint32_t *lo, uint32_t *hi)
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
    int w16_form;       /* and their form: W16_SUMS, W16_REQUANT (see gemm_2x3_w16) or W16_QUAD (gemm_2x4_w16) */
    /* W16_QUAD with constant channels (const_mask): the blocks hold only the w16_n others, listed in w16_map[0..w16_n)
     * and followed by Co bytes of every channel's constant output (tml_w16_prepare); else NULL */
    const uint8_t *w16_map;
    uint32_t w16_n;
    const int8_t *w8; /* the int8 weight rows [Co][w8_k]: with w16_map, slow_mask's channels are summed from them */
    uint32_t w8_k;
} dense_q;

#if TML_DSP
/* (SRDHM(x, m) >> r, rounded as RDBPOT) + out_off for |x| < 2^30, r >= 1, add = 2^(r-1) + out_off 2^r: the MBQM of
 * one multiplier and shift prepared once (requant_row_fixed, ADD) */
static inline int32_t mbqm_smmulr(int32_t x, int32_t m, int32_t r, int32_t add)
{
    int32_t v;
    __asm__("smmulr %0, %1, %2" : "=r"(v) : "r"(x * 2), "r"(m));
    return (v + add + (v >> 31)) >> r;
}
#endif

/* the op kernels (tml_run_op's switch) */
tml_status tml_conv_2d(tml_model *m, const tml_op *op);
tml_status tml_depthwise_conv_2d(tml_model *m, const tml_op *op);
tml_status tml_fully_connected(tml_model *m, const tml_op *op);

/* FULLY_CONNECTED's row product, also CONV_2D's for 1x1 filters without padding and its fallback (tml_dense.c) */
void tml_dense_row(const int8_t *x, uint32_t K, const int8_t *w, uint32_t Co, const dense_q *qp, int8_t *y);

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

#if TML_DSP
/* Cortex-M DSP GEMM for CONV_2D (tml_gemm.c) */
#define PAIR_MAX_K 640  /* widened pixel pair: 2 * 640 int16 = 2.5 KB of stack */
#define SUMS_B 128      /* words from pixel a's sums to pixel b's in a two-pixel sums block (requant2_dsp's #512) */
#define CONST_MAX_C 256 /* output channels requant2_ok can mark constant: 288 bytes of stack */
#define W16_SUMS 0      /* widened weights' forms (see gemm_2x3_w16) */
#define W16_REQUANT 1
#define W16_QUAD 2      /* requantized, four channels per block (gemm_2x4_w16) */

/* A pixel pair's inputs read in place from the input tensor: `n` runs of `bytes` (a multiple of 4), `step` apart
 * (the rows of two receptive fields inside the input; an even number of output channels). */
typedef struct {
    uint32_t n, bytes;
    size_t step;
} pair_rows;

const int32_t *tml_w16_prepare(tml_model *m, const int8_t *w, uint32_t K, uint32_t Co, size_t npix, dense_q *q,
                               int form);
int tml_w16_requant_form(uint32_t Co, uint32_t K);
int tml_requant2_ok(const dense_q *q, uint32_t Co, uint32_t K, uint32_t *mask, int8_t *val, uint32_t *slow);
void tml_requant2_dsp(const int32_t *sums, uint32_t n, const uint8_t *bias, const uint8_t *mult, const uint8_t *shift,
                      int8_t *ya, int8_t *yb, int32_t off21);
void tml_dense_pair(const int8_t *xa, const int8_t *xb, uint32_t K, const int8_t *w, uint32_t Co, const dense_q *qp,
                    int8_t *ya, int8_t *yb, const pair_rows *rows);
void tml_pair_w16(const int8_t *xa, const int8_t *xb, uint32_t K, uint32_t Co, const dense_q *q, int8_t *ya,
                  int8_t *yb, const pair_rows *rows);
void tml_pixel_w16(const int8_t *x, uint32_t K, uint32_t Co, const dense_q *q, int8_t *y, const pair_rows *rows);
void tml_padded_pairs_w16(const int8_t *pad, uint32_t row_bytes, uint32_t C, uint32_t Ho, uint32_t Wo,
                          const int32_t *p, const pair_rows *rows, uint32_t Co, const dense_q *q, int8_t *y);
void tml_pw_pairs_w16(const int8_t *x, size_t pairs, uint32_t C, uint32_t Co, const dense_q *q, int8_t *y);

/* Cortex-M DSP DEPTHWISE_CONV_2D (tml_dw_m4.c) */
#define DW3_MAX_C 128 /* 3x3 depthwise: 1152 B of packed weights, 1 KB of two pixels' sums, 1152 B of padded window on the stack */
int tml_dw3_fast_ok(const int32_t *p, uint32_t Co, const uint8_t *bias, const uint8_t *shift);
int tml_dw3_planes(const int8_t *xd, uint32_t N, uint32_t H, uint32_t W, uint32_t C, const int8_t *wd,
                   const uint8_t *bias, const uint8_t *mult, const uint8_t *shift, const int32_t *p, uint32_t Ho,
                   uint32_t Wo, int8_t *yd);
void tml_dw3_windows(const operand *xp, const operand *wp, const operand *bp, const operand *mup, const operand *shp,
                     const operand *yp, const int32_t *p);
#endif

#endif
