/* The classic-model ops of docs/blob-format.md §11: KERNEL, SVM_VOTE, KNN_VOTE, GAUSSIAN_NB, AFFINE -- SVMs,
 * k nearest neighbours and Gaussian naive Bayes from scikit-learn, in binary32 in the spec's order (built with
 * -std=c99, so GCC contracts no multiply-add into an FMA). The loader calls tml_classic_check for opcodes 17..21
 * after the generic op rules; tml_invoke calls tml_classic_run. No state, no allocation: a kernel's stack frame
 * is a few scalars. */
#include <math.h>

#include "tml_internal.h"

enum { K_LINEAR, K_POLY, K_RBF, K_SIGMOID, K_SQEUCLIDEAN, K_MANHATTAN, K_COUNT };
#define MAX_DEGREE 16

static inline float ldf(const uint8_t *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}
static inline void stf(uint8_t *p, float f) { memcpy(p, &f, 4); }
static inline float bits_f32(int32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static const uint8_t *at(const tml_model *m, const tml_tensor *t)
{
    return t->storage == TML_ARENA ? m->arena + t->offset : m->consts + t->offset;
}

/* ---- load-time rules. Returns NULL, or a message (with up to two %d filled from *a, *b). t[0..n_in-1] are the
 * inputs, t[n_in] the output; the generic rules (indices, counts, output in the arena, no overlap) hold. ---- */

#define BAD(msg, va, vb) return (*a = (va), *b = (vb), (msg))

static int is_f32(const tml_tensor *t, int storage) { return t->dtype == TML_FLOAT32 && t->storage == storage; }

const char *tml_classic_check(const tml_model *m, const tml_op *op, const tml_tensor *t, long long *a,
                              long long *b)
{
    const tml_tensor *x = &t[0], *y = &t[op->n_in];
    uint32_t nx = x->bytes / 4u, ny = y->bytes / 4u, i;
    int32_t p0 = op->n_params ? tml_op_param(op, 0) : 0;
    if (!is_f32(x, TML_ARENA))
        BAD("input must be a float32 arena tensor", 0, 0);
    if ((x->offset | y->offset) & 3u)
        BAD("input and output must be 4-byte aligned in the arena", 0, 0);
    if (y->dtype != (op->opcode == OP_SVM_VOTE ? TML_INT32 : TML_FLOAT32))
        BAD("output dtype %d is wrong for this op", y->dtype, 0);
    for (i = 1; i < op->n_in; i++)
        if (t[i].storage != TML_CONST)
            BAD("input %d (a table) must be const", i, 0);
    switch (op->opcode) {
    case OP_KERNEL: {
        int32_t degree = tml_op_param(op, 3);
        uint32_t g = (uint32_t)tml_op_param(op, 1), c0 = (uint32_t)tml_op_param(op, 2);
        if (!is_f32(&t[1], TML_CONST) || t[1].rank != 2 || t[1].dims[1] != nx || t[1].dims[0] != ny)
            BAD("rows must be float32 [N,%d] with N = %d outputs", nx, ny);
        if (p0 < 0 || p0 >= K_COUNT)
            BAD("kernel %d outside 0..%d", p0, K_COUNT - 1);
        if (degree < 0 || degree > MAX_DEGREE)
            BAD("degree %d outside 0..%d", degree, MAX_DEGREE);
        if ((g & 0x7F800000u) == 0x7F800000u || (c0 & 0x7F800000u) == 0x7F800000u)
            BAD("gamma and coef0 must be finite", 0, 0);
        return NULL;
    }
    case OP_SVM_VOTE: {
        const uint8_t *s = at(m, &t[3]);
        if (ny < 2)
            BAD("needs at least 2 classes, output has %d", ny, 0);
        if (!is_f32(&t[1], TML_CONST) || t[1].rank != 2 || t[1].dims[0] != ny - 1u || t[1].dims[1] != nx)
            BAD("coef must be float32 [%d,%d]", ny - 1u, nx);
        if (!is_f32(&t[2], TML_CONST) || t[2].rank != 1 || t[2].dims[0] != ny * (ny - 1u) / 2u)
            BAD("intercept must be float32 [%d]", ny * (ny - 1u) / 2u, 0);
        if (t[3].dtype != TML_INT32 || t[3].rank != 1 || t[3].dims[0] != ny + 1u)
            BAD("starts must be int32 [%d]", ny + 1u, 0);
        if (tml_ld32(s) != 0 || (uint32_t)tml_ld32(s + 4u * ny) != nx)
            BAD("starts must rise from 0 to %d", nx, 0);
        for (i = 0; i < ny; i++)
            if (tml_ld32(s + 4u * i + 4u) < tml_ld32(s + 4u * i))
                BAD("starts fall at class %d", i, 0);
        return NULL;
    }
    case OP_KNN_VOTE: {
        const uint8_t *lab = at(m, &t[1]);
        if (t[1].dtype != TML_INT32 || t[1].rank != 1 || t[1].dims[0] != nx)
            BAD("labels must be int32 [%d]", nx, 0);
        if (p0 < 1 || (uint32_t)p0 > nx)
            BAD("k=%d outside 1..%d", p0, nx);
        if ((uint32_t)tml_op_param(op, 1) > 1u || (uint32_t)tml_op_param(op, 2) > 1u)
            BAD("weights and root must be 0 or 1", 0, 0);
        for (i = 0; i < nx; i++)
            if ((uint32_t)tml_ld32(lab + 4u * i) >= ny)
                BAD("label %d of row %d is not a class index", tml_ld32(lab + 4u * i), i);
        return NULL;
    }
    case OP_GAUSSIAN_NB:
        for (i = 1; i <= 2; i++)
            if (!is_f32(&t[i], TML_CONST) || t[i].rank != 2 || t[i].dims[0] != ny || t[i].dims[1] != nx)
                BAD("theta and w must be float32 [%d,%d]", ny, nx);
        if (!is_f32(&t[3], TML_CONST) || t[3].rank != 1 || t[3].dims[0] != ny)
            BAD("bias must be float32 [%d]", ny, 0);
        return NULL;
    case OP_AFFINE:
        if (!is_f32(&t[1], TML_CONST) || !is_f32(&t[2], TML_CONST) || t[1].bytes != x->bytes ||
            t[2].bytes != x->bytes || ny != nx)
            BAD("m, o and the output must have the input's %d float32 values", nx, 0);
        return NULL;
    }
    BAD("unknown opcode %d", op->opcode, 0);
}

/* ---- kernels ---- */

static float powi(float base, int32_t times) /* libsvm's binary exponentiation */
{
    float ret = 1.0f;
    for (; times > 0; times /= 2) {
        if (times % 2 == 1)
            ret *= base;
        base *= base;
    }
    return ret;
}

static void kernel(const uint8_t *x, const uint8_t *rows, uint8_t *y, uint32_t nf, uint32_t nr, const tml_op *op)
{
    int32_t kind = tml_op_param(op, 0), degree = tml_op_param(op, 3);
    float gamma = bits_f32(tml_op_param(op, 1)), coef0 = bits_f32(tml_op_param(op, 2));
    uint32_t n, f;
    for (n = 0; n < nr; n++) {
        const uint8_t *r = rows + 4u * nf * n;
        float acc = 0.0f;
        if (kind == K_RBF || kind == K_SQEUCLIDEAN) {
            for (f = 0; f < nf; f++) {
                float d = ldf(x + 4u * f) - ldf(r + 4u * f);
                acc += d * d;
            }
        } else if (kind == K_MANHATTAN) {
            for (f = 0; f < nf; f++)
                acc += fabsf(ldf(x + 4u * f) - ldf(r + 4u * f));
        } else {
            for (f = 0; f < nf; f++)
                acc += ldf(x + 4u * f) * ldf(r + 4u * f);
        }
        if (kind == K_POLY)
            acc = powi(gamma * acc + coef0, degree);
        else if (kind == K_RBF)
            acc = expf(-gamma * acc);
        else if (kind == K_SIGMOID)
            acc = tanhf(gamma * acc + coef0);
        stf(y + 4u * n, acc);
    }
}

static void svm_vote(const uint8_t *k, const uint8_t *coef, const uint8_t *icpt, const uint8_t *starts, uint8_t *y,
                     uint32_t nk, uint32_t nc)
{
    uint32_t i, j, n, p = 0;
    int32_t votes;
    for (i = 0; i < nc; i++)
        memset(y + 4u * i, 0, 4);
    for (i = 0; i < nc; i++)
        for (j = i + 1; j < nc; j++, p++) {
            float dec = 0.0f;
            const uint8_t *ci = coef + 4u * nk * (j - 1u), *cj = coef + 4u * nk * i;
            uint32_t win;
            for (n = (uint32_t)tml_ld32(starts + 4u * i); n < (uint32_t)tml_ld32(starts + 4u * i + 4u); n++)
                dec += ldf(ci + 4u * n) * ldf(k + 4u * n);
            for (n = (uint32_t)tml_ld32(starts + 4u * j); n < (uint32_t)tml_ld32(starts + 4u * j + 4u); n++)
                dec += ldf(cj + 4u * n) * ldf(k + 4u * n);
            dec += ldf(icpt + 4u * p);
            win = dec > 0.0f ? i : j;
            votes = tml_ld32(y + 4u * win) + 1;
            memcpy(y + 4u * win, &votes, 4);
        }
}

/* k rounds, each taking the smallest (distance, index) after the previous one: O(k N), no scratch; ties go to the
 * lower index; NaN counts as +inf. Zero distances come first, so the first pick says whether they take it all. */
static void knn_vote(const uint8_t *d, const uint8_t *labels, uint8_t *y, uint32_t nd, uint32_t nc, const tml_op *op)
{
    uint32_t k = (uint32_t)tml_op_param(op, 0), r, n, c, prev_i = 0, best_i;
    int weighted = tml_op_param(op, 1), root = tml_op_param(op, 2), zero = 0, first = 1;
    float prev_d = -INFINITY, best_d, dist;
    for (c = 0; c < nc; c++)
        stf(y + 4u * c, 0.0f);
    for (r = 0; r < k; r++) {
        best_d = INFINITY;
        best_i = nd;
        for (n = 0; n < nd; n++) {
            float dn = ldf(d + 4u * n);
            if (dn != dn)
                dn = INFINITY;
            if (!first && (dn < prev_d || (dn == prev_d && n <= prev_i)))
                continue;
            if (best_i == nd || dn < best_d) {
                best_d = dn;
                best_i = n;
            }
        }
        first = 0;
        prev_d = best_d;
        prev_i = best_i;
        dist = root ? sqrtf(best_d) : best_d;
        if (r == 0)
            zero = weighted && dist == 0.0f;
        c = (uint32_t)tml_ld32(labels + 4u * best_i);
        if (!weighted || (zero && dist == 0.0f))
            stf(y + 4u * c, ldf(y + 4u * c) + 1.0f);
        else if (!zero)
            stf(y + 4u * c, ldf(y + 4u * c) + 1.0f / dist);
    }
}

static void gaussian_nb(const uint8_t *x, const uint8_t *theta, const uint8_t *w, const uint8_t *bias, uint8_t *y,
                        uint32_t nf, uint32_t nc)
{
    uint32_t c, f;
    for (c = 0; c < nc; c++) {
        float acc = 0.0f;
        for (f = 0; f < nf; f++) {
            float d = ldf(x + 4u * f) - ldf(theta + 4u * (nf * c + f));
            acc += ldf(w + 4u * (nf * c + f)) * d * d;
        }
        stf(y + 4u * c, ldf(bias + 4u * c) - acc);
    }
}

tml_status tml_classic_run(tml_model *m, const tml_op *op)
{
    tml_tensor t[5];
    const uint8_t *in[4];
    uint8_t *y;
    uint32_t i, nx, ny;
    for (i = 0; i < op->n_in && i < 4u; i++) {
        tml_tensor_read(m, tml_op_in(op, i), &t[i]);
        in[i] = at(m, &t[i]);
    }
    tml_tensor_read(m, tml_op_out(op), &t[4]);
    y = m->arena + t[4].offset;
    nx = t[0].bytes / 4u;
    ny = t[4].bytes / 4u;
    switch (op->opcode) {
    case OP_KERNEL:
        kernel(in[0], in[1], y, nx, ny, op);
        return TML_OK;
    case OP_SVM_VOTE:
        svm_vote(in[0], in[1], in[2], in[3], y, nx, ny);
        return TML_OK;
    case OP_KNN_VOTE:
        knn_vote(in[0], in[1], y, nx, ny, op);
        return TML_OK;
    case OP_GAUSSIAN_NB:
        gaussian_nb(in[0], in[1], in[2], in[3], y, nx, ny);
        return TML_OK;
    case OP_AFFINE:
        for (i = 0; i < nx; i++)
            stf(y + 4u * i, ldf(in[0] + 4u * i) * ldf(in[1] + 4u * i) + ldf(in[2] + 4u * i));
        return TML_OK;
    }
    return TML_E_RUNTIME;
}
