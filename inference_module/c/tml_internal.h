/* Internal helpers shared by the loader and the kernels: little-endian reads, op record decoding, and the
 * TFLite fixed-point arithmetic of docs/blob-format.md §5 ("Shared integer arithmetic"). */
#ifndef TML_INTERNAL_H
#define TML_INTERNAL_H

#include <string.h>

#include "tml.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tml: little-endian targets only (blob integers are read in place)"
#endif

enum {
    OP_CONV_2D = 1, OP_DEPTHWISE_CONV_2D, OP_FULLY_CONNECTED, OP_AVERAGE_POOL_2D, OP_MAX_POOL_2D, OP_ADD, OP_MUL,
    OP_SOFTMAX, OP_LUT, OP_PAD, OP_MEAN, OP_CONCATENATION, OP_QUANTIZE, OP_DEQUANTIZE, OP_COPY,
    OP_TREE_ENSEMBLE, OP_KERNEL, OP_SVM_VOTE, OP_KNN_VOTE, OP_GAUSSIAN_NB, OP_AFFINE, OP_COUNT = OP_AFFINE
};

#define TML_MAX_PARAMS 12  /* ADD has the most fixed params */
#define TML_MAX_DOT 32768  /* longest dot product accepted: keeps every int32 accumulator exact */
#define TML_MAX_TREE_LEAVES (1u << 24) /* TREE_ENSEMBLE: leaves < 2^24 (docs/blob-format.md §10) */
#define TML_F32_INF_BITS 0x7F800000

static inline uint16_t tml_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t tml_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
/* A possibly unaligned int32 load; compiles to one LDR on Cortex-M4 and x86. */
static inline int32_t tml_ld32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* One decoded op record; tensor indices and params are still read from the blob. */
typedef struct {
    uint8_t opcode, n_in, n_out, n_params;
    const uint8_t *idx;    /* n_in + n_out u16 indices */
    const uint8_t *params; /* n_params i32 */
    uint32_t len;          /* record length in bytes */
} tml_op;

static inline uint16_t tml_op_in(const tml_op *op, unsigned i) { return tml_rd16(op->idx + 2 * i); }
static inline uint16_t tml_op_out(const tml_op *op) { return tml_rd16(op->idx + 2 * op->n_in); }
static inline int32_t tml_op_param(const tml_op *op, unsigned i) { return (int32_t)tml_rd32(op->params + 4 * i); }

/* Structural decode of the record at `p` with `avail` bytes left in the section. 0 on success. */
static inline int tml_op_decode(const uint8_t *p, uint32_t avail, tml_op *op)
{
    uint32_t head, pad;
    if (avail < 4)
        return -1;
    op->opcode = p[0];
    op->n_in = p[1];
    op->n_out = p[2];
    op->n_params = p[3];
    head = 4u + 2u * ((uint32_t)op->n_in + op->n_out);
    pad = (4u - (head & 3u)) & 3u; /* always 0 or 2: head is even */
    op->len = head + pad + 4u * op->n_params;
    if (op->len > avail)
        return -1;
    op->idx = p + 4;
    op->params = p + head + pad;
    return 0;
}

/* ---- fixed point (TFLite / gemmlowp), exact on int32 inputs ---- */

static inline int32_t tml_srdhm(int32_t a, int32_t b)
{
    int64_t ab, nudge;
    if (a == INT32_MIN && b == INT32_MIN)
        return INT32_MAX;
    ab = (int64_t)a * b;
    nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* Rounding divide by 2^e, 0 <= e <= 62, on 64-bit values (softmax needs e up to 34). */
static inline int64_t tml_rdbpot64(int64_t x, int e)
{
    int64_t mask = ((int64_t)1 << e) - 1;
    int64_t rem = x & mask;
    int64_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

static inline int32_t tml_rdbpot(int32_t x, int e)
{
    int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* MBQM(x, m, s): m in [2^30, 2^31) or 0, s in [-31, 30] (checked by the loader). x * 2^s wraps like TFLM's
 * int32 multiply.
 * Because m >= 0, SRDHM never saturates, and its two rounding branches collapse into one floor:
 *   ab >= 0: (ab + 2^30) / 2^31 truncated = floor((ab + 2^30) / 2^31)
 *   ab <  0: trunc((ab + 1 - 2^30) / 2^31) = floor((ab + 1 - 2^30 + 2^31 - 1) / 2^31) = floor((ab + 2^30) / 2^31)
 * Same results as the spec's definitions, a third of the instructions on Cortex-M4 (SMULL, ADDS/ADC, shifts). */
static inline int32_t tml_mbqm(int32_t x, int32_t m, int32_t s)
{
    int32_t left = s > 0 ? s : 0, right = s > 0 ? 0 : -s;
    int32_t xs = (int32_t)((uint32_t)x << left);
    int32_t v = (int32_t)(((int64_t)xs * m + ((int64_t)1 << 30)) >> 31); /* fits: |m| < 2^31 */
    int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    /* RDBPOT in 32 bits (a 64-bit variable shift costs ~10 instructions on Cortex-M4) */
    return (v >> right) + ((v & mask) > (mask >> 1) + (v < 0));
}

static inline int32_t tml_clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Tensor record decode without checks (the loader checked every record). */
void tml_tensor_read(const tml_model *m, uint32_t index, tml_tensor *t);
/* 4-D view [N,H,W,C] of a tensor (right-aligned). */
void tml_dims4(const tml_tensor *t, uint32_t d[4]);
uint32_t tml_elements(const tml_tensor *t);

/* The MBQM the kernels of this build use (tests compare it with the spec's definition). */
int32_t tml_kernel_mbqm(int32_t x, int32_t m, int32_t s);

/* Kernels, run on a validated op (tml_ops.c and the files it dispatches to, tml_kernels.h). */
tml_status tml_run_op(tml_model *m, const tml_op *op);
#ifdef TML_FAST
/* The host build's vectorizable kernels (tml_fast.c): 1 when they ran the op, 0 to leave it to the reference ones. */
int tml_fast_run(tml_model *m, const tml_op *op);
#endif

/* §11's classic-model ops, OP_KERNEL..OP_AFFINE (tml_classic.c): the load-time rules (NULL, or a message whose
 * %d are *a, *b) and the kernels. */
const char *tml_classic_check(const tml_model *m, const tml_op *op, const tml_tensor *t, long long *a,
                              long long *b);
tml_status tml_classic_run(tml_model *m, const tml_op *op);

#endif
