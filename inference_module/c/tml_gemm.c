/* Cortex-M DSP GEMM for CONV_2D (docs/c-runtime.md, "Fast paths"): two output pixels at a time against widened int16
 * weight blocks (gemm_2x3_w16, gemm_2x1_w16) or the int8 rows (gemm_2x2_dsp), requantization fused or block-wise
 * (tml_requant2_dsp), the pixel pair widened first (widen_rows); tml_dense_pair, tml_pair_w16 and tml_pw_pairs_w16
 * drive them for tml_conv.c. The assembly kernels need every usable register, which is why they are naked
 * functions. DSP builds only. */
#include "tml_kernels.h"

#if TML_DSP

/* The 2x2 microkernel of tml_dense_pair, over `pairs` output-channel pairs: pixel a's sums of channels 2p, 2p + 1 in
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

/* The microkernel of tml_dense_pair when the op's weights were widened to int16 (widen_weights): two pixels x three
 * output channels per triple, triples one after another in w16 up to wend. A triple's block (w16_triple_words):
 * 3 words that start the accumulators (both pixels'), then per 4 inputs six words -- (w0, w2) of its three
 * channels, then (w1, w3) of them: SXTB16's lanes, matching the widened inputs --, then 3 words per channel
 * (m, round, right) for the requantization that ends the triple. Two forms (w16_form; W16_QUAD, four channels
 * per block, is gemm_2x4_w16's):
 *  - requantized (W16_REQUANT, ops where tml_requant2_ok holds with no slow channel): the weights are doubled and the
 *    accumulators start at 2 bias, so they end at t = 2 (sum + bias) and each output is tml_requant2_dsp's
 *    (SMMLAR(t, m, round) - [t < 0]) >> right, SSAT 8, stored at y[j] (pixel a) and y[ystride + j] (pixel b), y
 *    advancing per triple by its third channel's right >> 8 (3, or 2 into the overlapping last triple of
 *    Co = 3t + 2, so one call does all; ASR by a register reads its bits 0-7 only): no store and reload of the sums,
 *    no requantization call;
 *  - sums (W16_SUMS): the weights as they are, accumulators from 0, right = 0, which sends the triple's end to
 *    storing the sums (pixel a's at y[3t..3t+2] as int32, pixel b's SUMS_B words on) for tml_requant2_dsp,
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

/* gemm_2x4_w16: two pixels x four output channels per block, requantized in the epilogue (the W16_QUAD form of
 * widen_weights). A block (w16_quad_words): 4 words 2 bias, per 4 inputs 8 words -- (w0, w2) of its four channels,
 * then (w1, w3) of them, doubled --, then (m, round, right) per channel; the fourth channel's right carries y's
 * advance after the block in bits 8-15 (4, or Co % 4 into the overlapping last block of Co = 4t + r) and, on the
 * last block, bit 16. Registers in the body: 8 accumulators (r2-r9: channel j's pixel a in r2 + 2j, pixel b in
 * r3 + 2j), the inputs' base r0 (fixed: each step reads at its own offset, so nothing resets it between blocks and
 * no end pointer is kept), the weights r1 and 4 operands: per 2 inputs (one lane pair) both pixels' input words and
 * two channels' weight words in one run of 4 LDRs, 4 SMLAD, two more weight words, 4 SMLAD -- 16 modelled cycles
 * for 16 MAC (the 2x3 loop's rate) with 4 channels' outputs per block: ~78 cycles of fixed cost per 8 outputs
 * against the 2x3's ~71 per 6. Up to 16 steps (K <= 64) are one pass entered at a computed step; longer K loops
 * over 16-step passes, the last pass known by the N flag, which nothing in the body sets. */
#define GEMM_2X4_HALF(o)                                                                                       \
    "ldr r10, [r0, #(" o ")]\n\t"                                                                              \
    "ldr r11, [r0, #(" o ") + 4]\n\t"                                                                          \
    "ldr r12, [r1], #4\n\t"                                                                                    \
    "ldr lr, [r1], #4\n\t"                                                                                     \
    "smlad r2, r10, r12, r2\n\t"                                                                               \
    "smlad r3, r11, r12, r3\n\t"                                                                               \
    "smlad r4, r10, lr, r4\n\t"                                                                                \
    "smlad r5, r11, lr, r5\n\t"                                                                                \
    "ldr r12, [r1], #4\n\t"                                                                                    \
    "ldr lr, [r1], #4\n\t"                                                                                     \
    "smlad r6, r10, r12, r6\n\t"                                                                               \
    "smlad r7, r11, r12, r7\n\t"                                                                               \
    "smlad r8, r10, lr, r8\n\t"                                                                                \
    "smlad r9, r11, lr, r9\n\t"
#define GEMM_2X4_STEP(s) GEMM_2X4_HALF(s "*16") GEMM_2X4_HALF(s "*16+8")
/* a block's start: both pixels' accumulators from its 4 bias words, then into the body at the computed entry */
#define GEMM_2X4_START                                                                                         \
    "ldmia r1!, {r2, r4, r6, r8}\n\t"                                                                          \
    "mov r3, r2\n\t"                                                                                           \
    "mov r5, r4\n\t"                                                                                           \
    "mov r7, r6\n\t"                                                                                           \
    "mov r9, r8\n\t"                                                                                           \
    "ldr pc, [sp]\n\t"
