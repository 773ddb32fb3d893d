/* PATCH (docs/blob-format.md §12): a stage of convolutions run tile by tile over its last output. Included once,
 * by tml_load.c: the load-time checks and the tile loop. While a tile runs, the stage's tile buffers read with
 * the tile's rows and columns (tml_tensor_read's override) and each op gets the tile's padding; the kernels are
 * the ordinary ones. */
#ifndef TML_PATCH_H
#define TML_PATCH_H

#define OP_PATCH 22
#define PATCH_MAX_PAD 65535

static uint32_t patch_row_len(uint32_t n) { return 2u + 4u * n; }

static const uint8_t *patch_table(const tml_model *m, const tml_op *op, uint32_t *rows)
{
    tml_tensor t;
    tml_tensor_read(m, tml_op_in(op, 1), &t);
    *rows = t.dims[0];
    return m->consts + t.offset;
}

/* The record alone: x, tiles, tile -> y; n_ops. */
static tml_status check_patch_record(op_ctx *c)
{
    const tml_op *op = c->op;
    tml_tensor x, tt, tile, y;
    uint32_t i, n, x4[4], y4[4];
    if (op->n_in != 3 || op->n_out != 1 || op->n_params != 1)
        OPFAIL(c, "needs 3 inputs, 1 output and 1 param, has %d inputs", op->n_in, 0);
    if (op->n_params > c->m->max_op_params)
        OPFAIL(c, "%d params exceed the header's max_op_params %d", op->n_params, c->m->max_op_params);
    for (i = 0; i < 4; i++)
        if ((i < 3 ? tml_op_in(op, i) : tml_op_out(op)) >= c->m->n_tensors)
            OPFAIL(c, "tensor index %d out of range", i < 3 ? tml_op_in(op, i) : tml_op_out(op), 0);
    tml_tensor_read(c->m, tml_op_in(op, 0), &x);
    tml_tensor_read(c->m, tml_op_in(op, 1), &tt);
    tml_tensor_read(c->m, tml_op_in(op, 2), &tile);
    tml_tensor_read(c->m, tml_op_out(op), &y);
    n = (uint32_t)tml_op_param(op, 0);
    if (n < 1 || n > 255)
        OPFAIL(c, "n_ops %d outside 1..255", (int32_t)n, 0);
    if (x.dtype != TML_INT8 || tile.dtype != TML_INT8 || y.dtype != TML_INT8 || x.storage != TML_ARENA ||
        tile.storage != TML_ARENA || y.storage != TML_ARENA || tile.rank != 4)
        OPFAIL(c, "x, tile and y must be int8 arena tensors (tile 4-D)", 0, 0);
    if (tt.dtype != TML_INT32 || tt.storage != TML_CONST || tt.rank != 2 || tt.dims[1] != patch_row_len(n))
        OPFAIL(c, "tile table must be const int32 [tiles, %d]", patch_row_len(n), 0);
    tml_dims4(&x, x4);
    tml_dims4(&y, y4);
    if (x4[0] != 1 || y4[0] != 1 || tile.dims[3] != y4[3])
        OPFAIL(c, "batch must be 1 and the tile's channels those of y (%d)", y4[3], 0);
    if (tile.offset < y.offset + y.bytes && y.offset < tile.offset + tile.bytes)
        OPFAIL(c, "tile buffer overlaps the output", 0, 0);
    return TML_OK;
}

/* After every record is checked: the n records after PATCH op k form its stage, and every table row is a window
 * they can run on (outputs inside the tile buffers, padding in range, the tile inside y). */
