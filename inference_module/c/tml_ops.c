/* Kernels for every opcode of ABI 1 (docs/blob-format.md §5), bit-exact with TFLite Micro's reference kernels.
 * They run only on ops the loader validated, so they do not re-check shapes. Dot products go through tml_dot.h,
 * which has the portable and the Cortex-M DSP implementation. This file dispatches (tml_run_op) and holds the
 * small kernels; CONV_2D is in tml_conv.c (its GEMM in tml_gemm.c), DEPTHWISE_CONV_2D in tml_depthwise.c and
 * tml_dw_m4.c, FULLY_CONNECTED in tml_dense.c. */
#include <math.h>

#include "tml_kernels.h"

void tml_get_operand(const tml_model *m, uint16_t index, operand *o)
{
    tml_tensor_read(m, index, &o->t);
    tml_dims4(&o->t, o->d);
    o->data = o->t.storage == TML_ARENA ? (const void *)(m->arena + o->t.offset)
                                        : (const void *)(m->consts + o->t.offset);
    o->out = o->t.storage == TML_ARENA ? m->arena + o->t.offset : NULL;
}

void tml_get_weighted(const tml_model *m, const tml_op *op, operand *x, operand *w, operand *b, operand *mu,
                      operand *sh, operand *y)
{
    tml_get_operand(m, tml_op_in(op, 0), x);
    tml_get_operand(m, tml_op_in(op, 1), w);
    tml_get_operand(m, tml_op_in(op, 2), b);
    tml_get_operand(m, tml_op_in(op, 3), mu);
    tml_get_operand(m, tml_op_in(op, 4), sh);
    tml_get_operand(m, tml_op_out(op), y);
}

void tml_get_params(const tml_op *op, int32_t *p)
{
    unsigned i;
    for (i = 0; i < op->n_params && i < TML_MAX_PARAMS; i++)
        p[i] = tml_op_param(op, i);
}

/* AVERAGE_POOL_2D's mean of count taps summing to acc, rounded half away from zero as TFLM's reference */
static inline int32_t rounded_mean(int32_t acc, uint32_t count)
{
    return acc > 0 ? (acc + (int32_t)count / 2) / (int32_t)count : (acc - (int32_t)count / 2) / (int32_t)count;
}

#if TML_DSP
/* out[0..16) = the rounded averages of 16 channels over a window of rows x cols taps (x0 its first tap's, rows
 * row_step bytes apart, taps C apart; count = rows x cols <= 255): per tap 4 word loads and 8 SXTAB16 into eight
 * 16-bit lane pairs (|sum| <= 255 x 128), ~14 modelled cycles per tap instead of 4 x ~9 four channels at a time */
static __attribute__((noinline)) void avg16(const int8_t *x0, uint32_t rows, uint32_t cols, uint32_t row_step,
                                            uint32_t C, uint32_t count, int32_t lo, int32_t hi, int8_t *out)
{
    uint32_t e0 = 0, o0 = 0, e1 = 0, o1 = 0, e2 = 0, o2 = 0, e3 = 0, o3 = 0, r, k, j;
    uint32_t lanes[8];
    for (r = 0; r < rows; r++, x0 += row_step) {
        const int8_t *xr = x0;
        for (k = 0; k < cols; k++, xr += C) {
            const uint32_t v0 = tml_ldu32(xr), v1 = tml_ldu32(xr + 4), v2 = tml_ldu32(xr + 8), v3 = tml_ldu32(xr + 12);
            e0 = (uint32_t)__sxtab16(e0, v0);
            o0 = (uint32_t)tml_sxtab16_ror8(o0, v0);
            e1 = (uint32_t)__sxtab16(e1, v1);
            o1 = (uint32_t)tml_sxtab16_ror8(o1, v1);
            e2 = (uint32_t)__sxtab16(e2, v2);
            o2 = (uint32_t)tml_sxtab16_ror8(o2, v2);
            e3 = (uint32_t)__sxtab16(e3, v3);
            o3 = (uint32_t)tml_sxtab16_ror8(o3, v3);
        }
    }
    lanes[0] = e0; lanes[1] = o0; lanes[2] = e1; lanes[3] = o1;
    lanes[4] = e2; lanes[5] = o2; lanes[6] = e3; lanes[7] = o3;
    for (j = 0; j < 16; j++) { /* channel j: byte j % 4 of word j / 4, whose bytes 0, 2 are e's lanes, 1, 3 o's */
        const uint32_t w = lanes[2 * (j / 4) + (j & 1)];
        const int32_t acc = (int16_t)(j & 2 ? w >> 16 : w);
        const int32_t v = rounded_mean(acc, count);
        out[j] = (int8_t)tml_clamp(v, lo, hi);
    }
}
#endif

