/* Cortex-M DSP DEPTHWISE_CONV_2D (docs/c-runtime.md, "Fast paths"): 3x3 windows per pixel (dw3x3_dsp, tml_dw3_windows)
 * and the plane kernels (tml_dw3_planes: a band of 4 channels widened into int16 planes, then dwp_s1f / dwp_s1q /
 * dwp_mac_s1 / dwp_mac_s2 and dwp_requant_dsp). DSP builds only; tml_depthwise.c picks them. */
#include "tml_kernels.h"

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


/* tml_requant2_ok for a 3x3 depthwise op (9 terms per sum). */
int tml_dw3_fast_ok(const int32_t *p, uint32_t Co, const uint8_t *bias, const uint8_t *shift)
{
    dense_q q3;
    q3.bias = bias;
    q3.shift = shift;
    q3.per_channel = 1;
    q3.lo = p[8];
    q3.hi = p[9];
    return tml_requant2_ok(&q3, Co, 9, NULL, NULL, NULL);
}




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

#define DWP_PLANE 512 /* one channel's padded input band for tml_dw3_planes, halfwords: 4 planes, 4 KB of stack */
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
 * prepared once: tml_requant2_dsp's shortcut (see there). Outputs in pairs (an odd row's first alone): one LDRD of two
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

/* dwp_s1f: stride 1 both ways on planes of a fixed row stride (DWP_FS bytes, so every plane row is an immediate
 * offset and no register holds the stride), the 4 channels of a group, requantization fused. The weights are
 * doubled and every sum starts from the doubled bias (SMLAD's accumulate operand: it stays in r1 through the MACs),
 * so a sum is requant2_dsp's t = 2 (sum + bias) as soon as its last MAC is done and requantizing takes 4
 * instructions. Row pairs go one output pair at a time (4 plane rows, 24 MAC instructions, 8 loads), an odd width's
 * last column on its own (12 MAC instructions); an odd last row goes 4 outputs at a time (2 pairs of one row: 3 words
 * of each of 3 plane rows, the third in r1 once the bias is in all 4 sums), its last 2 or 3 outputs as such a block
 * stored in part, a last 1 on its own. ~82 modelled cycles per 4 outputs (dwp_s1q: ~90, and ~122 on dwp_mac_s1 and
 * dwp_requant_dsp for a last row). Plane rows are read up to halfword 2 Wop + 5 (<= 31: Wop <= 28) of a row. */
#define DWP_FS 64 /* dwp_s1f's plane row stride, bytes */
#define DWP_F_MAX_W 28 /* its widest output row: reads up to halfword 2 Wop + 5 of a plane row (< DWP_FS / 2) */
typedef struct {
    uint32_t ostep, orow; /* output bytes between plane columns and between plane rows */
    uint32_t span;        /* output bytes of a row's whole pairs: Wop / 2 * 2 ostep (0: none) */
    uint32_t rowpairs;    /* output row pairs */
    uint32_t last;        /* 1: an odd last row */
    uint32_t qspan;       /* its 4-output blocks' output bytes: Wop / 4 * 4 ostep (0: none) */
    uint32_t left;        /* its outputs after them: Wop & 3 (odd: Wop is) */
    const dwp_ch *ch;     /* the 4 channels' weights (dwp_s1f doubles them) and constants */
} dwp_f;

/* frame: [0] bias2, [4] P0 Q0 P1 Q1 P2 Q2, [28] mult, [32] round, [36] right, [40] this block's output, [44] ostep,
 * [48] orow, [52] the row's output end (a block count left over in a last row), [56] this row pair's plane, [60] its
 * output, [64] row pairs left, [68] the next dwp_ch, [72] channels left, [76] the next channel's plane, [80] its
 * output, [84] q */
#define DWP_F_CONSTS(end)                                                                                      \
    "ldr r4, [sp, #28]\n\t"                                                                                    \
    "ldr r5, [sp, #32]\n\t"                                                                                    \
    "ldr r6, [sp, #36]\n\t"                                                                                    \
    "ldr r7, [sp, #40]\n\t"                                                                                    \
    "ldr r8, [sp, #44]\n\t"                                                                                    \
    "ldr r9, [sp, #48]\n\t"                                                                                    \
    "ldr " end ", [sp, #52]\n\t"
#define DWP_F_RQ(s)                                                                                            \
    "add lr, r5, " s ", asr #31\n\t"                                                                           \
    "smmlar " s ", " s ", r4, lr\n\t"                                                                          \
    "asr " s ", " s ", r6\n\t"                                                                                 \
    "ssat " s ", #8, " s "\n\t"
