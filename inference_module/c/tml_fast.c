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
#include "tml_fast.h"

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
    case OP_CONV_2D: took = tml_fast_conv_2d(m, op); break;
    case OP_DEPTHWISE_CONV_2D: took = depthwise_conv_2d(m, op); break;
    case OP_FULLY_CONNECTED: took = tml_fast_fully_connected(m, op); break;
    case OP_ADD: took = add(m, op); break;
    }
    tml_fast_ops_run += (uint32_t)took;
    return took;
}
