/* Cortex-M DSP DEPTHWISE_CONV_2D (docs/c-runtime.md, "Fast paths"): 3x3 windows per pixel (dw3x3_dsp, tml_dw3_windows)
 * and the plane kernels (tml_dw3_planes: a band of 4 channels widened into int16 planes, then dwp_s1q / dwp_mac_s1 /
 * dwp_mac_s2 and dwp_requant_dsp). DSP builds only; tml_depthwise.c picks them. */
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

/* dwp_widen: one group of 4 channels of a band into tml_dw3_planes' 4 planes (DWP_PLANE halfwords apart), offset added,
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
 * tml_dw3_planes compares to lay a stride-1 band out transposed. */
static uint32_t dwp_s1_cost(uint32_t ho, uint32_t wo)
{
    return ho / 2 * (wo / 2 * 90 + (wo & 1u) * 75 + 26) + (ho & 1u) * ((wo + 1) / 2 * 31 + wo * 11 + 60);
}

/* 3x3 depthwise, depth multiplier 1, dilation 1, stride 1 or 2 across (any down), channels a multiple of 4,
 * tml_requant2_ok's shortcut exact. Band by band of output rows and 4 channels at a time, the channels' input band is
 * widened into 4 padded int16 planes (offset added; one LDR and 2 SXTAB16 per 4 inputs, the padding zeroed once
 * per band), then each plane goes through dwp_mac_s1/_s2 and dwp_requant_dsp. 0 when the op is not of that kind (or
 * a band of one output row does not fit), so the caller uses another kernel. */
__attribute__((noinline)) int tml_dw3_planes(const int8_t *xd, uint32_t N, uint32_t H, uint32_t W, uint32_t C,
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