/* two output rows (r10 r11: row a's pair, r2 r3: row b's) from plane rows 0..3 at r0 */
#define DWP_F_MAC2                                                                                             \
    "ldr r12, [r0]\n\t"                                                                                        \
    "ldr lr, [r0, #4]\n\t"                                                                                     \
    "smlad r10, r12, r4, r1\n\t"                                                                               \
    "smlatb r11, r12, r4, r1\n\t"                                                                              \
    "smlabb r10, lr, r5, r10\n\t"                                                                              \
    "smladx r11, lr, r5, r11\n\t"                                                                              \
    "ldr r12, [r0, #64]\n\t"                                                                                   \
    "ldr lr, [r0, #68]\n\t"                                                                                    \
    "smlad r10, r12, r6, r10\n\t"                                                                              \
    "smlatb r11, r12, r6, r11\n\t"                                                                             \
    "smlad r2, r12, r4, r1\n\t"                                                                                \
    "smlatb r3, r12, r4, r1\n\t"                                                                               \
    "smlabb r10, lr, r7, r10\n\t"                                                                              \
    "smladx r11, lr, r7, r11\n\t"                                                                              \
    "smlabb r2, lr, r5, r2\n\t"                                                                                \
    "smladx r3, lr, r5, r3\n\t"                                                                                \
    "ldr r12, [r0, #128]\n\t"                                                                                  \
    "ldr lr, [r0, #132]\n\t"                                                                                   \
    "smlad r10, r12, r8, r10\n\t"                                                                              \
    "smlatb r11, r12, r8, r11\n\t"                                                                             \
    "smlad r2, r12, r6, r2\n\t"                                                                                \
    "smlatb r3, r12, r6, r3\n\t"                                                                               \
    "smlabb r10, lr, r9, r10\n\t"                                                                              \
    "smladx r11, lr, r9, r11\n\t"                                                                              \
    "smlabb r2, lr, r7, r2\n\t"                                                                                \
    "smladx r3, lr, r7, r3\n\t"                                                                                \
    "ldr r12, [r0, #192]\n\t"                                                                                  \
    "ldr lr, [r0, #196]\n\t"                                                                                   \
    "smlad r2, r12, r8, r2\n\t"                                                                                \
    "smlatb r3, r12, r8, r3\n\t"                                                                               \
    "smlabb r2, lr, r9, r2\n\t"                                                                                \
    "smladx r3, lr, r9, r3\n\t"
/* one plane row's part of a one-row block: words A B C at [r0 + off] (r12 lr r1), weights p q */
#define DWP_F_ROW1(off, a4, a8, p, q)                                                                          \
    "ldr r12, [r0, #" off "]\n\t"                                                                              \
    "ldr lr, [r0, #" a4 "]\n\t"                                                                                \
    "ldr r1, [r0, #" a8 "]\n\t"                                                                                \
    "smlad r10, r12, " p ", r10\n\t"                                                                           \
    "smlatb r11, r12, " p ", r11\n\t"                                                                          \
    "smlad r2, lr, " p ", r2\n\t"                                                                              \
    "smlatb r3, lr, " p ", r3\n\t"                                                                             \
    "smlabb r10, lr, " q ", r10\n\t"                                                                           \
    "smladx r11, lr, " q ", r11\n\t"                                                                           \
    "smlabb r2, r1, " q ", r2\n\t"                                                                             \
    "smladx r3, r1, " q ", r3\n\t"
/* one output row's 4 outputs (r10 r11 r2 r3) from plane rows 0..2 at r0 */
#define DWP_F_MAC1                                                                                             \
    "ldr r12, [r0]\n\t"                                                                                        \
    "ldr lr, [r0, #4]\n\t"                                                                                     \
    "smlad r10, r12, r4, r1\n\t"                                                                               \
    "smlatb r11, r12, r4, r1\n\t"                                                                              \
    "smlad r2, lr, r4, r1\n\t"                                                                                 \
    "smlatb r3, lr, r4, r1\n\t"                                                                                \
    "ldr r1, [r0, #8]\n\t"                                                                                     \
    "smlabb r10, lr, r5, r10\n\t"                                                                              \
    "smladx r11, lr, r5, r11\n\t"                                                                              \
    "smlabb r2, r1, r5, r2\n\t"                                                                                \
    "smladx r3, r1, r5, r3\n\t" DWP_F_ROW1("64", "68", "72", "r6", "r7") DWP_F_ROW1("128", "132", "136", "r8", "r9")
/* one output's column taps: the plane words at r0 + off and off + 4 in r12 and lr, then `acc` (started at `from`:
 * r1, the doubled bias, or acc itself) += its three taps from them, weights w (taps 0,1) and wh (tap 2) */
#define DWP_F_LD(off, off4) "ldr r12, [r0, #" off "]\n\t" "ldr lr, [r0, #" off4 "]\n\t"
#define DWP_F_TAPS(acc, from, w, wh) "smlad " acc ", r12, " w ", " from "\n\t" "smlabb " acc ", lr, " wh ", " acc "\n\t"
/* an odd width's last column of a row pair: r10 (row a) and r2 (row b) from plane rows 0..3 at r0 */
#define DWP_F_MAC2C                                                                                            \
    DWP_F_LD("0", "4") DWP_F_TAPS("r10", "r1", "r4", "r5")                                                     \
    DWP_F_LD("64", "68") DWP_F_TAPS("r10", "r10", "r6", "r7") DWP_F_TAPS("r2", "r1", "r4", "r5")               \
    DWP_F_LD("128", "132") DWP_F_TAPS("r10", "r10", "r8", "r9") DWP_F_TAPS("r2", "r2", "r6", "r7")             \
    DWP_F_LD("192", "196") DWP_F_TAPS("r2", "r2", "r8", "r9")
/* a last row's last output alone: r10 from plane rows 0..2 at r0 */
#define DWP_F_MAC1C                                                                                            \
    DWP_F_LD("0", "4") DWP_F_TAPS("r10", "r1", "r4", "r5") DWP_F_LD("64", "68")                                \
    DWP_F_TAPS("r10", "r10", "r6", "r7") DWP_F_LD("128", "132") DWP_F_TAPS("r10", "r10", "r8", "r9")

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
/* a block (mac: its sums in r10 r11 r2 r3, r0 advanced by adv) requantized, its first two outputs stored at r7 and
 * r7 + r8 (ostep) */