static tml_status check_patch_stage(tml_model *m, uint32_t k, const tml_op *op, const uint8_t *next, uint32_t avail)
{
    op_ctx c;
    uint32_t n = (uint32_t)tml_op_param(op, 0), rows, r, j, pos = 0, x4[4], y4[4];
    uint16_t prev = tml_op_in(op, 0);
    const uint8_t *table = patch_table(m, op, &rows);
    tml_tensor t;
    c.m = m;
    c.k = k;
    c.op = op;
    if (k + n >= m->n_ops)
        OPFAIL(&c, "its %d stage ops run past the op list", n, 0);
    for (j = 0; j < n; j++) {
        tml_op s;
        if (tml_op_decode(next + pos, avail - pos, &s))
            OPFAIL(&c, "its %d stage ops run past the op list", n, 0);
        if ((s.opcode != OP_CONV_2D && s.opcode != OP_DEPTHWISE_CONV_2D) || tml_op_in(&s, 0) != prev)
            OPFAIL(&c, "stage op %d is not a convolution reading its predecessor's output", k + 1 + j, 0);
        prev = tml_op_out(&s);
        tml_tensor_read(m, prev, &t);
        if (t.rank != 4)
            OPFAIL(&c, "stage op %d output is not 4-D", k + 1 + j, 0);
        pos += s.len;
    }
    if (prev != tml_op_in(op, 2))
        OPFAIL(&c, "the stage's last op does not write the tile tensor", 0, 0);
    tml_tensor_read(m, tml_op_in(op, 0), &t);
    tml_dims4(&t, x4);
    tml_tensor_read(m, tml_op_out(op), &t);
    tml_dims4(&t, y4);
    for (r = 0; r < rows; r++) {
        const uint8_t *row = table + 4u * r * patch_row_len(n);
        int64_t in_h = x4[1], in_w = x4[2];
        int32_t oy0 = tml_ld32(row), ox0 = tml_ld32(row + 4);
        for (j = 0, pos = 0; j < n; j++) {
            tml_op s;
            tml_tensor w, o;
            int32_t oh = tml_ld32(row + 8 + 16 * j), ow = tml_ld32(row + 12 + 16 * j);
            int32_t pt = tml_ld32(row + 16 + 16 * j), pl = tml_ld32(row + 20 + 16 * j), lo = j ? 0 : -PATCH_MAX_PAD;
            if (tml_op_decode(next + pos, avail - pos, &s))
                OPFAIL(&c, "its %d stage ops run past the op list", n, 0);
            tml_tensor_read(m, tml_op_in(&s, 1), &w);
            tml_tensor_read(m, tml_op_out(&s), &o);
            if (oh < 1 || ow < 1 || (uint32_t)oh > o.dims[1] || (uint32_t)ow > o.dims[2])
                OPFAIL(&c, "tile %d: an output of %d rows outside its tile buffer", r, oh);
            if (pt < lo || pl < lo || (int64_t)pt > (int64_t)(w.dims[1] - 1) * tml_op_param(&s, 2) ||
                (int64_t)pl > (int64_t)(w.dims[2] - 1) * tml_op_param(&s, 3))
                OPFAIL(&c, "tile %d: padding (%d, ...) out of range", r, pt);
            if ((int64_t)(oh - 1) * tml_op_param(&s, 0) - pt >= in_h ||
                (int64_t)(ow - 1) * tml_op_param(&s, 1) - pl >= in_w)
                OPFAIL(&c, "tile %d: stage op output does not fit its input (%d rows)", r, oh);
            in_h = oh;
            in_w = ow;
            pos += s.len;
        }
        if (oy0 < 0 || ox0 < 0 || oy0 + in_h > y4[1] || ox0 + in_w > y4[2])
            OPFAIL(&c, "tile %d: lands outside the output at row %d", r, oy0);
    }
    return TML_OK;
}

/* Where tile `row`'s last op can write its output straight into y (no tile buffer, no copy), or UINT32_MAX: the
 * tile spans y's width, so its rows are one run of y; and the run is not input this tile still reads (with more
 * than one op the last reads a tile buffer; a lone op reads x from its first row on, -pad_top). */