/* one channel's two outputs in place of its accumulators a (pixel a) and b: m, round, right loaded into r10-r12 */
#define GEMM_2X4_REQUANT(a, b)                                                                                 \
    "ldr r10, [r1], #4\n\t"                                                                                    \
    "ldr r11, [r1], #4\n\t"                                                                                    \
    "ldr r12, [r1], #4\n\t"                                                                                    \
    "smmlar lr, " a ", r10, r11\n\t"                                                                           \
    "add " a ", lr, " a ", asr #31\n\t"                                                                        \
    "asr " a ", " a ", r12\n\t"                                                                                \
    "ssat " a ", #8, " a "\n\t"                                                                                \
    "smmlar lr, " b ", r10, r11\n\t"                                                                           \
    "add " b ", lr, " b ", asr #31\n\t"                                                                        \
    "asr " b ", " b ", r12\n\t"                                                                                \
    "ssat " b ", #8, " b "\n\t"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void gemm_2x4_w16(const int32_t *bp, uint32_t steps, const int32_t *w16,
                                                          int8_t *y, int32_t ystride)
{
    /* stack after the 9 saved registers and 24 bytes of locals: [sp] where each block goes after its start (the
     * body's entry, or with several passes the stub that resets r0 and sets N first), [sp+4] y, [sp+8] the inputs'
     * base (bp less the skipped steps' 16 bytes each), [sp+12] the last pass's base, [sp+16] the body's entry;
     * ystride at [sp+60] */
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "sub sp, #24\n\t"
                     "str r3, [sp, #4]\n\t"
                     "rsb r12, r1, #0\n\t"
                     "and r12, r12, #15\n\t"      /* steps skipped in the first pass: (16 - steps mod 16) mod 16 */
                     "sub r0, r0, r12, lsl #4\n\t" /* the base: step i of the body reads at 16 i */
                     "str r0, [sp, #8]\n\t"
                     "add r3, r1, r12\n\t"        /* 16 x passes */
                     "add r3, r0, r3, lsl #4\n\t"
                     "sub r3, r3, #256\n\t"
                     "str r3, [sp, #12]\n\t"
                     "movs r3, #112\n\t"          /* bytes per step */
                     "mul r12, r12, r3\n\t"
                     "adr r3, .Ltml_gemm24_body\n\t"
                     "add r12, r12, r3\n\t"
                     "orr r12, r12, #1\n\t"       /* Thumb */
                     "str r12, [sp, #16]\n\t"
                     "cmp r1, #16\n\t"
                     "bls 1f\n\t"
                     "adr r12, 4f\n\t"
                     "orr r12, r12, #1\n\t"
                     "1:\n\t"
                     "str r12, [sp]\n\t"
                     "mov r1, r2\n\t"
                     "movs r12, #0\n\t"           /* N clear: one pass (several: the stub sets N) */
                     GEMM_2X4_START
                     ".balign 4\n"
                     ".Ltml_gemm24_body:\n\t"
                     GEMM_2X4_STEP("0") GEMM_2X4_STEP("1") GEMM_2X4_STEP("2") GEMM_2X4_STEP("3")
                     GEMM_2X4_STEP("4") GEMM_2X4_STEP("5") GEMM_2X4_STEP("6") GEMM_2X4_STEP("7")
                     GEMM_2X4_STEP("8") GEMM_2X4_STEP("9") GEMM_2X4_STEP("10") GEMM_2X4_STEP("11")
                     GEMM_2X4_STEP("12") GEMM_2X4_STEP("13") GEMM_2X4_STEP("14") GEMM_2X4_STEP("15")
                     ".Ltml_gemm24_body_end:\n\t"
                     ".if .Ltml_gemm24_body_end - .Ltml_gemm24_body != 1792\n\t"
                     ".error \"gemm_2x4_w16: a step is not 112 bytes\"\n\t"
                     ".endif\n\t"
                     "bmi 5f\n\t"                 /* N: another pass follows */
                     GEMM_2X4_REQUANT("r2", "r3") GEMM_2X4_REQUANT("r4", "r5") GEMM_2X4_REQUANT("r6", "r7")
                     GEMM_2X4_REQUANT("r8", "r9")
                     "ldr r10, [sp, #4]\n\t"
                     "ldr r11, [sp, #60]\n\t"
                     "add r11, r11, r10\n\t"
                     "strb r2, [r10, #0]\n\t"
                     "strb r4, [r10, #1]\n\t"
                     "strb r6, [r10, #2]\n\t"
                     "strb r8, [r10, #3]\n\t"
                     "strb r3, [r11, #0]\n\t"
                     "strb r5, [r11, #1]\n\t"
                     "strb r7, [r11, #2]\n\t"
                     "strb r9, [r11, #3]\n\t"
                     "add r10, r10, r12, lsr #8\n\t" /* y's advance (bits 8-15; bit 16 only on the last block) */
                     "str r10, [sp, #4]\n\t"
                     "tst r12, #0x10000\n\t"      /* the last block; else N clear, Z set */
                     "bne 9f\n\t"
                     GEMM_2X4_START
                     "4:\n\t"                     /* several passes: each block's first from the base, N set */
                     "ldr r0, [sp, #8]\n\t"
                     "ldr r10, [sp, #12]\n\t"
                     "cmp r0, r10\n\t"
                     "ldr pc, [sp, #16]\n\t"
                     "5:\n\t"                     /* the next pass: N = another one after it */
                     "add r0, r0, #256\n\t"
                     "ldr r10, [sp, #12]\n\t"
                     "cmp r0, r10\n\t"
                     "b .Ltml_gemm24_body\n\t"
                     "9:\n\t"
                     "add sp, #24\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef GEMM_2X4_REQUANT
#undef GEMM_2X4_START
#undef GEMM_2X4_STEP
#undef GEMM_2X4_HALF

/* gemm_1x4_w16: gemm_2x4_w16's blocks (the same widened weights and constants) for one pixel, an odd pixel count's
 * last one (KWS's 125th of 25 x 5), which had gone through the int8 rows (tml_dense_row's gemv_1x4_dsp, ~0.38 MAC per
 * modelled cycle with its requantization). The input is a pair buffer whose pixel a is read (its words at 0 and 8 of
 * each 16 bytes: one post-increment of 8 per lane pair). Per lane pair one run of 5 LDRs (the input word, four
 * channels' weight words) and 4 SMLAD: 10 modelled cycles for 8 MAC; 8 steps per pass (the first pass entered at a
 * computed step), ~50 cycles per block for its start, requantization and stores (KWS's K = 64: ~378 per block,
 * 0.68 MAC/cycle; y advanced per block as gemm_2x4_w16's is, no pixel b). */
#define GEMM_1X4_HALF                                                                                          \
    "ldr r6, [r0], #8\n\t"                                                                                     \
    "ldr r7, [r1], #4\n\t"                                                                                     \
    "ldr r8, [r1], #4\n\t"                                                                                     \
    "ldr r9, [r1], #4\n\t"                                                                                     \
    "ldr r10, [r1], #4\n\t"                                                                                    \
    "smlad r2, r6, r7, r2\n\t"                                                                                 \
    "smlad r3, r6, r8, r3\n\t"                                                                                 \
    "smlad r4, r6, r9, r4\n\t"                                                                                 \
    "smlad r5, r6, r10, r5\n\t"
#define GEMM_1X4_STEP GEMM_1X4_HALF GEMM_1X4_HALF
/* one channel's output in place of its accumulator a: m, round, right loaded into r7-r9 */
#define GEMM_1X4_REQUANT(a)                                                                                    \
    "ldr r7, [r1], #4\n\t"                                                                                     \
    "ldr r8, [r1], #4\n\t"                                                                                     \
    "ldr r9, [r1], #4\n\t"                                                                                     \
    "smmlar r6, " a ", r7, r8\n\t"                                                                             \
    "add " a ", r6, " a ", asr #31\n\t"                                                                        \
    "asr " a ", " a ", r9\n\t"                                                                                 \
    "ssat " a ", #8, " a "\n\t"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void gemm_1x4_w16(const int32_t *bp, uint32_t steps, const int32_t *w16,
                                                          int8_t *y)
{
    /* r12 the inputs' start, r11 their end, lr y; [sp] where each block enters the 8-step body */
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "sub sp, #8\n\t"
                     "mov r12, r0\n\t"
                     "add r11, r0, r1, lsl #4\n\t" /* 16 bytes per step */
                     "mov lr, r3\n\t"
                     "rsb r1, r1, #0\n\t"
                     "and r1, r1, #7\n\t"           /* steps skipped in the first pass: (8 - steps mod 8) mod 8 */
                     "movs r3, #72\n\t"             /* bytes per step */
                     "mul r1, r1, r3\n\t"
                     "adr r3, .Ltml_gemm14_body\n\t"
                     "add r1, r1, r3\n\t"
                     "orr r1, r1, #1\n\t"           /* Thumb */
                     "str r1, [sp]\n\t"
                     "mov r1, r2\n\t"
                     "1:\n\t"
                     "ldmia r1!, {r2-r5}\n\t"       /* the block's start: its 4 bias words */
                     "mov r0, r12\n\t"
                     "ldr pc, [sp]\n\t"
                     ".balign 4\n"
                     ".Ltml_gemm14_body:\n\t"
                     GEMM_1X4_STEP GEMM_1X4_STEP GEMM_1X4_STEP GEMM_1X4_STEP
                     GEMM_1X4_STEP GEMM_1X4_STEP GEMM_1X4_STEP GEMM_1X4_STEP
                     ".Ltml_gemm14_body_end:\n\t"
                     ".if .Ltml_gemm14_body_end - .Ltml_gemm14_body != 576\n\t"
                     ".error \"gemm_1x4_w16: a step is not 72 bytes\"\n\t"
                     ".endif\n\t"
                     "cmp r0, r11\n\t"
                     "bne .Ltml_gemm14_body\n\t"
                     GEMM_1X4_REQUANT("r2") GEMM_1X4_REQUANT("r3") GEMM_1X4_REQUANT("r4") GEMM_1X4_REQUANT("r5")
                     "strb r2, [lr, #0]\n\t"
                     "strb r3, [lr, #1]\n\t"
                     "strb r4, [lr, #2]\n\t"
                     "strb r5, [lr, #3]\n\t"
                     "add lr, lr, r9, lsr #8\n\t"   /* y's advance (bits 8-15; bit 16 only on the last block) */
                     "tst r9, #0x10000\n\t"
                     "beq 1b\n\t"
                     "add sp, #8\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef GEMM_1X4_REQUANT
#undef GEMM_1X4_STEP
#undef GEMM_1X4_HALF

#define GEMM_TRIPLES 22 /* channel triples per gemm_2x3_w16 call in the sums form: 66 channels of sums */
#define W16_MIN_PIXELS 16 /* fewer output pixels keep the int8 weights: the widened copy costs twice their RAM */

/* Words of one triple's block, and of the single-channel block (Co = 3t + 1), for K inputs */
static uint32_t w16_triple_words(uint32_t K, int form) { return 6 * ((K + 3) / 4) + (form == W16_REQUANT ? 12 : 6); }
static uint32_t w16_single_words(uint32_t K) { return 2 * ((K + 3) / 4) + 4; }
/* Words of one block of the four-channel form: 4 bias, 8 per 4 inputs, 12 requantization constants */
static uint32_t w16_quad_words(uint32_t K) { return 8 * ((K + 3) / 4) + 16; }

/* Triples of widen_weights' layout for Co channels: Co / 3 full ones, then for Co = 3t + 2 one more (requantized
 * form: channels Co - 3..Co - 1, overlapping the one before, so that no output beyond Co is written; sums form: the
 * last two channels and a zero one); Co = 3t + 1 adds a single-channel block after them. */
static uint32_t w16_triples(uint32_t Co) { return Co / 3 + (Co % 3 == 2); }

/* Bytes of widen_weights' layout, 0 when it would not fit 32 bits */
static uint32_t w16_bytes(uint32_t Co, uint32_t K, int form)
{
    const uint64_t n = form == W16_QUAD ? 4 * (uint64_t)((Co + 3) / 4) * w16_quad_words(K)
                                        : 4 * ((uint64_t)w16_triples(Co) * w16_triple_words(K, form) +
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
 * addend of tml_requant2_dsp; a channel outside right 1..23 is one tml_requant2_ok proved constant (its output is
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
                                                    int form, const uint8_t *act, int32_t *dst)
{
    const uint32_t steps = (K + 3) / 4, nt = w16_triples(Co);
    const int32_t scale = form == W16_SUMS ? 1 : 2;
    uint32_t t, j, s, c[3];
    if (form == W16_QUAD) { /* blocks of four channels (of act[0..Co) when given); Co = 4t + r's last one is channels
                               Co - 4..Co - 1 */
        const uint32_t nq = (Co + 3) / 4;
        for (t = 0; t < nq; t++) {
            const uint32_t c0 = 4 * t + 4 > Co ? Co - 4 : 4 * t;
            for (j = 0; j < 4; j++)
                *dst++ = (int32_t)(2u * (uint32_t)tml_ld32(q->bias + 4 * (act ? act[c0 + j] : c0 + j)));
            for (s = 0; s < steps; s++)
                for (j = 0; j < 8; j++) /* (w0, w2) of the four channels, then (w1, w3) */
                    *dst++ = (int32_t)w16_lanes(w + (size_t)(act ? act[c0 + j % 4] : c0 + j % 4) * K, K, 4 * s + j / 4,
                                                2);
            for (j = 0; j < 4; j++)
                dst = w16_channel_q(dst, q, act ? act[c0 + j] : c0 + j);
            /* y's advance after the block (4, or r into the overlapping last one), the last block's bit 16 */
            dst[-1] |= (int32_t)((t + 2 == nq && Co % 4 != 0 ? Co % 4 : 4) << 8 | (t + 1 == nq) << 16);
        }
        return;
    }
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
 * tml_dense_pair keeps the int8 rows and the 2x2 kernel. Widened once and kept: each op's copy follows a header naming
 * what it was made from (CONST is read-only while the model is loaded, and tml_load empties the cache), so a
 * PATCH stage's tiles and later inferences find it; when the scratch is full it is emptied and refilled from 0. */
typedef struct {
    const int8_t *w;
    const uint8_t *bias, *mult, *shift;
    int32_t out_off;
    uint32_t bytes;
} w16_header;

/* The header's out_off: the requantized forms' output offset (the four-channel form's + 1024), 256 for the sums form
 * (no int8 offset) */
static int32_t w16_key(const dense_q *q, int form)
{
    return form == W16_SUMS ? 256 : form == W16_QUAD ? q->out_off + 1024 : q->out_off;
}

/* The requantized form for an op of Co channels and K inputs: four channels per block (gemm_2x4_w16) when Co >= 4
 * and its modelled cycles per pixel pair (32 per 4 inputs and 78 per block) are no more than the triples' (24 and
 * 71, Co = 3t + 1's last channel 13 and 35) */
int tml_w16_requant_form(uint32_t Co, uint32_t K)
{
    const uint32_t s = (K + 3) / 4;
    const uint64_t quad = (uint64_t)((Co + 3) / 4) * (32 * s + 78);
    const uint64_t tri = (uint64_t)w16_triples(Co) * (24 * s + 71) + (Co % 3 == 1 ? 13 * s + 35 : 0);
    return Co >= 4 && quad <= tri ? W16_QUAD : W16_REQUANT;
}

/* The four-channel form's channels: those outside const_mask (their outputs the blocks compute) when there are 4 or
 * more of them, fewer than Co, and a pixel pair's widened inputs leave room for their outputs in its buffer (see
 * w16_requant_pair); else Co (all) */
static uint32_t w16_quad_channels(const dense_q *q, uint32_t K, uint32_t Co, int form)
{
    uint32_t c, n = 0;
    if (form != W16_QUAD || q->const_mask == NULL || Co > CONST_MAX_C)
        return Co;
    for (c = 0; c < Co; c++)
        n += !(q->const_mask[c / 32] >> (c % 32) & 1u);
    return n >= 4 && n < Co && 4 * ((K + 3) & ~3u) + 2 * n <= 4 * PAIR_MAX_K ? n : Co;
}

/* tml_w16_prepare's result: the blocks, the op's w16_map and w16_n set */
static const int32_t *w16_found(dense_q *q, const w16_header *h, uint32_t nb, uint32_t na, uint32_t Co)
{
    q->w16_n = na;
    q->w16_map = na < Co ? (const uint8_t *)(const void *)(h + 1) + nb : NULL;
    return (const int32_t *)(const void *)(h + 1);
}

const int32_t *tml_w16_prepare(tml_model *m, const int8_t *w, uint32_t K, uint32_t Co, size_t npix, dense_q *q,
                               int form)
{
    /* with constant channels the four-channel form widens only the others (and then pays off with fewer pixels
     * when they are half or fewer: no more RAM than the int8 rows) */
    const uint32_t na = w16_quad_channels(q, K, Co, form);
    const uint32_t nb = w16_bytes(na, K, form), n = na < Co ? nb + ((na + Co + 3) & ~3u) : nb;
    uint32_t off = 0;
    w16_header *h;
    /* in a PATCH stage the op runs once per tile on the same weights: its pixels are the tiles' together */
    const uint64_t px = (uint64_t)npix * (m->n_tile ? m->tile_runs : 1u);
    q->w16_map = NULL;
    if (form == W16_QUAD && q->slow_mask != NULL && na == Co) { /* slow channels need the compacted blocks */
        q->w16_form = W16_SUMS;
        return tml_w16_prepare(m, w, K, Co, npix, q, W16_SUMS);
    }
    if ((px < W16_MIN_PIXELS && !(px >= 2 && 2 * na <= Co)) || nb == 0 || n < nb ||
        m->scratch == NULL || m->scratch_bytes < sizeof *h || n > m->scratch_bytes - sizeof *h)
        return NULL;
    while (off < m->scratch_used) {
        h = (w16_header *)(void *)(m->scratch + off);
        if (h->w == w && h->bias == q->bias && h->mult == q->mult && h->shift == q->shift &&
            h->out_off == w16_key(q, form) && h->bytes == n)
            return w16_found(q, h, nb, na, Co);
        off += sizeof *h + h->bytes;
    }
    if (m->scratch_bytes - m->scratch_used < sizeof *h + n)
        m->scratch_used = 0;
    h = (w16_header *)(void *)(m->scratch + m->scratch_used);
    h->w = w;
    h->bias = q->bias;
    h->mult = q->mult;
    h->shift = q->shift;
    h->out_off = w16_key(q, form);
    h->bytes = n;
    m->scratch_used += sizeof *h + n;
    if (na < Co) { /* the channel list and the constant outputs after the blocks */
        uint8_t *map = (uint8_t *)(void *)(h + 1) + nb;
        uint32_t c, i = 0;
        for (c = 0; c < Co; c++) {
            map[na + c] = (uint8_t)(q->const_val != NULL && (q->const_mask[c / 32] >> (c % 32) & 1u) ? q->const_val[c] : 0);
            if (!(q->const_mask[c / 32] >> (c % 32) & 1u))
                map[i++] = (uint8_t)c;
        }
        widen_weights(w, K, na, q, form, map, (int32_t *)(void *)(h + 1));
    } else
        widen_weights(w, K, Co, q, form, NULL, (int32_t *)(void *)(h + 1));
    return w16_found(q, h, nb, na, Co);
}

#define GEMM_PAIRS 32 /* channel pairs per gemm_2x2_dsp call */


/* Whether tml_requant2_dsp's shortcut is exact for every output of an op (checked once per op): per-channel
 * multipliers with shift in [-23, -1] (right shift 1..23, no left shift), the full int8 activation range, and
 * |sum + bias| < 2^30 for every possible sum of K terms (|x + xo| <= 255, |w| <= 128). With `mask` (Co <=
 * CONST_MAX_C) a channel outside those bounds is still accepted when its output is one value for every possible
 * sum: bias +-2^30 with a 2^-26..2^-31 scale (VWW's later 1x1 layers, over half their channels) saturates. MBQM
 * with m >= 0 and no left shift is monotonic in sum + bias (which cannot wrap here), so equal outputs at both ends
 * of the sum's range prove it; the value goes to val[c], bit c of mask is set, and the caller overwrites what
 * tml_requant2_dsp wrote there. */
int tml_requant2_ok(const dense_q *q, uint32_t Co, uint32_t K, uint32_t *mask, int8_t *val, uint32_t *slow)
{
    const int64_t sum_max = (int64_t)K * 255 * 128;
    const uint8_t *shift = q->shift, *bias = q->bias;
    uint32_t c, nslow = 0, lim;
    if (!q->per_channel || q->lo != -128 || q->hi != 127 || sum_max >= (1 << 30))
        return 0;
    lim = (uint32_t)((1 << 30) - sum_max); /* |bias| below it: no sum + bias reaches 2^30 */
    if (mask != NULL) {
        if (Co > CONST_MAX_C) {
            mask = NULL;
        } else {
            memset(mask, 0, 4 * ((Co + 31) / 32));
            memset(slow, 0, 4 * ((Co + 31) / 32));
        }
    }
    /* the common channels first, in 32 bits (right shift 1..23, |bias| < lim), up to the first other one: this runs
     * per op and inference (9 times per KWS inference), ~13 modelled cycles per channel instead of ~24 */
    for (c = 0; c < Co; c++) {
        const int32_t sh = tml_ld32(shift + 4 * c), b = tml_ld32(bias + 4 * c);
        if ((uint32_t)sh + 23u > 22u || (b < 0 ? 0u - (uint32_t)b : (uint32_t)b) >= lim)
            break;
    }
    for (; c < Co; c++) {
        const int32_t sh = tml_ld32(shift + 4 * c), b = tml_ld32(bias + 4 * c);
        const int64_t bm = b < 0 ? -(int64_t)b : (int64_t)b;
        if ((uint32_t)sh + 23u <= 22u && (uint64_t)bm < lim)
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
        /* any other channel: requantized in C after tml_requant2_dsp (fix_outputs), while they are a quarter or less */
        if (mask == NULL || ++nslow > Co / 4)
            return 0;
        slow[c / 32] |= 1u << (c % 32);
    }
    return 1;
}

/* ya/yb[o0 + i] = requant(sums[i]), requant(sums[SUMS_B + i]) for the channels o0 + i of mask, i < n:
 * tml_requant2_ok's slow channels, after tml_requant2_dsp wrote a wrong value there */
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

/* ya[c] = yb[c] = val[c] for the channels of mask (tml_requant2_ok), c < n */
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

/* ya[c] = requant(sums[c]), yb[c] = requant(sums[SUMS_B + c]) for c < n, each channel's parameters read once for
 * both pixels. With right = -shift in [1, 23] and |acc| < 2^30 (tml_requant2_ok), for acc = sum + bias:
 *   SRDHM(acc, m) = SMMULR(2 acc, m)                                   (tml_mbqm's DSP shortcut, see mbqm_fixed_apply)
 *   RDBPOT(v, r) + off = (v + 2^(r-1) + off * 2^r - [acc < 0]) >> r    (floor division; [v < 0] may be replaced
 *                                                                      by [acc < 0]: they differ only when v = 0,
 *                                                                      where both give 0 for r >= 1)
 * so one SMMLAR adds the rounding constant and the output offset, (2 off + 1) << (r - 1), and SSAT clamps to
 * int8. Per channel: 5 loads, 4 to prepare, 7 per output: 26 modelled cycles for 2 outputs (vs ~84 in C). */
/* one channel of tml_requant2_dsp: its bias, multiplier and shift (= -right) read, pixel b's sum (SUMS_B words on) and
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
__attribute__((naked, noinline)) void tml_requant2_dsp(const int32_t *sums, uint32_t n, const uint8_t *bias,
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

/* The general form of tml_requant2_dsp (any parameters): ya/yb[o0 + i] from sums[i] and sums[SUMS_B + i], i < n.
 * A function of its own so its loop stays in registers. */
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

/* The widening step of the row kernels below: pixel a's input words in r8 (and r9), pixel b's in r10 (and r11),
 * r3 the input offset in both halfwords; SXTAB16 adds it to bytes 0,2 and (ror #8) 1,3, laid out as the GEMM reads
 * them: [a: x0,x2] [b: x0,x2] [a: x1,x3] [b: x1,x3] per word pair, stored at lr. */
#define WIDEN_FIRST_WORDS                                                                                      \
    "sxtab16 r4, r3, r8\n\t"                                                                                   \
    "sxtab16 r5, r3, r10\n\t"                                                                                  \
    "sxtab16 r6, r3, r8, ror #8\n\t"                                                                           \
    "sxtab16 r7, r3, r10, ror #8\n\t"
#define WIDEN_WORDS_4 WIDEN_FIRST_WORDS "stmia lr!, {r4-r7}\n\t"
#define WIDEN_WORDS_8                                                                                          \
    WIDEN_FIRST_WORDS                                                                                          \
    "sxtab16 r8, r3, r9\n\t"                                                                                   \
    "sxtab16 r10, r3, r9, ror #8\n\t"                                                                          \
    "sxtab16 r9, r3, r11\n\t"                                                                                  \
    "sxtab16 r11, r3, r11, ror #8\n\t"                                                                         \
    "stmia lr!, {r4-r11}\n\t"

/* tml_dense_pair's widened inputs read from two fields' rows in place: per 4 inputs of each pixel
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
                     WIDEN_WORDS_4
                     "2:\n\t"
                     "cmp r0, r12\n\t"
                     "beq 3f\n\t"
                     "1:\n\t"
                     "ldr r8, [r0], #4\n\t"
                     "ldr r9, [r0], #4\n\t"
                     "ldr r10, [r1], #4\n\t"
                     "ldr r11, [r1], #4\n\t"
                     WIDEN_WORDS_8
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

/* widen_rows for rows of one word (KWS's first layer: 4 taps of 1 channel), n rows `step` bytes apart: two rows per
 * pass without the row loop, 14 modelled cycles per row instead of ~32 */
__attribute__((naked, noinline)) static void widen_rows1(const int8_t *xa, const int8_t *xb, uint32_t n, size_t step,
                                                         uint32_t xo2, int32_t *buf)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "mov r12, r3\n\t"
                     "ldr r3, [sp, #36]\n\t" /* xo2 and buf, the 5th and 6th arguments */
                     "ldr lr, [sp, #40]\n\t"
                     "tst r2, #1\n\t"
                     "beq 1f\n\t"
                     "ldr r8, [r0]\n\t"
                     "ldr r10, [r1]\n\t"
                     "add r0, r12\n\t"
                     "add r1, r12\n\t"
                     WIDEN_WORDS_4
                     "subs r2, #1\n\t"
                     "beq 2f\n\t"
                     "1:\n\t"
                     "ldr r8, [r0]\n\t"
                     "ldr r10, [r1]\n\t"
                     "ldr r9, [r0, r12]\n\t"
                     "ldr r11, [r1, r12]\n\t"
                     "add r0, r0, r12, lsl #1\n\t"
                     "add r1, r1, r12, lsl #1\n\t"
                     WIDEN_WORDS_8
                     "subs r2, #2\n\t"
                     "bne 1b\n\t"
                     "2:\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop

/* widen_rows' one run of n bytes (a multiple of 4) from each pixel, without its row loop: 16 bytes per pass (two runs
 * of 4 LDRs, 8 SXTAB16 and an STM of 8 words: 48 modelled cycles), n % 16 first */
#define WIDEN_8                                                                                                \
    "ldr r8, [r0], #4\n\t"                                                                                     \
    "ldr r9, [r0], #4\n\t"                                                                                     \
    "ldr r10, [r1], #4\n\t"                                                                                    \
    "ldr r11, [r1], #4\n\t" WIDEN_WORDS_8
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter" /* a naked function reads its arguments in assembly */
__attribute__((naked, noinline)) static void widen_long(const int8_t *xa, const int8_t *xb, uint32_t n, uint32_t xo2,
                                                        int32_t *buf)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "ldr lr, [sp, #36]\n\t" /* buf, the 5th argument */
                     "add r12, r0, r2\n\t"   /* xa's end */
                     "tst r2, #4\n\t"
                     "beq 2f\n\t"
                     "ldr r8, [r0], #4\n\t"
                     "ldr r10, [r1], #4\n\t"
                     WIDEN_WORDS_4
                     "2:\n\t"
                     "tst r2, #8\n\t"
                     "beq 4f\n\t" WIDEN_8
                     "4:\n\t"
                     "cmp r0, r12\n\t"
                     "beq 3f\n\t"
                     "1:\n\t" WIDEN_8 WIDEN_8
                     "cmp r0, r12\n\t"
                     "bne 1b\n\t"
                     "3:\n\t"
                     "pop {r4-r11, pc}\n\t");
}
#pragma GCC diagnostic pop
#undef WIDEN_8
#undef WIDEN_WORDS_8
#undef WIDEN_WORDS_4
#undef WIDEN_FIRST_WORDS

/* A pixel pair's inputs xa[0..n), xb[0..n) (n a multiple of 4) widened into buf in the pair layout (per 4 inputs
 * [a: x0,x2] [b: x0,x2] [a: x1,x3] [b: x1,x3], each plus xo); inline: a call costs short rows more than the
 * assembly widen_rows saves. */
static inline void widen_run(const int8_t *xa, const int8_t *xb, uint32_t n, uint32_t xo2, int32_t *buf)
{
    uint32_t i;
    if (n >= 32) { /* KWS's 1x1 layers' 64 channels: ~226 modelled cycles per pair instead of ~272 */
        widen_long(xa, xb, n, xo2, buf);
        return;
    }
    for (i = 0; i < n; i += 4) {
        uint32_t va = tml_ldu32(xa + i), vb = tml_ldu32(xb + i);
        buf[i] = __sxtab16(xo2, va);
        buf[i + 1] = __sxtab16(xo2, vb);
        buf[i + 2] = tml_sxtab16_ror8(xo2, va);
        buf[i + 3] = tml_sxtab16_ror8(xo2, vb);
    }
}

/* The outputs of a pixel pair from compacted blocks (w16_map): every channel's constant, then t[i] (pixel a) and
 * t[n + i] (pixel b) at channel map[i], i < n */
static void w16_expand(const uint8_t *map, uint32_t n, uint32_t Co, const int8_t *t, int8_t *ya, int8_t *yb)
{
    uint32_t i;
    memcpy(ya, map + n, Co);
    memcpy(yb, map + n, Co);
    for (i = 0; i < n; i++) {
        ya[map[i]] = t[i];
        yb[map[i]] = t[n + i];
    }
}

/* The outputs of tml_requant2_ok's slow channels (slow_mask; computed wrongly in the compacted blocks) for a pixel
 * pair: each one's sums over the widened inputs buf[0..Kb) and its int8 row (w8), then the C requantization */
static __attribute__((noinline)) void w16_slow(const dense_q *q, const int32_t *buf, uint32_t Kb, uint32_t Co,
                                               int8_t *ya, int8_t *yb)
{
    const uint32_t K = q->w8_k;
    uint32_t c, s;
    for (c = 0; c < Co; c++)
        if (q->slow_mask[c / 32] >> (c % 32) & 1u) {
            const int8_t *row = q->w8 + (size_t)c * K;
            const int32_t b = tml_ld32(q->bias + 4 * c), mu = tml_ld32(q->mult + 4 * c), sh = tml_ld32(q->shift + 4 * c);
            int32_t sa = 0, sb = 0;
            for (s = 0; 4 * s < Kb; s++) {
                uint32_t wv = 0, i;
                if (4 * s + 4 <= K)
                    wv = tml_ldu32(row + 4 * s);
                else /* the row's last K % 4 weights (the pad inputs are 0) */
                    for (i = 4 * s; i < K; i++)
                        wv |= (uint32_t)(uint8_t)row[i] << (8 * (i - 4 * s));
                sa = __smlad((uint32_t)buf[4 * s], __sxtb16(wv), sa);
                sa = __smlad((uint32_t)buf[4 * s + 2], tml_sxtb16_ror8(wv), sa);
                sb = __smlad((uint32_t)buf[4 * s + 1], __sxtb16(wv), sb);
                sb = __smlad((uint32_t)buf[4 * s + 3], tml_sxtb16_ror8(wv), sb);
            }
            ya[c] = requant_v(sa, b, mu, sh, q->out_off, q->lo, q->hi);
            yb[c] = requant_v(sb, b, mu, sh, q->out_off, q->lo, q->hi);
        }
}

/* A pixel pair's outputs from the widened weights in a requantized form: buf holds the pair's Kb inputs (K rounded
 * up to 4), ya pixel a's Co outputs, ya + ys pixel b's */
static inline void w16_requant_pair(const int32_t *buf, uint32_t Kb, uint32_t K, uint32_t Co, const dense_q *q,
                                    int8_t *ya, int32_t ys)
{
    if (q->w16_form == W16_QUAD && q->w16_map != NULL) {
        /* compacted: the w16_n outputs per pixel into buf after the inputs, then every channel's */
        int8_t *t = (int8_t *)(void *)(buf + Kb);
        gemm_2x4_w16(buf, Kb / 4, q->w16, t, (int32_t)q->w16_n);
        w16_expand(q->w16_map, q->w16_n, Co, t, ya, ya + ys);
        if (q->slow_mask != NULL)
            w16_slow(q, buf, Kb, Co, ya, ya + ys);
    } else if (q->w16_form == W16_QUAD) {
        gemm_2x4_w16(buf, Kb / 4, q->w16, ya, ys);
    } else {
        const uint32_t tw = w16_triple_words(K, W16_REQUANT);
        const int32_t *wt = q->w16 + (size_t)(Co / 3) * tw;
        if (Co % 3 == 2) /* the overlapping triple right after the others (y advanced by 2 into it) */
            gemm_2x3_w16(buf, buf + Kb, q->w16, wt + tw, ya, ys);
        else if (Co >= 3)
            gemm_2x3_w16(buf, buf + Kb, q->w16, wt, ya, ys);
        if (Co % 3 == 1)
            gemm_2x1_w16(buf, buf + Kb, wt, ya + Co - 1, ys);
    }
}

void tml_dense_pair(const int8_t *xa, const int8_t *xb, uint32_t K, const int8_t *w, uint32_t Co,
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
    if (q->w16 != NULL && q->w16_form != W16_SUMS) {
        /* requantized in the kernels: blocks of four channels, or Co / 3 triples, then for Co = 3t + 2 the last
         * three channels (one computed twice) or for Co = 3t + 1 the last channel alone */
        w16_requant_pair(buf, Kb, K, Co, q, ya, (int32_t)(yb - ya));
        if (q->const_mask != NULL && q->w16_map == NULL)
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
                tml_requant2_dsp(sums, n, q->bias + 4 * o, q->mult + 4 * o, q->shift + 4 * o, ya + o, yb + o,
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
            tml_requant2_dsp(sums, 2 * pairs, q->bias + 4 * o, q->mult + 4 * o, q->shift + 4 * o, ya + o, yb + o,
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

/* tml_dense_pair's requantized-kernels path for one pixel pair of K inputs, K a multiple of 4 (the im2col loop's padded
 * patches, or with `rows` both windows inside the input): the same widening and kernel calls without tml_dense_pair's
 * checks for the other paths, its copy of the parameters and its 3.5 KB frame. */
__attribute__((noinline)) void tml_pair_w16(const int8_t *xa, const int8_t *xb, uint32_t K, uint32_t Co,
                                               const dense_q *q, int8_t *ya, int8_t *yb, const pair_rows *rows)
{
    int32_t buf[PAIR_MAX_K];
    const uint32_t xo2 = tml_pair(q->xo);
    if (rows != NULL)
        widen_rows(xa, xb, rows, xo2, buf);
    else
        widen_run(xa, xb, K, xo2, buf);
    w16_requant_pair(buf, K, K, Co, q, ya, (int32_t)(yb - ya));
    if (q->const_mask != NULL && q->w16_map == NULL)
        const_outputs(q->const_mask, q->const_val, Co, ya, yb);
}

/* widen_rows, or widen_rows1 for rows of one word (the padded path's only: tml_pair_w16's pairs keep widen_rows
 * without the test) */
static inline void widen_field_pair(const int8_t *xa, const int8_t *xb, const pair_rows *rows, uint32_t xo2,
                                    int32_t *buf)
{
    if (rows->bytes == 4)
        widen_rows1(xa, xb, rows->n, rows->step, xo2, buf);
    else
        widen_rows(xa, xb, rows, xo2, buf);
}

/* One pixel of K inputs (a multiple of 4; with `rows` a receptive field inside the input) through the four-channel
 * blocks without constant channels compacted out (W16_QUAD, w16_map NULL): an odd pixel count's last pixel */
__attribute__((noinline)) void tml_pixel_w16(const int8_t *x, uint32_t K, uint32_t Co, const dense_q *q, int8_t *y,
                                             const pair_rows *rows)
{
    int32_t buf[PAIR_MAX_K];
    const uint32_t xo2 = tml_pair(q->xo);
    if (rows != NULL) /* the pair layout with both pixels x: the kernel reads pixel a's words */
        widen_field_pair(x, x, rows, xo2, buf);
    else
        widen_run(x, x, K, xo2, buf);
    gemm_1x4_w16(buf, K / 4, q->w16, y);
    if (q->const_mask != NULL)
        const_outputs(q->const_mask, q->const_val, Co, y, y);
}

/* tml_conv.c's padded im2col (conv_padded) in one loop: the Ho x Wo output pixels in raster order, pixel (oy, ox)'s
 * window at pad + oy s_h row_bytes + ox s_w C with `rows` (K = rows->n x rows->bytes inputs), pairs widened and run
 * through the requantized blocks; an odd last pixel alone (tml_pixel_w16) or, in the triples' form, with itself */
void tml_padded_pairs_w16(const int8_t *pad, uint32_t row_bytes, uint32_t C, uint32_t Ho, uint32_t Wo,
                          const int32_t *p, const pair_rows *rows, uint32_t Co, const dense_q *q, int8_t *y)
{
    int32_t buf[PAIR_MAX_K];
    const uint32_t xo2 = tml_pair(q->xo), K = rows->n * rows->bytes;
    const size_t dy = (size_t)p[0] * row_bytes, dx = (size_t)p[1] * C, npix = (size_t)Ho * Wo;
    const int8_t *row = pad; /* the window of pixel (oy, 0) */
    uint32_t ox = 0;
    size_t pix;
    for (pix = 0; pix < npix; pix += 2, y += 2 * Co) {
        const int8_t *xa = row + ox * dx, *xb = xa;
        int32_t ys = 0;
        if (++ox == Wo) {
            ox = 0;
            row += dy;
        }
        if (pix + 1 < npix) {
            xb = row + ox * dx;
            ys = (int32_t)Co;
            if (++ox == Wo) {
                ox = 0;
                row += dy;
            }
        } else if (q->w16_form == W16_QUAD && q->w16_map == NULL) {
            tml_pixel_w16(xa, K, Co, q, y, rows);
            return;
        }
        widen_field_pair(xa, xb, rows, xo2, buf);
        w16_requant_pair(buf, K, K, Co, q, y, ys);
        if (q->const_mask != NULL && q->w16_map == NULL)
            const_outputs(q->const_mask, q->const_val, Co, y, y + ys);
    }
}

/* tml_dense_pair's requantized-kernels path for a whole 1x1 convolution over dense pixels (stride 1, C a multiple of
 * 4): the pixel pairs x[2p], x[2p + 1] (C bytes each) widened and run through the triples in one loop, so
 * tml_dense_pair's frame and checks and conv_2d's pixel addressing are paid once per op, not per pair. */
__attribute__((noinline)) void tml_pw_pairs_w16(const int8_t *x, size_t pairs, uint32_t C, uint32_t Co,
                                                   const dense_q *q, int8_t *y)
{
    int32_t buf[PAIR_MAX_K];
    const uint32_t xo2 = tml_pair(q->xo), tw = w16_triple_words(C, W16_REQUANT);
    const int32_t *w16 = q->w16, *wt = w16 + (size_t)(Co / 3) * tw;
    const uint32_t *mask = q->const_mask;
    const int8_t *val = q->const_val;
    size_t pr;
    if (q->w16_form == W16_QUAD && q->w16_map != NULL) { /* compacted blocks: their outputs expanded */
        for (pr = 0; pr < pairs; pr++, x += 2 * C, y += 2 * Co) {
            widen_run(x, x + C, C, xo2, buf);
            w16_requant_pair(buf, C, C, Co, q, y, (int32_t)Co);
        }
        return;
    }
    if (q->w16_form == W16_QUAD) { /* blocks of four channels: one call per pair */
        for (pr = 0; pr < pairs; pr++, x += 2 * C, y += 2 * Co) {
            widen_run(x, x + C, C, xo2, buf);
            gemm_2x4_w16(buf, C / 4, w16, y, (int32_t)Co);
            if (mask != NULL)
                const_outputs(mask, val, Co, y, y + Co);
        }
        return;
    }
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