#define DWP_F_BLOCK(mac, adv)                                                                                  \
    mac "adds r0, #" adv "\n\t" DWP_F_CONSTS("r12") DWP_F_RQ("r10") DWP_F_RQ("r11") DWP_F_RQ("r2") DWP_F_RQ("r3") \
        "strb r10, [r7]\n\t"                                                                                   \
        "strb r11, [r7, r8]\n\t"
/* dwp_s1f and dwp_s2f: mac2 (a row pair's output pair), mac2c (its odd last column), mac1 (4 outputs of a last
 * row), mac1c (its last output alone), the plane bytes a pair, such a block and a row pair advance */
#define DWP_F_BODY(mac2, mac2c, mac1, mac1c, padv, qadv, rpadv)                                                \
    __asm__ volatile("push {r4-r11, lr}\n\t"                                                                   \
                     "sub sp, #88\n\t"                                                                         \
                     "str r2, [sp, #84]\n\t"                                                                   \
                     "ldr r3, [r2]\n\t"                                                                        \
                     "ldr r4, [r2, #4]\n\t"                                                                    \
                     "ldr r5, [r2, #28]\n\t"                                                                   \
                     "movs r6, #4\n\t"                                                                   \
                     "str r3, [sp, #44]\n\t"                                                                   \
                     "str r4, [sp, #48]\n\t"                                                                   \
                     "str r5, [sp, #68]\n\t"                                                                   \
                     "str r6, [sp, #72]\n\t"                                                                   \
                     "str r0, [sp, #76]\n\t"                                                                   \
                     "str r1, [sp, #80]\n\t"                                                                   \
                     "5:\n\t" /* a channel */                                                                  \
                     "ldr r2, [sp, #68]\n\t"                                                                   \
                     "ldmia r2!, {r3-r12}\n\t" /* P0 .. Q2, bias2, mult, round, right */                       \
                     "str r2, [sp, #68]\n\t"                                                                   \
                     "str r9, [sp]\n\t"                                                                        \
                     "sadd16 r3, r3, r3\n\t" /* the weights doubled */                                         \
                     "sadd16 r4, r4, r4\n\t"                                                                   \
                     "sadd16 r5, r5, r5\n\t"                                                                   \
                     "sadd16 r6, r6, r6\n\t"                                                                   \
                     "sadd16 r7, r7, r7\n\t"                                                                   \
                     "sadd16 r8, r8, r8\n\t"                                                                   \
                     "add r2, sp, #4\n\t"                                                                      \
                     "stmia r2, {r3-r8}\n\t"                                                                   \
                     "add r2, sp, #28\n\t"                                                                     \
                     "stmia r2, {r10-r12}\n\t"                                                                 \
                     "ldr r0, [sp, #76]\n\t"                                                                   \
                     "ldr r1, [sp, #80]\n\t"                                                                   \
                     "add r3, r0, #1024\n\t"                                                                   \
                     "str r3, [sp, #76]\n\t"                                                                   \
                     "adds r3, r1, #1\n\t"                                                                     \
                     "str r3, [sp, #80]\n\t"                                                                   \
                     "ldr r2, [sp, #84]\n\t"                                                                   \
                     "ldr r3, [r2, #12]\n\t" /* row pairs */                                                   \
                     "cmp r3, #0\n\t"                                                                          \
                     "beq 6f\n\t"                                                                              \
                     "str r3, [sp, #64]\n\t"                                                                   \
                     "2:\n\t" /* a row pair: r0 its plane row 0, r1 its output */                              \
                     "str r0, [sp, #56]\n\t"                                                                   \
                     "str r1, [sp, #60]\n\t"                                                                   \
                     "str r1, [sp, #40]\n\t"                                                                   \
                     "ldr r2, [sp, #84]\n\t"                                                                   \
                     "ldr r3, [r2, #8]\n\t"                                                                    \
                     "cmp r3, #0\n\t"                                                                          \
                     "beq 3f\n\t"                                                                              \
                     "add r3, r1\n\t"                                                                          \
                     "str r3, [sp, #52]\n\t"                                                                   \
                     "ldm sp, {r1, r4-r9}\n\t"                                                                 \
                     "1:\n\t" DWP_F_BLOCK(mac2, padv)                                                          \
                     "add r1, r7, r9\n\t"                                                                      \
                     "strb r2, [r1]\n\t"                                                                       \
                     "strb r3, [r1, r8]\n\t"                                                                   \
                     "add r7, r7, r8, lsl #1\n\t"                                                              \
                     "str r7, [sp, #40]\n\t"                                                                   \
                     "cmp r7, r12\n\t"                                                                         \
                     "ldm sp, {r1, r4-r9}\n\t"                                                                 \
                     "bne 1b\n\t"                                                                              \
                     "3:\n\t" /* an odd width's last column: a pair, its first output stored */                \
                     "ldr r2, [sp, #84]\n\t"                                                                   \
                     "ldr r3, [r2, #24]\n\t"                                                                   \
                     "tst r3, #1\n\t"                                                                          \
                     "beq 4f\n\t"                                                                              \
                     "ldm sp, {r1, r4-r9}\n\t" mac2c DWP_F_CONSTS("r12") DWP_F_RQ("r10") DWP_F_RQ("r2")        \
                     "strb r10, [r7]\n\t"                                                                      \
                     "strb r2, [r7, r9]\n\t"                                                                   \
                     "4:\n\t" /* the next row pair */                                                          \
                     "ldr r0, [sp, #56]\n\t"                                                                   \
                     "ldr r1, [sp, #60]\n\t"                                                                   \
                     "ldr r3, [sp, #48]\n\t"                                                                   \
                     "ldr r2, [sp, #64]\n\t"                                                                   \
                     "add r0, #" rpadv "\n\t"                                                                  \
                     "add r1, r1, r3, lsl #1\n\t"                                                              \
                     "subs r2, #1\n\t"                                                                         \
                     "str r2, [sp, #64]\n\t"                                                                   \
                     "bne 2b\n\t"                                                                              \
                     "6:\n\t" /* an odd last row: r0 its plane row 0, r1 its output */                         \
                     "ldr r2, [sp, #84]\n\t"                                                                   \
                     "ldr r3, [r2, #16]\n\t"                                                                   \
                     "cmp r3, #0\n\t"                                                                          \
                     "beq 9f\n\t"                                                                              \
                     "str r1, [sp, #40]\n\t"                                                                   \
                     "ldr r3, [r2, #20]\n\t"                                                                   \
                     "cmp r3, #0\n\t"                                                                          \
                     "beq 7f\n\t"                                                                              \
                     "add r3, r1\n\t"                                                                          \
                     "str r3, [sp, #52]\n\t"                                                                   \
                     "ldm sp, {r1, r4-r9}\n\t"                                                                 \
                     "8:\n\t" DWP_F_BLOCK(mac1, qadv)                                                          \
                     "add r7, r7, r8, lsl #1\n\t"                                                              \
                     "strb r2, [r7]\n\t"                                                                       \
                     "strb r3, [r7, r8]\n\t"                                                                   \
                     "add r7, r7, r8, lsl #1\n\t"                                                              \
                     "str r7, [sp, #40]\n\t"                                                                   \
                     "cmp r7, r12\n\t"                                                                         \
                     "ldm sp, {r1, r4-r9}\n\t"                                                                 \
                     "bne 8b\n\t"                                                                              \
                     "7:\n\t" /* its last 1..3 outputs */                                                      \
                     "ldr r2, [sp, #84]\n\t"                                                                   \
                     "ldr r3, [r2, #24]\n\t"                                                                   \
                     "cmp r3, #0\n\t"                                                                          \
                     "beq 9f\n\t"                                                                              \
                     "str r3, [sp, #52]\n\t"                                                                   \
                     "ldm sp, {r1, r4-r9}\n\t"                                                                 \
                     "cmp r3, #1\n\t"                                                                          \
                     "bne 10f\n\t" mac1c DWP_F_CONSTS("r12") DWP_F_RQ("r10")                                   \
                     "strb r10, [r7]\n\t"                                                                      \
                     "b 9f\n\t"                                                                                \
                     "10:\n\t" mac1 DWP_F_CONSTS("r12") DWP_F_RQ("r10") DWP_F_RQ("r11")                        \
                         DWP_F_RQ("r2")                                                                        \
                     "strb r10, [r7]\n\t"                                                                      \
                     "cmp r12, #2\n\t"                                                                         \
                     "blo 9f\n\t"                                                                              \
                     "strb r11, [r7, r8]\n\t"                                                                  \
                     "beq 9f\n\t"                                                                              \
                     "add r7, r7, r8, lsl #1\n\t"                                                              \
                     "strb r2, [r7]\n\t"                                                                       \
                     "9:\n\t" /* the next channel */                                                           \
                     "ldr r12, [sp, #72]\n\t"                                                                  \
                     "subs r12, #1\n\t"                                                                        \
                     "str r12, [sp, #72]\n\t"                                                                  \
                     "bne 5b\n\t"                                                                              \
                     "add sp, #88\n\t"                                                                         \
                     "pop {r4-r11, pc}\n\t")

