/* Blob loader: validates every rule of docs/blob-format.md in the order of §9 before any op may run. */
#include <math.h>

#include "tml_internal.h"

#define SEC_TENSORS 1u
#define SEC_OPS 2u
#define SEC_CONST 3u
#define SEC_GRAPH 4u
#define SEC_META 5u
#define TENSOR_RECORD 36u

static const uint8_t DTYPE_SIZE[6] = {0, 1, 1, 2, 4, 4};
static const char *const OP_NAME[OP_COUNT + 1] = {
    "?", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL",
    "SOFTMAX", "LUT", "PAD", "MEAN", "CONCATENATION", "QUANTIZE", "DEQUANTIZE", "COPY", "TREE_ENSEMBLE",
    "KERNEL", "SVM_VOTE", "KNN_VOTE", "GAUSSIAN_NB", "AFFINE"};
/* Required n_inputs (0 = one or more), n_params for each opcode; every op has one output. */
static const uint8_t OP_INPUTS[OP_COUNT + 1] = {0, 5, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 0, 1, 1, 1, 5, 2, 4, 2, 4, 3};
static const uint8_t OP_PARAMS[OP_COUNT + 1] = {0, 10, 11, 5, 8, 8, 12, 7, 0, 0, 9, 5, 1, 0, 0, 0, 2, 4, 0, 3, 0, 0};

/* ---- error messages: a tiny formatter (%s, %u, %d) so bare-metal builds need no printf ---- */

static void put_str(char **o, char *end, const char *s)
{
    while (*s && *o < end)
        *(*o)++ = *s++;
}