static tml_status pool_2d(tml_model *m, const tml_op *op, int is_max)
{
    operand x, y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t n, oy, ox, c, H, W, C, Ho, Wo;
    const int8_t *xd;
    int8_t *yd;
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_out(op), &y);
    tml_get_params(op, p);
    H = x.d[1]; W = x.d[2]; C = x.d[3];
    Ho = y.d[1]; Wo = y.d[2];
    xd = (const int8_t *)x.data;
    yd = (int8_t *)y.out;
    for (n = 0; n < x.d[0]; n++)
        for (oy = 0; oy < Ho; oy++) {
            int64_t iy0 = (int64_t)oy * p[0] - p[4];
            uint32_t ky0, ky1;
            tml_tap_range(iy0, 1, (uint32_t)p[2], H, &ky0, &ky1);
            for (ox = 0; ox < Wo; ox++) {
                int64_t ix0 = (int64_t)ox * p[1] - p[5];
                uint32_t kx0, kx1, count;
                int8_t *out = yd + (((size_t)n * Ho + oy) * Wo + ox) * C;
                tml_tap_range(ix0, 1, (uint32_t)p[3], W, &kx0, &kx1);
                count = (ky1 - ky0) * (kx1 - kx0);
                c = 0;
#if TML_DSP
                if (!is_max && count >= 1 && count <= 255) {
                    /* 4 channels at a time, summed in 16-bit lanes by SXTAB16 (|sum| <= 255 * 128 fits) */
                    const int8_t *x0 = xd + (((size_t)n * H + (size_t)(iy0 + ky0)) * W + (size_t)(ix0 + kx0)) * C;
                    for (; c + 16 <= C; c += 16) /* 16 channels per pass over the window (KWS's 25 x 5 x 64 mean) */
                        avg16(x0 + c, ky1 - ky0, kx1 - kx0, W * C, C, count, p[6], p[7], out + c);
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
                            const int32_t v = rounded_mean(acc, count);
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
                        v = rounded_mean(acc, count);
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
    tml_get_operand(m, tml_op_in(op, 0), &a);
    tml_get_operand(m, tml_op_in(op, 1), &b);
    tml_get_operand(m, tml_op_out(op), &y);
    tml_get_params(op, p);
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
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_in(op, 1), &t);
    tml_get_operand(m, tml_op_out(op), &y);
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
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_in(op, 1), &t);
    tml_get_operand(m, tml_op_out(op), &y);
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
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_out(op), &y);
    tml_get_params(op, p);
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
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_out(op), &y);
    tml_get_params(op, p);
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
    tml_get_operand(m, tml_op_out(op), &y);
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
        tml_get_operand(m, tml_op_in(op, i), &x);
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
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_out(op), &y);
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
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_out(op), &y);
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
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_out(op), &y);
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
    tml_get_operand(m, tml_op_in(op, 0), &x);
    tml_get_operand(m, tml_op_in(op, 1), &nodes);
    tml_get_operand(m, tml_op_in(op, 2), &leaves);
    tml_get_operand(m, tml_op_in(op, 3), &trees);
    tml_get_operand(m, tml_op_in(op, 4), &init);
    tml_get_operand(m, tml_op_out(op), &y);
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
    case OP_CONV_2D: return tml_conv_2d(m, op);
    case OP_DEPTHWISE_CONV_2D: return tml_depthwise_conv_2d(m, op);
    case OP_FULLY_CONNECTED: return tml_fully_connected(m, op);
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