__attribute__((naked, noinline)) static void dwp_s1f(const int16_t *plane, int8_t *out, const dwp_f *q)
{
    DWP_F_BODY(DWP_F_MAC2, DWP_F_MAC2C, DWP_F_MAC1, DWP_F_MAC1C, "4", "8", "128");
}

/* dwp_s2f: dwp_s1f for stride 2 both ways, on the same DWP_FS-byte plane rows. Output 2j + k takes words A = (x0, x1)
 * and B = (x2, x3) at halfword 4j + 2k of a plane row: SMLAD(A, P) + SMLABB(B, Q). A row pair's output pair reads 5
 * plane rows (3 words each; the third plane row serves both rows), 24 MAC instructions, ~93 modelled cycles per 4
 * outputs (dwp_mac_s2 and dwp_requant_dsp: ~120); a last row's 4 outputs read 5 words of 3 plane rows. Plane rows are
 * read up to halfword 2 Wop + 7 (< DWP_FS / 2: Wop <= DWP_F2_MAX_W). */
#define DWP_F2_MAX_W 12
/* plane row 0's part of the first output pair (r10 r11), the sums from the bias, its third word left in r12 */
#define DWP_F2_PAIR0                                                                                           \
    "ldr r12, [r0]\n\t"                                                                                        \
    "ldr lr, [r0, #4]\n\t"                                                                                     \
    "smlad r10, r12, r4, r1\n\t"                                                                               \
    "smlad r11, lr, r4, r1\n\t"                                                                                \
    "smlabb r10, lr, r5, r10\n\t"                                                                              \
    "ldr r12, [r0, #8]\n\t"                                                                                    \
    "smlabb r11, r12, r5, r11\n\t"
/* two output rows' pair (r10 r11: row a, r2 r3: row b) from plane rows 0..4 at r0, r1 for the third word once
 * the bias is in all 4 sums */