static void put_num(char **o, char *end, long long v)
{
    char tmp[24];
    int n = 0;
    unsigned long long u = v < 0 ? (unsigned long long)(-(v + 1)) + 1u : (unsigned long long)v;
    if (v < 0 && *o < end)
        *(*o)++ = '-';
    do {
        tmp[n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    while (n && *o < end)
        *(*o)++ = tmp[--n];
}

/* fmt uses %s (const char *), %d (long long), nothing else. */
static void format(char *out, uint32_t cap, const char *fmt, const char *s, long long a, long long b)
{
    char *o = out, *end = out + cap - 1;
    int argi = 0;
    if (!cap)
        return;
    for (; *fmt && o < end; fmt++) {
        if (fmt[0] == '%' && fmt[1] == 's') {
            put_str(&o, end, s ? s : "");
            fmt++;
        } else if (fmt[0] == '%' && fmt[1] == 'd') {
            put_num(&o, end, argi++ ? b : a);
            fmt++;
        } else {
            *o++ = *fmt;
        }
    }
    *o = 0;
}

static tml_status fail(tml_model *m, tml_status st, const char *fmt, const char *s, long long a, long long b)
{
    m->status = st;
    m->loaded = 0;
    format(m->reason, sizeof m->reason, fmt, s, a, b);
    return st;
}

/* Failure inside op `k` (opcode name prefixed). */
static tml_status op_fail(tml_model *m, uint32_t k, const tml_op *op, const char *what, long long a, long long b)
{
    char buf[80];
    const char *name = op->opcode >= 1 && op->opcode <= OP_COUNT ? OP_NAME[op->opcode]
                       : op->opcode == 22 ? "PATCH" : "?";
    format(buf, sizeof buf, what, NULL, a, b);
    m->status = TML_E_OP;
    m->loaded = 0;
    {
        char *o = m->reason, *end = m->reason + sizeof m->reason - 1;
        put_str(&o, end, "op ");
        put_num(&o, end, k);
        put_str(&o, end, " (");
        put_str(&o, end, name);
        put_str(&o, end, "): ");
        put_str(&o, end, buf);
        *o = 0;
    }
    return TML_E_OP;
}

const char *tml_status_name(tml_status s)
{
    static const char *const names[] = {"ok", "bad argument", "bad header", "bad section table", "hash mismatch",
                                        "bad tensor", "bad graph", "bad op", "runtime error"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

const char *tml_reason(const tml_model *m) { return m->reason; }

size_t tml_model_size(void) { return sizeof(tml_model); }

/* ---- header ---- */

tml_status tml_check_header(const void *header, uint32_t len, uint32_t *total_bytes, uint32_t *arena_bytes,
                            char *reason, uint32_t reason_len)
{
    const uint8_t *h = (const uint8_t *)header;
    uint32_t sc;
    char dummy[1];
    if (!reason) {
        reason = dummy;
        reason_len = sizeof dummy;
    }
    if (!h || len < TML_HEADER_BYTES) {
        format(reason, reason_len, "blob is %d bytes, shorter than the 64-byte header", NULL, len, 0);
        return TML_E_HEADER;
    }
    if (memcmp(h, "TMLB", 4) != 0) {
        format(reason, reason_len, "bad magic (not a tinymlaas blob)", NULL, 0, 0);
        return TML_E_HEADER;
    }
    if (tml_rd16(h + 4) != TML_FORMAT_VERSION) {
        format(reason, reason_len, "format_version %d, this reader implements %d", NULL, tml_rd16(h + 4),
               TML_FORMAT_VERSION);
        return TML_E_HEADER;
    }
    if (tml_rd16(h + 6) != TML_HEADER_BYTES) {
        format(reason, reason_len, "header_bytes %d, expected 64", NULL, tml_rd16(h + 6), 0);
        return TML_E_HEADER;
    }
    if (tml_rd16(h + 12) != TML_ABI) {
        format(reason, reason_len, "kernel ABI %d not implemented (this runtime implements ABI %d)", NULL,
               tml_rd16(h + 12), TML_ABI);
        return TML_E_HEADER;
    }
    if (tml_rd32(h + 8) & ~1u) {
        format(reason, reason_len, "unknown header flags 0x%d", NULL, tml_rd32(h + 8), 0);
        return TML_E_HEADER;
    }
    sc = tml_rd16(h + 14);
    if (sc < 1 || sc > 16) {
        format(reason, reason_len, "section_count %d outside 1..16", NULL, sc, 0);
        return TML_E_HEADER;
    }
    if (tml_rd32(h + 16) < TML_HEADER_BYTES + 16u * sc) {
        format(reason, reason_len, "total_bytes %d cannot hold the header and section table", NULL,
               tml_rd32(h + 16), 0);
        return TML_E_HEADER;
    }
    if (tml_rd32(h + 60) != 0) {
        format(reason, reason_len, "reserved header field is %d, must be 0", NULL, tml_rd32(h + 60), 0);
        return TML_E_HEADER;
    }
    if (total_bytes)
        *total_bytes = tml_rd32(h + 16);
    if (arena_bytes)
        *arena_bytes = tml_rd32(h + 20);
    if (reason_len)
        reason[0] = 0;
    return TML_OK;
}

/* ---- tensors ---- */

void tml_tensor_read(const tml_model *m, uint32_t index, tml_tensor *t)
{
    const uint8_t *r = m->tensors + TENSOR_RECORD * index;
    uint32_t bits;
    int i;
    t->dtype = r[0];
    t->rank = r[1];
    t->storage = r[2];
    for (i = 0; i < 4; i++)
        t->dims[i] = tml_rd32(r + 4 + 4 * i);
    t->offset = tml_rd32(r + 20);
    t->bytes = tml_rd32(r + 24);
    t->zero_point = (int32_t)tml_rd32(r + 28);
    bits = tml_rd32(r + 32);
    memcpy(&t->scale, &bits, 4);
    for (i = 0; i < m->n_tile; i++)
        if (index == m->tile_tensor[i]) { /* a PATCH stage's tile buffer (rank 4), seen with this tile's size */
            t->dims[1] = m->tile_rows[i];
            t->dims[2] = m->tile_cols[i];
            t->bytes = t->dims[1] * t->dims[2] * t->dims[3];
            if (m->tile_at[i] != UINT32_MAX)
                t->offset = m->tile_at[i];
        }
}

void tml_dims4(const tml_tensor *t, uint32_t d[4])
{
    int i, r = t->rank;
    for (i = 0; i < 4; i++)
        d[i] = i < 4 - r ? 1u : t->dims[i - (4 - r)];
}

uint32_t tml_elements(const tml_tensor *t) { return t->bytes / DTYPE_SIZE[t->dtype]; }

static tml_status check_tensor(tml_model *m, uint32_t i)
{
    tml_tensor t;
    const uint8_t *r = m->tensors + TENSOR_RECORD * i;
    uint64_t n = 1;
    int k;
    tml_tensor_read(m, i, &t);
    if (t.dtype < 1 || t.dtype > 5)
        return fail(m, TML_E_TENSOR, "tensor %d: unknown dtype %d", NULL, i, t.dtype);
    if (t.rank > 4)
        return fail(m, TML_E_TENSOR, "tensor %d: rank %d > 4", NULL, i, t.rank);
    if (t.storage > 1)
        return fail(m, TML_E_TENSOR, "tensor %d: unknown storage %d", NULL, i, t.storage);
    if (r[3] != 0)
        return fail(m, TML_E_TENSOR, "tensor %d: reserved byte is %d, must be 0", NULL, i, r[3]);
    for (k = 0; k < 4; k++) {
        if (t.dims[k] < 1)
            return fail(m, TML_E_TENSOR, "tensor %d: dim %d is 0", NULL, i, k);
        if (k >= t.rank && t.dims[k] != 1)
            return fail(m, TML_E_TENSOR, "tensor %d: dim %d beyond its rank is not 1", NULL, i, k);
        n *= t.dims[k];
        if (n > 0x80000000ull)
            return fail(m, TML_E_TENSOR, "tensor %d: element count overflows", NULL, i, 0);
    }
    n *= DTYPE_SIZE[t.dtype];
    if (n > 0x80000000ull || n != t.bytes)
        return fail(m, TML_E_TENSOR, "tensor %d: bytes %d != product(dims) x element size", NULL, i, t.bytes);
    if (t.storage == TML_ARENA) {
        if ((uint64_t)t.offset + t.bytes > m->arena_bytes)
            return fail(m, TML_E_TENSOR, "tensor %d: ends past arena_bytes (offset %d)", NULL, i, t.offset);
    } else {
        if ((uint64_t)t.offset + t.bytes > m->consts_size)
            return fail(m, TML_E_TENSOR, "tensor %d: ends past the CONST section (offset %d)", NULL, i, t.offset);
        if (t.dtype == TML_INT32 && (((uint32_t)(m->consts - m->blob) + t.offset) & 3u))
            return fail(m, TML_E_TENSOR, "tensor %d: int32 constant at unaligned file offset", NULL, i, 0);
    }
    return TML_OK;
}

/* ---- ops ---- */

typedef struct {
    tml_model *m;
    uint32_t k;
    const tml_op *op;
} op_ctx;

#define OPFAIL(c, ...) return op_fail((c)->m, (c)->k, (c)->op, __VA_ARGS__)

#include "tml_patch.h"

static int in_range(int32_t v, int32_t lo, int32_t hi) { return v >= lo && v <= hi; }

/* mult/shift vectors: int32 constants of `count` (or 1 when per_tensor_ok) elements with legal values. */
static tml_status check_requant(op_ctx *c, uint16_t mi, uint16_t si, uint32_t count, int per_tensor_ok)
{
    tml_tensor mt, st;
    uint32_t i, n;
    const uint8_t *mp, *sp;
    tml_tensor_read(c->m, mi, &mt);
    tml_tensor_read(c->m, si, &st);
    if (mt.dtype != TML_INT32 || st.dtype != TML_INT32 || mt.storage != TML_CONST || st.storage != TML_CONST)
        OPFAIL(c, "mult/shift must be int32 constants", 0, 0);
    n = tml_elements(&mt);
    if (n != tml_elements(&st) || !(n == count || (per_tensor_ok && n == 1)))
        OPFAIL(c, "mult/shift have %d elements, expected %d", n, count);
    mp = c->m->consts + mt.offset;
    sp = c->m->consts + st.offset;
    for (i = 0; i < n; i++) {
        int32_t mv = tml_ld32(mp + 4 * i), sv = tml_ld32(sp + 4 * i);
        if (!(mv == 0 || mv >= (1 << 30)))
            OPFAIL(c, "multiplier %d outside [2^30, 2^31)", mv, 0);
        if (!in_range(sv, -31, 30))
            OPFAIL(c, "shift %d outside [-31, 30]", sv, 0);
    }
    return TML_OK;
}

static tml_status check_act(op_ctx *c, int32_t lo, int32_t hi)
{
    if (!in_range(lo, -128, 127) || !in_range(hi, -128, 127) || lo > hi)
        OPFAIL(c, "activation range [%d, %d] invalid for int8", lo, hi);
    return TML_OK;
}

static int multiplier_ok(int32_t mv) { return mv == 0 || mv >= (1 << 30); }

static tml_status check_conv_like(op_ctx *c, const tml_tensor *t, const int32_t *p, int depthwise)
{
    uint32_t x4[4], w4[4], y4[4], co, taps, k;
    tml_dims4(&t[0], x4);
    tml_dims4(&t[5], y4);
    if (t[0].dtype != TML_INT8 || t[1].dtype != TML_INT8 || t[5].dtype != TML_INT8)
        OPFAIL(c, "x, w and y must be int8", 0, 0);
    if (t[1].storage != TML_CONST || t[2].storage != TML_CONST)
        OPFAIL(c, "filter and bias must be const", 0, 0);
    if (t[1].rank != 4)
        OPFAIL(c, "filter rank %d, expected 4", t[1].rank, 0);
    memcpy(w4, t[1].dims, sizeof w4);
    co = depthwise ? w4[3] : w4[0];
    if (depthwise) {
        if (w4[0] != 1)
            OPFAIL(c, "depthwise filter dim 0 is %d, expected 1", w4[0], 0);
        if (p[10] < 1 || (uint64_t)x4[3] * (uint32_t)p[10] != co)
            OPFAIL(c, "depth_multiplier %d does not map %d input channels to the filter", p[10], x4[3]);
        taps = w4[1] * w4[2];
    } else {
        if (w4[3] != x4[3])
            OPFAIL(c, "filter Ci %d != input channels %d", w4[3], x4[3]);
        taps = w4[1] * w4[2] * w4[3];
    }
    if (taps > TML_MAX_DOT)
        OPFAIL(c, "filter of %d taps exceeds the runtime limit %d", taps, TML_MAX_DOT);
    if (y4[0] != x4[0] || y4[3] != co)
        OPFAIL(c, "output shape does not match batch/channels (%d channels, filter has %d)", y4[3], co);
    if (t[2].dtype != TML_INT32 || tml_elements(&t[2]) != co)
        OPFAIL(c, "bias must be int32 with %d elements", co, 0);
    for (k = 0; k < 4; k++)
        if (!in_range(p[k], 1, 65535))
            OPFAIL(c, "stride/dilation param %d is %d, expected 1..65535", k, p[k]);
    if (!in_range(p[4], 0, 65535) || !in_range(p[5], 0, 65535))
        OPFAIL(c, "padding (%d, %d) outside 0..65535", p[4], p[5]);
    if (!in_range(p[6], -128, 128) || !in_range(p[7], -128, 127))
        OPFAIL(c, "in_off %d / out_off %d outside int8 zero-point range", p[6], p[7]);
    return check_act(c, p[8], p[9]);
}

static int broadcastable(const tml_tensor *a, const uint32_t y4[4])
{
    uint32_t a4[4];
    int k;
    tml_dims4(a, a4);
    for (k = 0; k < 4; k++)
        if (a4[k] != 1 && a4[k] != y4[k])
            return 0;
    return 1;
}

/* TREE_ENSEMBLE (§10): x float32 [1,F] and y int32 [1,C] in the arena (4-byte aligned), four const int32 tables,
 * and the table rules, in one pass over nodes and trees: after it every walk ends within N steps and every leaf
 * row adds inside y. t[0..4] are the inputs, t[5] the output. */
static tml_status check_tree_ensemble(op_ctx *c, const tml_tensor *t)
{
    static const uint8_t rank[4] = {2, 2, 2, 1};
    const tml_tensor *x = &t[0], *y = &t[5];
    const uint8_t *nodes, *trees;
    uint32_t n_nodes, n_leaves, n_trees, n_classes, width, n_features, i, k;
    if (x->dtype != TML_FLOAT32 || y->dtype != TML_INT32)
        OPFAIL(c, "x must be float32 and y int32", 0, 0);
    if ((x->offset | y->offset) & 3u)
        OPFAIL(c, "x and y must be 4-byte aligned in the arena", 0, 0);
    for (k = 0; k < 4; k++)
        if (t[1 + k].dtype != TML_INT32 || t[1 + k].storage != TML_CONST || t[1 + k].rank != rank[k])
            OPFAIL(c, "input %d (nodes, leaves, trees, init) must be a const int32 tensor of rank %d", 1 + k,
                   rank[k]);
    if (t[1].dims[1] != 4 || t[3].dims[1] != 2)
        OPFAIL(c, "nodes must be [N,4] and trees [T,2]", 0, 0);
    width = t[2].dims[1];
    if (width < 1)
        OPFAIL(c, "leaf rows of width %d", width, 0);
    if (t[4].bytes != y->bytes)
        OPFAIL(c, "init has %d classes, y %d", t[4].bytes / 4u, y->bytes / 4u);
    n_nodes = t[1].dims[0];
    n_leaves = t[2].dims[0];
    n_trees = t[3].dims[0];
    n_classes = y->bytes / 4u;
    n_features = x->bytes / 4u;
    if (n_leaves >= TML_MAX_TREE_LEAVES)
        OPFAIL(c, "%d leaves, at most %d", n_leaves, TML_MAX_TREE_LEAVES - 1u);
    nodes = c->m->consts + t[1].offset;
    trees = c->m->consts + t[3].offset;
    for (i = 0; i < n_nodes; i++) {
        int32_t feat = tml_ld32(nodes + 16u * i), key = tml_ld32(nodes + 16u * i + 4u);
        if (feat < 0 || (uint32_t)feat >= n_features)
            OPFAIL(c, "node %d reads feature %d", i, feat);
        if (key > TML_F32_INF_BITS || key < -TML_F32_INF_BITS)
            OPFAIL(c, "node %d threshold is NaN", i, 0);
        for (k = 2; k < 4; k++) {
            int32_t child = tml_ld32(nodes + 16u * i + 4u * k);
            if (child >= 0 ? !((uint32_t)child > i && (uint32_t)child < n_nodes) : (uint32_t)~child >= n_leaves)
                OPFAIL(c, "node %d child %d is not a later node or a leaf", i, child);
        }
    }
    for (i = 0; i < n_trees; i++) {
        int32_t root = tml_ld32(trees + 8u * i), first = tml_ld32(trees + 8u * i + 4u);
        if (root >= 0 ? (uint32_t)root >= n_nodes : (uint32_t)~root >= n_leaves)
            OPFAIL(c, "tree %d root %d outside the tables", i, root);
        if (first < 0 || (uint32_t)first > n_classes - width || width > n_classes)
            OPFAIL(c, "tree %d adds to classes from %d past the output", i, first);
    }
    return TML_OK;
}

static tml_status check_op(op_ctx *c)
{
    const tml_op *op = c->op;
    tml_model *m = c->m;
    tml_tensor t[6], y;
    int32_t p[TML_MAX_PARAMS];
    uint32_t x4[4], y4[4], i, k;
    uint16_t yi = tml_op_out(op);

    if (op->opcode == OP_PATCH)
        return check_patch_record(c);
    if (op->opcode < 1 || op->opcode > OP_COUNT)
        OPFAIL(c, "unknown opcode %d", op->opcode, 0);
    if (op->n_out != 1)
        OPFAIL(c, "%d outputs, expected 1", op->n_out, 0);
    if (OP_INPUTS[op->opcode] ? op->n_in != OP_INPUTS[op->opcode] : op->n_in < 1)
        OPFAIL(c, "%d inputs, expected %d", op->n_in, OP_INPUTS[op->opcode]);
    if (op->n_params != OP_PARAMS[op->opcode])
        OPFAIL(c, "%d params, expected %d", op->n_params, OP_PARAMS[op->opcode]);
    if (op->n_params > m->max_op_params)
        OPFAIL(c, "%d params exceed the header's max_op_params %d", op->n_params, m->max_op_params);
    for (i = 0; i < (uint32_t)op->n_in + 1u; i++) {
        uint16_t ti = i < op->n_in ? tml_op_in(op, i) : yi;
        if (ti >= m->n_tensors)
            OPFAIL(c, "tensor index %d >= tensor count %d", ti, m->n_tensors);
    }
    tml_tensor_read(m, yi, &y);
    if (y.storage != TML_ARENA)
        OPFAIL(c, "output tensor %d is not in the arena", yi, 0);
    /* operands other than LUT/ADD/MUL must not overlap the output */
    if (op->opcode != OP_LUT && op->opcode != OP_ADD && op->opcode != OP_MUL) {
        for (i = 0; i < op->n_in; i++) {
            tml_tensor a;
            tml_tensor_read(m, tml_op_in(op, i), &a);
            if (a.storage == TML_ARENA && a.offset < y.offset + y.bytes && y.offset < a.offset + a.bytes)
                OPFAIL(c, "input %d overlaps the output in the arena", i, 0);
        }
    }
    for (i = 0; i < op->n_params && i < TML_MAX_PARAMS; i++)
        p[i] = tml_op_param(op, i);
    if (op->opcode != OP_CONCATENATION)
        for (i = 0; i < op->n_in; i++)
            tml_tensor_read(m, tml_op_in(op, i), &t[i]);
    t[op->opcode == OP_CONCATENATION ? 0 : op->n_in] = y;
    tml_dims4(&y, y4);
    /* §9: only ADD, MUL and CONCATENATION take constant data operands; every other op's x is an activation */
    if (op->opcode != OP_ADD && op->opcode != OP_MUL && op->opcode != OP_CONCATENATION && t[0].storage != TML_ARENA)
        OPFAIL(c, "data input tensor %d is not in the arena", tml_op_in(op, 0), 0);

    switch (op->opcode) {
    case OP_CONV_2D:
    case OP_DEPTHWISE_CONV_2D: {
        tml_status s;
        t[5] = y;
        s = check_conv_like(c, t, p, op->opcode == OP_DEPTHWISE_CONV_2D);
        if (s)
            return s;
        return check_requant(c, tml_op_in(op, 3), tml_op_in(op, 4), y4[3], 0);
    }
    case OP_FULLY_CONNECTED: {
        uint32_t ci, co, rows;
        if (t[0].dtype != TML_INT8 || t[1].dtype != TML_INT8 || y.dtype != TML_INT8)
            OPFAIL(c, "x, w and y must be int8", 0, 0);
        if (t[1].storage != TML_CONST || t[2].storage != TML_CONST)
            OPFAIL(c, "weights and bias must be const", 0, 0);
        if (t[1].rank != 2)
            OPFAIL(c, "weights rank %d, expected 2", t[1].rank, 0);
        co = t[1].dims[0];
        ci = t[1].dims[1];
        if (ci > TML_MAX_DOT)
            OPFAIL(c, "%d inputs exceed the runtime limit %d", ci, TML_MAX_DOT);
        if (tml_elements(&t[0]) % ci)
            OPFAIL(c, "input elements %d not a multiple of Ci %d", tml_elements(&t[0]), ci);
        rows = tml_elements(&t[0]) / ci;
        if (y4[3] != co || tml_elements(&y) != rows * co)
            OPFAIL(c, "output shape does not match [%d, %d]", rows, co);
        if (t[2].dtype != TML_INT32 || tml_elements(&t[2]) != co)
            OPFAIL(c, "bias must be int32 with %d elements", co, 0);
        if (!in_range(p[0], -128, 128) || !in_range(p[1], -128, 128) || !in_range(p[2], -128, 127))
            OPFAIL(c, "offsets (%d, %d, ...) outside int8 zero-point range", p[0], p[1]);
        {
            tml_status s = check_act(c, p[3], p[4]);
            if (s)
                return s;
        }
        return check_requant(c, tml_op_in(op, 3), tml_op_in(op, 4), co, 1);
    }
    case OP_AVERAGE_POOL_2D:
    case OP_MAX_POOL_2D:
        if (t[0].dtype != TML_INT8 || y.dtype != TML_INT8)
            OPFAIL(c, "x and y must be int8", 0, 0);
        tml_dims4(&t[0], x4);
        if (x4[0] != y4[0] || x4[3] != y4[3])
            OPFAIL(c, "output batch/channels differ from the input", 0, 0);
        for (k = 0; k < 4; k++)
            if (!in_range(p[k], 1, 65535))
                OPFAIL(c, "stride/filter param %d is %d, expected 1..65535", k, p[k]);
        if (!in_range(p[4], 0, 65535) || !in_range(p[5], 0, 65535))
            OPFAIL(c, "padding (%d, %d) outside 0..65535", p[4], p[5]);
        if ((uint64_t)(uint32_t)p[2] * (uint32_t)p[3] > (1u << 23))
            OPFAIL(c, "pool window %d x %d too large", p[2], p[3]);
        return check_act(c, p[6], p[7]);
    case OP_ADD:
    case OP_MUL: {
        int isadd = op->opcode == OP_ADD;
        if (t[0].dtype != TML_INT8 || t[1].dtype != TML_INT8 || y.dtype != TML_INT8)
            OPFAIL(c, "a, b and y must be int8", 0, 0);
        if (!broadcastable(&t[0], y4) || !broadcastable(&t[1], y4))
            OPFAIL(c, "inputs do not broadcast to the output shape", 0, 0);
        if (isadd) {
            if (!in_range(p[0], -128, 128) || !in_range(p[3], -128, 128) || !in_range(p[9], -128, 127))
                OPFAIL(c, "offsets outside int8 zero-point range", 0, 0);
            if (!multiplier_ok(p[1]) || !multiplier_ok(p[4]) || !multiplier_ok(p[7]))
                OPFAIL(c, "multiplier outside [2^30, 2^31)", 0, 0);
            if (!in_range(p[2], -31, 0) || !in_range(p[5], -31, 0) || !in_range(p[8], -31, 0))
                OPFAIL(c, "shifts (%d, %d, ...) must be in [-31, 0]", p[2], p[5]);
            if (!in_range(p[6], 0, 22))
                OPFAIL(c, "left_shift %d outside 0..22", p[6], 0);
            return check_act(c, p[10], p[11]);
        }
        if (!in_range(p[0], -128, 128) || !in_range(p[1], -128, 128) || !in_range(p[4], -128, 127))
            OPFAIL(c, "offsets outside int8 zero-point range", 0, 0);
        if (!multiplier_ok(p[2]) || !in_range(p[3], -31, 30))
            OPFAIL(c, "out_mult %d / out_shift %d invalid", p[2], p[3]);
        return check_act(c, p[5], p[6]);
    }
    case OP_SOFTMAX:
        if (t[0].dtype != TML_INT8 || y.dtype != TML_INT8)
            OPFAIL(c, "x and y must be int8", 0, 0);
        tml_dims4(&t[0], x4);
        if (tml_elements(&y) != tml_elements(&t[0]) || y4[3] != x4[3])
            OPFAIL(c, "output shape differs from the input", 0, 0);
        if (x4[3] > 4096)
            OPFAIL(c, "%d classes exceed the runtime limit 4096", x4[3], 0);
        if (t[1].dtype != TML_INT32 || t[1].storage != TML_CONST || tml_elements(&t[1]) != 256)
            OPFAIL(c, "exp_table must be an int32 constant of 256 elements", 0, 0);
        return TML_OK;
    case OP_LUT:
        if (t[0].dtype != TML_INT8 || y.dtype != TML_INT8)
            OPFAIL(c, "x and y must be int8", 0, 0);
        if (tml_elements(&y) != tml_elements(&t[0]))
            OPFAIL(c, "output has %d elements, input %d", tml_elements(&y), tml_elements(&t[0]));
        if (t[1].dtype != TML_INT8 || tml_elements(&t[1]) != 256)
            OPFAIL(c, "table must be int8 with 256 elements", 0, 0);
        /* in place is allowed only when x and y are the same bytes */
        if (t[0].storage == TML_ARENA && t[0].offset != y.offset && t[0].offset < y.offset + y.bytes &&
            y.offset < t[0].offset + t[0].bytes)
            OPFAIL(c, "input partly overlaps the output", 0, 0);
        return TML_OK;
    case OP_PAD:
        if (t[0].dtype != TML_INT8 || y.dtype != TML_INT8)
            OPFAIL(c, "x and y must be int8", 0, 0);
        tml_dims4(&t[0], x4);
        for (k = 0; k < 4; k++) {
            if (!in_range(p[2 * k], 0, 65535) || !in_range(p[2 * k + 1], 0, 65535))
                OPFAIL(c, "padding of axis %d outside 0..65535", k, 0);
            if ((uint64_t)x4[k] + (uint32_t)p[2 * k] + (uint32_t)p[2 * k + 1] != y4[k])
                OPFAIL(c, "output dim %d is %d, not input + padding", k, y4[k]);
        }
        if (!in_range(p[8], -128, 127))
            OPFAIL(c, "pad_value %d outside int8", p[8], 0);
        return TML_OK;
    case OP_MEAN: {
        uint64_t kept = 1, count = 1;
        if (t[0].dtype != TML_INT8 || y.dtype != TML_INT8)
            OPFAIL(c, "x and y must be int8", 0, 0);
        if (!in_range(p[0], 1, 15))
            OPFAIL(c, "axis_mask %d outside 1..15", p[0], 0);
        tml_dims4(&t[0], x4);
        for (k = 0; k < 4; k++) {
            if (p[0] & (1 << k))
                count *= x4[k];
            else
                kept *= x4[k];
        }
        if (kept != tml_elements(&y))
            OPFAIL(c, "output has %d elements, expected %d", tml_elements(&y), (long long)kept);
        if (count > (1u << 23))
            OPFAIL(c, "%d reduced elements exceed the runtime limit", (long long)count, 0);
        if (!in_range(p[1], -128, 127) || !in_range(p[2], -128, 127))
            OPFAIL(c, "zero points (%d, %d) outside int8", p[1], p[2]);
        /* MEAN's multiplier is not normalised (spec §5 MEAN): TFLM folds 1/count into it. */
        if (p[3] < 0 || !in_range(p[4], -31, 30))
            OPFAIL(c, "mult %d / shift %d invalid", p[3], p[4]);
        return TML_OK;
    }
    case OP_CONCATENATION: {
        uint64_t sum = 0;
        int axis = p[0];
        if (!in_range(axis, 0, 3))
            OPFAIL(c, "axis %d outside 0..3", axis, 0);
        for (i = 0; i < op->n_in; i++) {
            tml_tensor a;
            uint32_t a4[4];
            tml_tensor_read(m, tml_op_in(op, i), &a);
            if (a.dtype != y.dtype)
                OPFAIL(c, "input %d dtype differs from the output", i, 0);
            tml_dims4(&a, a4);
            for (k = 0; k < 4; k++)
                if ((int)k != axis && a4[k] != y4[k])
                    OPFAIL(c, "input %d dim %d differs from the output", i, k);
            sum += a4[axis];
        }
        if (sum != y4[axis])
            OPFAIL(c, "inputs sum to %d along the axis, output has %d", (long long)sum, y4[axis]);
        return TML_OK;
    }
    case OP_QUANTIZE:
        if (t[0].dtype != TML_FLOAT32 || y.dtype != TML_INT8)
            OPFAIL(c, "expects float32 -> int8", 0, 0);
        if (tml_elements(&y) != tml_elements(&t[0]))
            OPFAIL(c, "element counts differ", 0, 0);
        if (!(y.scale > 0.0f) || !isfinite(y.scale) || !in_range(y.zero_point, -128, 127))
            OPFAIL(c, "output scale/zero_point invalid", 0, 0);
        return TML_OK;
    case OP_DEQUANTIZE:
        if (t[0].dtype != TML_INT8 || y.dtype != TML_FLOAT32)
            OPFAIL(c, "expects int8 -> float32", 0, 0);
        if (tml_elements(&y) != tml_elements(&t[0]))
            OPFAIL(c, "element counts differ", 0, 0);
        if (!isfinite(t[0].scale) || !in_range(t[0].zero_point, -128, 127))
            OPFAIL(c, "input scale/zero_point invalid", 0, 0);
        return TML_OK;
    case OP_COPY:
        if (t[0].bytes != y.bytes)
            OPFAIL(c, "input is %d bytes, output %d", t[0].bytes, y.bytes);
        return TML_OK;
    case OP_TREE_ENSEMBLE:
        return check_tree_ensemble(c, t);
    default: { /* §11, tml_classic.c */
        long long a = 0, b = 0;
        const char *why = tml_classic_check(m, op, t, &a, &b);
        if (why)
            OPFAIL(c, why, a, b);
        return TML_OK;
    }
    }
    OPFAIL(c, "unknown opcode", 0, 0);
}

/* ---- sections and the whole blob ---- */

static tml_status check_sections(tml_model *m, const uint8_t *b, uint32_t total, uint32_t count)
{
    uint32_t table_end = TML_HEADER_BYTES + 16u * count, i, j;
    int seen[6] = {0};
    for (i = 0; i < count; i++) {
        const uint8_t *s = b + TML_HEADER_BYTES + 16u * i;
        uint32_t kind = tml_rd32(s), off = tml_rd32(s + 4), size = tml_rd32(s + 8), cnt = tml_rd32(s + 12);
        if (off < table_end || (uint64_t)off + size > total)
            return fail(m, TML_E_SECTION, "section %d lies outside [table end, total_bytes) (offset %d)", NULL, i,
                        off);
        for (j = 0; j < i; j++) {
            const uint8_t *o = b + TML_HEADER_BYTES + 16u * j;
            uint32_t o_off = tml_rd32(o + 4), o_size = tml_rd32(o + 8);
            if (size && o_size && off < o_off + o_size && o_off < off + size)
                return fail(m, TML_E_SECTION, "sections %d and %d overlap", NULL, j, i);
        }
        if (kind >= 0x100)
            continue; /* optional extension: skipped */
        if (kind < 1 || kind > 5)
            return fail(m, TML_E_SECTION, "section %d has unknown kind %d", NULL, i, kind);
        if (seen[kind]++)
            return fail(m, TML_E_SECTION, "section kind %d appears twice", NULL, kind, 0);
        if (kind != SEC_TENSORS && kind != SEC_OPS && cnt != 0)
            return fail(m, TML_E_SECTION, "raw section kind %d has count %d, expected 0", NULL, kind, cnt);
        switch (kind) {
        case SEC_TENSORS:
            if ((uint64_t)cnt * TENSOR_RECORD != size || cnt == 0 || cnt > 65536)
                return fail(m, TML_E_SECTION, "TENSORS size %d does not hold %d records", NULL, size, cnt);
            m->tensors = b + off;
            m->n_tensors = cnt;
            break;
        case SEC_OPS:
            m->ops = b + off;
            m->ops_size = size;
            m->n_ops = cnt;
            break;
        case SEC_CONST:
            if (off & 15u)
                return fail(m, TML_E_SECTION, "CONST section offset %d not a multiple of 16", NULL, off, 0);
            m->consts = b + off;
            m->consts_size = size;
            break;
        case SEC_GRAPH:
            m->graph = b + off;
            if (size < 4)
                return fail(m, TML_E_SECTION, "GRAPH section is %d bytes", NULL, size, 0);
            m->graph_size = size; /* its contents are checked after the hash (§9 step 4) */
            break;
        case SEC_META:
            m->meta = b + off;
            m->meta_size = size;
            break;
        }
    }
    for (i = 1; i <= 4; i++)
        if (!seen[i])
            return fail(m, TML_E_SECTION, "required section kind %d missing", NULL, i, 0);
    return TML_OK;
}

static tml_status check_graph(tml_model *m)
{
    uint32_t i, n;
    int any_float = 0;
    m->n_inputs = tml_rd16(m->graph);
    m->n_outputs = tml_rd16(m->graph + 2);
    n = (uint32_t)m->n_inputs + m->n_outputs;
    if (m->graph_size != 4u + 2u * n)
        return fail(m, TML_E_GRAPH, "GRAPH size %d does not match its %d indices", NULL, m->graph_size, n);
    if (m->n_outputs < 1)
        return fail(m, TML_E_GRAPH, "graph has no outputs", NULL, 0, 0);
    for (i = 0; i < n; i++) {
        uint16_t ti = tml_rd16(m->graph + 4 + 2 * i);
        tml_tensor t;
        if (ti >= m->n_tensors)
            return fail(m, TML_E_GRAPH, "graph tensor index %d >= tensor count %d", NULL, ti, m->n_tensors);
        tml_tensor_read(m, ti, &t);
        if (t.storage != TML_ARENA)
            return fail(m, TML_E_GRAPH, "graph input/output tensor %d is not in the arena", NULL, ti, 0);
        /* int32 outputs: TREE_ENSEMBLE's class scores */
        if (t.dtype != TML_INT8 && t.dtype != TML_FLOAT32 && !(t.dtype == TML_INT32 && i >= m->n_inputs))
            return fail(m, TML_E_GRAPH, "graph tensor %d has dtype %d: inputs are int8 or float32, outputs also int32",
                        NULL, ti, t.dtype);
        any_float |= t.dtype == TML_FLOAT32;
    }
    if (any_float != (int)(m->flags & 1u))
        return fail(m, TML_E_GRAPH, "FLOAT_IO flag %d disagrees with the graph's I/O dtypes", NULL, m->flags & 1u,
                    0);
    return TML_OK;
}

tml_status tml_load(tml_model *m, const void *blob, uint32_t len, void *arena, uint32_t arena_len)
{
    const uint8_t *b = (const uint8_t *)blob;
    uint32_t total = 0, arena_bytes = 0, i, pos, largest = 0;
    tml_status s;
    tml_sha256 h;
    uint8_t digest[32];

    if (!m)
        return TML_E_ARG;
    memset(m, 0, sizeof *m);
    s = tml_check_header(b, len, &total, &arena_bytes, m->reason, sizeof m->reason);
    if (s)
        return m->status = s;
    if (total != len)
        return fail(m, TML_E_HEADER, "total_bytes %d but %d bytes given", NULL, total, len);
    if (arena_bytes > arena_len || (arena_bytes && !arena))
        return fail(m, TML_E_ARG, "model needs a %d-byte arena, %d given", NULL, arena_bytes, arena_len);
    m->blob = b;
    m->blob_len = len;
    m->arena = (uint8_t *)arena;
    m->arena_bytes = arena_bytes;
    if (arena != NULL) { /* the rest of the caller's arena: scratch for tml_invoke's kernels */
        const uintptr_t lo = ((uintptr_t)m->arena + arena_bytes + 3) & ~(uintptr_t)3;
        const uintptr_t hi = (uintptr_t)m->arena + arena_len;
        if (hi > lo) {
            m->scratch = (uint8_t *)lo;
            m->scratch_bytes = (uint32_t)(hi - lo);
        }
    }
    m->flags = tml_rd32(b + 8);
    m->max_op_params = tml_rd32(b + 56);

    s = check_sections(m, b, total, tml_rd16(b + 14));
    if (s)
        return s;

    tml_sha256_init(&h);
    tml_sha256_update(&h, b + TML_HEADER_BYTES, total - TML_HEADER_BYTES);
    tml_sha256_final(&h, digest);
#ifndef TML_FUZZING /* the fuzz build skips only this comparison so mutations reach the later checks */
    if (memcmp(digest, b + 24, 32) != 0)
        return fail(m, TML_E_HASH, "SHA-256 of bytes [64, %d) does not match the header", NULL, total, 0);
#endif

    for (i = 0; i < m->n_tensors; i++)
        if ((s = check_tensor(m, i)) != TML_OK)
            return s;
    if ((s = check_graph(m)) != TML_OK)
        return s;
    for (i = 0, pos = 0; i < m->n_ops; i++) {
        tml_op op;
        op_ctx c;
        if (tml_op_decode(m->ops + pos, m->ops_size - pos, &op))
            return fail(m, TML_E_OP, "op %d: record runs past the OPS section", NULL, i, 0);
        c.m = m;
        c.k = i;
        c.op = &op;
        if ((s = check_op(&c)) != TML_OK)
            return s;
        if (op.n_params > largest)
            largest = op.n_params;
        pos += op.len;
    }
    if (pos != m->ops_size)
        return fail(m, TML_E_OP, "OPS section has %d bytes after the last record", NULL, m->ops_size - pos, 0);
    if (m->max_op_params != largest)
        return fail(m, TML_E_OP, "header max_op_params %d but the largest op has %d params", NULL, m->max_op_params,
                    largest);
    for (i = 0, pos = 0; i < m->n_ops; i++) {
        tml_op op;
        if (tml_op_decode(m->ops + pos, m->ops_size - pos, &op)) /* checked above */
            return fail(m, TML_E_OP, "op %d: record runs past the OPS section", NULL, i, 0);
        pos += op.len;
        if (op.opcode == OP_PATCH && (s = check_patch_stage(m, i, &op, m->ops + pos, m->ops_size - pos)) != TML_OK)
            return s;
    }
    m->loaded = 1;
    m->status = TML_OK;
    m->reason[0] = 0;
    return TML_OK;
}

int tml_tensor_get(const tml_model *m, uint32_t index, tml_tensor *t)
{
    if (!m || !m->loaded || index >= m->n_tensors)
        return -1;
    tml_tensor_read(m, index, t);
    return 0;
}

int tml_input_index(const tml_model *m, uint32_t i)
{
    if (!m || !m->loaded || i >= m->n_inputs)
        return -1;
    return tml_rd16(m->graph + 4 + 2 * i);
}

int tml_output_index(const tml_model *m, uint32_t i)
{
    if (!m || !m->loaded || i >= m->n_outputs)
        return -1;
    return tml_rd16(m->graph + 4 + 2 * ((uint32_t)m->n_inputs + i));
}

void *tml_tensor_data(const tml_model *m, uint32_t index)
{
    tml_tensor t;
    if (tml_tensor_get(m, index, &t))
        return NULL;
    return t.storage == TML_ARENA ? (void *)(m->arena + t.offset) : NULL;
}

tml_status tml_invoke(tml_model *m)
{
    uint32_t i, pos = 0;
    if (!m || !m->loaded)
        return TML_E_ARG;
    for (i = 0; i < m->n_ops; i++) {
        tml_op op;
        tml_status s;
        tml_op_decode(m->ops + pos, m->ops_size - pos, &op);
        if (m->on_op)
            m->on_op(m->on_op_ctx, i, 0);
        if (op.opcode == OP_PATCH) { /* it runs the n_ops records after it, tile by tile: one op for on_op */
            uint32_t stage_bytes;
            if ((s = run_patch(m, &op, m->ops + pos + op.len, m->ops_size - pos - op.len, &stage_bytes)) != TML_OK)
                return s;
            if (m->on_op)
                m->on_op(m->on_op_ctx, i, 1);
            pos += stage_bytes + op.len;
            i += (uint32_t)tml_op_param(&op, 0);
            continue;
        }
        if ((s = op.opcode >= OP_KERNEL ? tml_classic_run(m, &op) : tml_run_op(m, &op)) != TML_OK)
            return s;
        if (m->on_op)
            m->on_op(m->on_op_ctx, i, 1);
        pos += op.len;
    }
    return TML_OK;
}