static uint32_t patch_direct(const uint8_t *row, uint32_t n, const tml_tensor *x, const uint32_t x4[4],
                             const tml_tensor *y, const uint32_t y4[4])
{
    const uint32_t oy0 = (uint32_t)tml_ld32(row), ox0 = (uint32_t)tml_ld32(row + 4);
    const uint32_t th = (uint32_t)tml_ld32(row + 16 * n - 8), tw = (uint32_t)tml_ld32(row + 16 * n - 4);
    const int32_t pt = tml_ld32(row + 16);
    uint64_t lo, hi, xlo;
    if (ox0 != 0 || tw != y4[2])
        return UINT32_MAX;
    lo = y->offset + (uint64_t)oy0 * y4[2] * y4[3];
    hi = lo + (uint64_t)th * y4[2] * y4[3];
    xlo = x->offset + (pt < 0 ? (uint64_t)-(int64_t)pt * x4[2] * x4[3] : 0);
    return n > 1 || hi <= xlo || lo >= (uint64_t)x->offset + x->bytes ? (uint32_t)lo : UINT32_MAX;
}

/* Run PATCH op `op` and its stage (the records at `next`); *stage_bytes = the stage records' length. */
static tml_status run_patch(tml_model *m, const tml_op *op, const uint8_t *next, uint32_t avail,
                            uint32_t *stage_bytes)
{
    uint32_t n = (uint32_t)tml_op_param(op, 0), rows, r, j, pos = 0, x4[4], y4[4];
    const uint8_t *table = patch_table(m, op, &rows);
    tml_tensor x, y, tile;
    tml_tensor_read(m, tml_op_in(op, 0), &x);
    tml_tensor_read(m, tml_op_out(op), &y);
    tml_tensor_read(m, tml_op_in(op, 2), &tile);
    tml_dims4(&x, x4);
    tml_dims4(&y, y4);
    m->tile_runs = rows;
    m->tile_plain = 0;
    for (r = 0; r < rows; r++) {
        const uint8_t *row = table + 4u * r * patch_row_len(n);
        const uint32_t at = patch_direct(row, n, &x, x4, &y, y4);
        uint32_t oy0 = (uint32_t)tml_ld32(row), ox0 = (uint32_t)tml_ld32(row + 4), th = 0, tw = 0, q;
        for (j = 0, pos = 0; j < n; j++) {
            tml_op s;
            uint8_t params[4 * TML_MAX_PARAMS];
            tml_status st;
            if (tml_op_decode(next + pos, avail - pos, &s))
                return m->status = TML_E_RUNTIME;
            memcpy(params, s.params, 4u * s.n_params);
            memcpy(params + 16, row + 16 + 16 * j, 8); /* pad_top, pad_left: little-endian int32 both */
            s.params = params;
            m->tile_tensor[1] = m->tile_tensor[0]; /* this op's input: the previous op's tile */
            m->tile_rows[1] = th;
            m->tile_cols[1] = tw;
            m->tile_at[1] = UINT32_MAX;
            th = (uint32_t)tml_ld32(row + 8 + 16 * j);
            tw = (uint32_t)tml_ld32(row + 12 + 16 * j);
            m->tile_tensor[0] = tml_op_out(&s);
            m->tile_rows[0] = th;
            m->tile_cols[0] = tw;
            m->tile_at[0] = j + 1 == n ? at : UINT32_MAX;
            m->n_tile = j ? 2 : 1;
            m->tile_op = (uint8_t)j;
            st = tml_run_op(m, &s);
            m->n_tile = 0;
            if (st != TML_OK)
                return st;
            pos += s.len;
        }
        if (at == UINT32_MAX)
            for (q = 0; q < th; q++) /* the tile into y at (oy0, ox0) */
                memcpy(m->arena + y.offset + (((size_t)oy0 + q) * y4[2] + ox0) * y4[3],
                       m->arena + tile.offset + (size_t)q * tw * y4[3], (size_t)tw * y4[3]);
    }
    *stage_bytes = pos;
    return TML_OK;
}

#endif