#define DWP_F2_MAC2                                                                                            \
    DWP_F2_PAIR0                                                                                               \
    "ldr r12, [r0, #64]\n\t"                                                                                   \
    "ldr lr, [r0, #68]\n\t"                                                                                    \
    "smlad r10, r12, r6, r10\n\t"                                                                              \
    "smlad r11, lr, r6, r11\n\t"                                                                               \
    "smlabb r10, lr, r7, r10\n\t"                                                                              \
    "ldr r12, [r0, #72]\n\t"                                                                                   \
    "smlabb r11, r12, r7, r11\n\t"                                                                             \
    "ldr r12, [r0, #128]\n\t"                                                                                  \
    "ldr lr, [r0, #132]\n\t"                                                                                   \
    "smlad r10, r12, r8, r10\n\t"                                                                              \
    "smlad r2, r12, r4, r1\n\t"                                                                                \
    "smlad r11, lr, r8, r11\n\t"                                                                               \
    "smlad r3, lr, r4, r1\n\t"                                                                                 \
    "smlabb r10, lr, r9, r10\n\t"                                                                              \
    "smlabb r2, lr, r5, r2\n\t"                                                                                \
    "ldr r12, [r0, #136]\n\t"                                                                                  \
    "smlabb r11, r12, r9, r11\n\t"                                                                             \
    "smlabb r3, r12, r5, r3\n\t"                                                                               \
    "ldr r12, [r0, #192]\n\t"                                                                                  \
    "ldr lr, [r0, #196]\n\t"                                                                                   \
    "ldr r1, [r0, #200]\n\t"                                                                                   \
    "smlad r2, r12, r6, r2\n\t"                                                                                \
    "smlad r3, lr, r6, r3\n\t"                                                                                 \
    "smlabb r2, lr, r7, r2\n\t"                                                                                \
    "smlabb r3, r1, r7, r3\n\t"                                                                                \
    "ldr r12, [r0, #256]\n\t"                                                                                  \
    "ldr lr, [r0, #260]\n\t"                                                                                   \
    "ldr r1, [r0, #264]\n\t"                                                                                   \
    "smlad r2, r12, r8, r2\n\t"                                                                                \
    "smlad r3, lr, r8, r3\n\t"                                                                                 \
    "smlabb r2, lr, r9, r2\n\t"                                                                                \
    "smlabb r3, r1, r9, r3\n\t"
/* an odd width's last column of a row pair: r10 as a last row's single output, then r2 from plane rows 2..4 */
#define DWP_F2_MAC2C                                                                                           \
    DWP_F_MAC1C                                                                                                \
    "smlad r2, r12, r4, r1\n\t"                                                                                \
    "smlabb r2, lr, r5, r2\n\t"                                                                                \
    "ldr r12, [r0, #192]\n\t"                                                                                  \
    "ldr lr, [r0, #196]\n\t"                                                                                   \
    "smlad r2, r12, r6, r2\n\t"                                                                                \
    "smlabb r2, lr, r7, r2\n\t"                                                                                \
    "ldr r12, [r0, #256]\n\t"                                                                                  \
    "ldr lr, [r0, #260]\n\t"                                                                                   \
    "smlad r2, r12, r8, r2\n\t"                                                                                \
    "smlabb r2, lr, r9, r2\n\t"
/* 4 outputs of one row (r10 r11 r2 r3) from 5 words of plane rows 0..2 at r0 */
#define DWP_F2_MAC1                                                                                            \
    DWP_F2_PAIR0                                                                                               \
    "smlad r2, r12, r4, r1\n\t"                                                                                \
    "ldr lr, [r0, #12]\n\t"                                                                                    \
    "smlabb r2, lr, r5, r2\n\t"                                                                                \
    "smlad r3, lr, r4, r1\n\t"                                                                                 \
    "ldr r12, [r0, #16]\n\t"                                                                                   \
    "smlabb r3, r12, r5, r3\n\t"                                                                               \
    "ldr r12, [r0, #64]\n\t"                                                                                   \
    "ldr lr, [r0, #68]\n\t"                                                                                    \
    "ldr r1, [r0, #72]\n\t"                                                                                    \
    "smlad r10, r12, r6, r10\n\t"                                                                              \
    "smlabb r10, lr, r7, r10\n\t"                                                                              \
    "smlad r11, lr, r6, r11\n\t"                                                                               \
    "smlabb r11, r1, r7, r11\n\t"                                                                              \
    "smlad r2, r1, r6, r2\n\t"                                                                                 \
    "ldr r12, [r0, #76]\n\t"                                                                                   \
    "smlabb r2, r12, r7, r2\n\t"                                                                               \
    "smlad r3, r12, r6, r3\n\t"                                                                                \
    "ldr lr, [r0, #80]\n\t"                                                                                    \
    "smlabb r3, lr, r7, r3\n\t"                                                                                \
    "ldr r12, [r0, #128]\n\t"                                                                                  \
    "ldr lr, [r0, #132]\n\t"                                                                                   \
    "ldr r1, [r0, #136]\n\t"                                                                                   \
    "smlad r10, r12, r8, r10\n\t"                                                                              \
    "smlabb r10, lr, r9, r10\n\t"                                                                              \
    "smlad r11, lr, r8, r11\n\t"                                                                               \
    "smlabb r11, r1, r9, r11\n\t"                                                                              \
    "smlad r2, r1, r8, r2\n\t"                                                                                 \
    "ldr r12, [r0, #140]\n\t"                                                                                  \
    "smlabb r2, r12, r9, r2\n\t"                                                                               \
    "smlad r3, r12, r8, r3\n\t"                                                                                \
    "ldr lr, [r0, #144]\n\t"                                                                                   \
    "smlabb r3, lr, r9, r3\n\t"

__attribute__((naked, noinline)) static void dwp_s2f(const int16_t *plane, int8_t *out, const dwp_f *q)
{
    DWP_F_BODY(DWP_F2_MAC2, DWP_F2_MAC2C, DWP_F2_MAC1, DWP_F_MAC1C, "8", "16", "256");
}
#undef DWP_F2_MAC1
#undef DWP_F2_MAC2C
#undef DWP_F2_MAC2
#undef DWP_F2_PAIR0
#pragma GCC diagnostic pop
#undef DWP_F_MAC1C
#undef DWP_F_TAPS
#undef DWP_F_LD
#undef DWP_F_MAC1
#undef DWP_F_ROW1
#undef DWP_F_MAC2C
#undef DWP_F_BODY
#undef DWP_F_BLOCK
#undef DWP_F_MAC2
#undef DWP_F_RQ
#undef DWP_F_CONSTS

/* dwp_widen: one group of 4 channels of a band into tml_dw3_planes' 4 planes (DWP_PLANE halfwords apart), offset added,
 * channel k in plane k: `rows` input rows (in_row bytes apart) to plane rows pw_bytes apart, each an odd first
 * column alone (head), then two pixels into one word of each plane, two such pairs per pass, then a last column
 * alone (tail). A pass: 4 LDR, 4 PKHBT/PKHTB, 8 SXTAB16, 8 STR, 30 modelled cycles per 16 inputs (16 per 4 one
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
/* pixels a and b (loaded) -> one word of each plane at [r1], r1 += 4: their bytes paired first (PKHBT: a0 a1 b0 b1,
 * PKHTB: a2 a3 b2 b3), so each SXTAB16 gives one plane's word (bytes 0 and 2, or 1 and 3 with ROR #8) */
#define DWP_WIDEN_PAIR(a, b)                                                                                   \
    "pkhbt r7, " a ", " b ", lsl #16\n\t"                                                                       \
    "pkhtb " b ", " b ", " a ", asr #16\n\t"                                                                    \
    "sxtab16 r8, r3, r7\n\t"                                                                                   \
    "sxtab16 r9, r3, r7, ror #8\n\t"                                                                           \
    "sxtab16 r7, r3, " b "\n\t"                                                                                \
    "sxtab16 " b ", r3, " b ", ror #8\n\t"                                                                      \
    "str r9, [r1, #1024]\n\t"                                                                                  \
    "str r7, [r1, #2048]\n\t"                                                                                  \
    "str " b ", [r1, #3072]\n\t"                                                                               \
    "str r8, [r1], #4\n\t"

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
static __attribute__((noinline)) void dwp_pack4(const int8_t *w, uint32_t C, int tr, dwp_ch *ch)
{
    const uint32_t dt = tr ? 3 * C : C, dr = tr ? C : 3 * C; /* bytes between a plane row's taps, between rows */
    uint32_t r;
    for (r = 0; r < 3; r++, w += dr) {
        const uint32_t v0 = tml_ldu32(w), v1 = tml_ldu32(w + dt), v2 = tml_ldu32(w + 2 * dt);
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

/* Modelled cycles per channel of the stride-1 kernels on an ho x wo output: dwp_s1f when its rows fit (~82 per 4
 * outputs, 70 for an odd width's last column, 25 per row pair; an odd last row ~83 per 4, 85 for its last 1..3, 20),
 * else dwp_s1q (~90 per 4 outputs, 75 for an odd width's last column, 26 per row pair) with an odd last row on
 * dwp_mac_s1 and dwp_requant_dsp (~31 per pair, 11 per output, 60): what tml_dw3_planes compares to lay a stride-1 band
 * out transposed. */
static uint32_t dwp_s1_cost(uint32_t ho, uint32_t wo)
{
    if (wo <= DWP_F_MAX_W)
        return ho / 2 * (wo / 2 * 82 + (wo & 1u) * 70 + 25) +
               (ho & 1u) * (wo / 4 * 83 + ((wo & 3u) != 0) * 85 + 20);
    return ho / 2 * (wo / 2 * 90 + (wo & 1u) * 75 + 26) + (ho & 1u) * ((wo + 1) / 2 * 31 + wo * 11 + 60);
}

/* Zeroes what the plane kernels read of a band's 4 planes (DWP_PLANE halfwords apart, rows pw apart) outside the
 * input: the first nz halfwords of the rows above py0 and from py1 on, and in the rows between, the columns left of
 * vlo and from vhi to nz. The input's columns are widened in for each group; halfwords from nz on only feed outputs
 * no kernel stores. */
typedef int16_t dwp_h16 __attribute__((may_alias)); /* a halfword of the planes' uint32_t words */
static __attribute__((noinline)) void dwp_borders(uint32_t *plane, uint32_t pw, uint32_t prows_nz, uint32_t box)
{
    /* 4 arguments, none on the caller's stack: prows | nz << 16, py0 | py1 << 8 | vlo << 16 | vhi << 24 (all
     * < 256: a plane holds DWP_PLANE halfwords, pw >= 4) */
    const uint32_t prows = prows_nz & 0xffffu, nz = prows_nz >> 16, vlo = (box >> 16) & 0xffu, vhi = box >> 24;
    uint32_t k, r, i, py0 = box & 0xffu, py1 = (box >> 8) & 0xffu;
    if (py1 <= py0 || vhi <= vlo)
        py0 = py1 = 0;
    for (k = 0; k < 4; k++, plane += DWP_PLANE / 2)
        for (r = 0; r < prows; r++) {
            dwp_h16 *row = (dwp_h16 *)(void *)(plane + r * pw / 2);
            if (r < py0 || r >= py1) { /* whole words: pw is even and > nz when nz is odd */
                uint32_t *w = plane + r * pw / 2, *e = w + (nz + 1) / 2;
                while (w < e) { /* (not a memset call: its setup costs more than these few words) */
                    *w++ = 0;
                    __asm__ volatile("" ::: "memory");
                }
                continue;
            }
            for (i = 0; i < vlo; i++) {
                row[i] = 0;
                __asm__ volatile("" ::: "memory");
            }
            for (i = vhi; i < nz; i++) {
                row[i] = 0;
                __asm__ volatile("" ::: "memory");
            }
        }
}

/* 3x3 depthwise, depth multiplier 1, dilation 1, stride 1 or 2 across (any down), channels a multiple of 4,
 * tml_requant2_ok's shortcut exact. Band by band of output rows and 4 channels at a time, the channels' input band is
 * widened into 4 padded int16 planes (offset added; 2 PKH and 4 SXTAB16 per 8 inputs, the padding zeroed once
 * per band), then the planes go through dwp_s1f (stride 1, plane rows of up to DWP_F_MAX_W outputs), dwp_s2f
 * (stride 2, up to DWP_F2_MAX_W), dwp_s1q (stride 1, wider) or dwp_mac_s1/_s2 and dwp_requant_dsp. 0 when the op
 * is not of that kind (or a band of one output row does not fit), so the caller uses another kernel. */
__attribute__((noinline)) int tml_dw3_planes(const int8_t *xd, uint32_t N, uint32_t H, uint32_t W, uint32_t C,
                                                const int8_t *wd, const uint8_t *bias, const uint8_t *mult,
                                                const uint8_t *shift, const int32_t *p, uint32_t Ho, uint32_t Wo,
                                                int8_t *yd)
{
    uint32_t planew[4][DWP_PLANE / 2]; /* words: the plane rows stay word-aligned (pw is even) */
    int32_t sums[DWP_MAX_SUMS];
    const uint32_t sy = (uint32_t)p[0], sx = (uint32_t)p[1];
    /* stride 1 both ways: the planes hold the input transposed (its columns as plane rows, the filter transposed
     * with it) when the kernels then take fewer cycles, as on KWS's 25 x 5 and on PATCH tiles of 6 or more rows of a
     * layer wider than DWP_F_MAX_W (VWW's), whose pad_top, negative past the first tile, is then the planes' left
     * padding pl */
    const int tr = sx == 1 && sy == 1 && Ho >= 2 && (Ho + 1) / 2 * 2 + 2 <= DWP_PLANE / 3 &&
                   dwp_s1_cost(Wo, Ho) < dwp_s1_cost(Ho, Wo);
    const uint32_t Hp = tr ? W : H, Wp = tr ? H : W, Hop = tr ? Wo : Ho, Wop = tr ? Ho : Wo; /* in plane terms */
    const int32_t pt = tr ? p[5] : p[4], pl = tr ? p[4] : p[5];
    const uint32_t in_px = tr ? W * C : C, in_row = tr ? C : W * C; /* input bytes along a plane row, down */
    const uint32_t out_px = tr ? Wo * C : C, out_row = tr ? C : Wo * C;
    const uint32_t wo2 = (Wop + 1) & ~1u;
    const int fs = (sx == 1 && sy == 1 && Wop <= DWP_F_MAX_W) ||
                   (sx == 2 && sy == 2 && Wop <= DWP_F2_MAX_W); /* dwp_s1f / dwp_s2f, plane rows DWP_FS bytes apart */
    /* halfwords per plane row: every pair's reads inside */
    const uint32_t pw = fs ? DWP_FS / 2 : sx == 1 ? wo2 + 2 : 2 * wo2 + 2;
    const uint32_t xo2 = tml_pair(p[6]);
    uint32_t rows, n, c, oy0, k;
    dwp_geom g;
    dwp_rq q;
    dwp_wg wg;
    union {
        dwp_q s1q;
        dwp_f s1f;
    } dq;
    dwp_ch chp[4];
    if (p[2] != 1 || p[3] != 1 || sx < 1 || sx > 2 || sy < 1 || 3 * pw > DWP_PLANE || wo2 > DWP_MAX_SUMS)
        return 0;
    rows = (DWP_PLANE / pw - 3) / sy + 1; /* output rows per band: (rows - 1) sy + 3 plane rows */
    if (!fs && rows > DWP_MAX_SUMS / wo2)
        rows = DWP_MAX_SUMS / wo2;
    if (fs && sy == 2 && rows < Hop)
        rows &= ~1u; /* dwp_s2f: bands of row pairs */
    g.pw_bytes = 2 * pw;
    g.row_bytes = 2 * pw * sy;
    g.row_span = (wo2 / 2) * (sx == 1 ? 4 : 8);
    q.wo = Wop;
    q.skip_bytes = 4 * (wo2 - Wop);
    q.ostride = out_px; /* transposed, dwp_requant_dsp gets one row at a time */
    if (fs) {
        dq.s1f.ostep = out_px;
        dq.s1f.orow = out_row;
        dq.s1f.span = Wop / 2 * 2 * out_px;
        dq.s1f.qspan = Wop / 4 * 4 * out_px;
        dq.s1f.left = Wop & 3u;
        dq.s1f.ch = chp;
    } else {
        dq.s1q.pw_bytes = 2 * pw;
        dq.s1q.ostep = out_px;
        dq.s1q.orow = out_row;
        dq.s1q.span = Wop / 2 * 2 * out_px;
        dq.s1q.odd = Wop & 1u;
        dq.s1q.ch = chp;
        dq.s1q.nch = 4;
    }
    wg.c = in_px;
    wg.in_row = in_row;
    wg.pw_bytes = 2 * pw;
    wg.xo2 = xo2;
    for (n = 0; n < N; n++)
        for (oy0 = 0; oy0 < Hop; oy0 += rows) {
            const uint32_t nrows = Hop - oy0 < rows ? Hop - oy0 : rows, prows = (nrows - 1) * sy + 3;
            /* rows dwp_s1f or dwp_s1q computes */
            const uint32_t fused = fs ? nrows : sx == 1 && sy == 1 && Wop >= 2 ? nrows & ~1u : 0;
            const int64_t iy_top = (int64_t)oy0 * sy - pt;
            /* plane columns of the input. pl < 0 on a PATCH tile that starts inside the input (its pad_top, which is
             * pl when the planes are transposed, or its pad_left): plane column 0 is then input column -pl */
            const uint32_t vlo = pl <= 0 ? 0 : (uint32_t)pl < pw ? (uint32_t)pl : pw;
            const int64_t vend = (int64_t)Wp + pl;
            const uint32_t vhi = vend <= (int64_t)vlo ? vlo : vend < (int64_t)pw ? (uint32_t)vend : pw;
            const uint32_t py0 = iy_top < 0 ? (uint32_t)-iy_top : 0; /* plane rows of the input */
            const uint32_t py1 = iy_top + prows > Hp ? (uint32_t)((int64_t)Hp - iy_top) : prows;
            const int8_t *xband = xd + (size_t)n * H * W * C + (size_t)(iy_top + py0) * in_row +
                                  (size_t)((int64_t)vlo - pl) * in_px;
            /* the band's planes: input rows iy_top .. iy_top + prows - 1, columns -pad_left .. pw - 1 - pad_left; the
             * outputs read halfwords 0 .. Wop + 1 (stride 1) or 2 Wop (stride 2) of a plane row */
            dwp_borders(planew[0], pw, prows | (sx == 1 ? Wop + 2 : 2 * Wop + 1) << 16,
                        py0 | py1 << 8 | vlo << 16 | vhi << 24);
            wg.rows = py1 > py0 ? py1 - py0 : 0;
            wg.head = vhi > vlo ? vlo & 1u : 0;
            wg.pairs = vhi > vlo ? (vhi - vlo - wg.head) / 2 : 0;
            wg.tail = vhi > vlo ? (vhi - vlo - wg.head) & 1u : 0;
            g.rows = q.rows = nrows - fused;
            if (fs) {
                dq.s1f.rowpairs = nrows / 2;
                dq.s1f.last = nrows & 1u;
            } else {
                dq.s1q.rowpairs = fused / 2;
            }
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
                if (fs && sx == 1)
                    dwp_s1f((const int16_t *)planew[0], o, &dq.s1f);
                else if (fs)
                    dwp_s2f((const int16_t *)planew[0], o, &dq.s1f);
                else if (fused) /* the plane pointer at its row 1 */
                    dwp_s1q((const int16_t *)planew[0] + pw, o, &dq.s1q);
                if (fused < nrows) /* the rows dwp_s1q leaves: sums, then requantized */
                    for (k = 0; k < 4; k++) {
                        const int16_t *band = (const int16_t *)planew[k] + (size_t)fused * sy * pw;
                        memcpy(g.pq, chp[k].pq, sizeof g.pq);
                        q.bias2 = chp[k].bias2;
                        q.mult = chp[k].mult;
                        q.round = chp[k].round;
                        q.right = chp[k].right;
                        if (sx == 1)
                            dwp_mac_s1(band, sums, &g);
                        else
                            dwp_mac_s2(band, sums, &g);
                        dwp_requant_dsp(sums, o + (size_t)fused * out_row + k, &q);
                    }
            }
        }
    return 1;
}
/* 3x3, depth multiplier 1, on NHWC windows: dw3x3_dsp per pixel, windows that overlap the padding copied first */
__attribute__((noinline)) void tml_dw3_windows(const operand *xp, const operand *wp, const operand *bp,
                                                  const operand *mup, const operand *shp, const operand *yp,
                                                  const int32_t *p)
{
    const operand x = *xp, w = *wp, b = *bp, mu = *mup, sh = *shp, y = *yp;
    const uint32_t N = x.d[0], H = x.d[1], W = x.d[2], C = x.d[3], Co = w.t.dims[3], Ho = y.d[1], Wo = y.d[2];
    const int8_t *xd = (const int8_t *)x.data, *wd = (const int8_t *)w.data;
    int8_t *yd = (int8_t *)y.out;
    uint32_t n, oy, ox;
    uint32_t wpk[9 * DW3_MAX_C / 4];
    int32_t sums[SUMS_B + DW3_MAX_C]; /* two pixels' sums, as tml_requant2_dsp reads them */
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
        dw3_fast = tml_dw3_fast_ok(p, Co, (const uint8_t *)b.data, (const uint8_t *)sh.data);
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
                        tml_requant2_dsp(sums, Co, (const uint8_t *)b.data, (const uint8_t *)mu.data,
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
