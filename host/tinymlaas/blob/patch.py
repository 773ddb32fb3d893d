"""The PATCH op (docs/blob-format.md §12): a stage of convolutions run tile by tile. Its reader checks and its
reference execution, used by blob/reader.py and blob/reference.py.

    PATCH  inputs x, tiles (const int32 [T, 2 + 4 n]), tile;  output y;  param n_ops = n
    followed by n CONV_2D / DEPTHWISE_CONV_2D records: the first reads x, each next one its predecessor's output,
    the last writes `tile`. Their intermediate tensors are tile buffers, shaped as the largest tile.

For each table row (oy0, ox0, then per op k: rows_k, cols_k, pad_top_k, pad_left_k), in order: op k runs with
output [1, rows_k, cols_k, C_k] (contiguous at its tensor's offset), input x for k = 0 or op k-1's tile output,
and pad_top_k / pad_left_k instead of its record's padding (the first op's may be negative: it reads a window of
the whole x); then the [rows, cols] tile is copied into y at (oy0, ox0). y may overlap x: the compiler placed it
so that no tile's output reaches input a later tile reads.
"""

import numpy as np

STAGE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
MAX_PAD = 65535


def row_len(n_ops):
    return 2 + 4 * n_ops


def check_op(T, y, P, bad, need, int8, int32):
    """Record-level rules (the stage's records are checked against the table by check_stage)."""
    x, tiles, tile = T
    need(x, int8, "input", const=False)
    need(tile, int8, "tile", const=False)
    need(y, int8, "output")
    need(tiles, int32, "tile table", const=True)
    n = P["n_ops"]
    if not 1 <= n <= 255:
        bad("n_ops=%d outside 1..255", n)
    if len(tiles.shape) != 2 or tiles.shape[1] != row_len(n) or tiles.shape[0] < 1:
        bad("tile table must be [tiles, %d], is %s", row_len(n), list(tiles.shape))
    if x.dims4[0] != 1 or y.dims4[0] != 1 or tile.dims4[3] != y.dims4[3]:
        bad("x %s, tile %s and y %s: batch must be 1 and tile channels those of y", list(x.dims4),
            list(tile.dims4), list(y.dims4))
    if tile.offset < y.offset + y.nbytes and y.offset < tile.offset + tile.nbytes:
        bad("tile buffer overlaps the output")


def check_stage(ops, i, tensors, table, bad):
    """The n records after PATCH op i form its stage, and every table row is a window they can run on."""
    patch = ops[i]
    n = patch.params[0]
    if i + n >= len(ops):
        bad("its %d stage ops run past the op list", n)
    stage = ops[i + 1:i + 1 + n]
    prev = patch.inputs[0]
    for op in stage:
        if op.name not in STAGE_OPS:
            bad("stage op %d is %s; a stage holds CONV_2D and DEPTHWISE_CONV_2D only", op.index, op.name)
        if op.inputs[0] != prev:
            bad("stage op %d does not read its predecessor's output", op.index)
        prev = op.outputs[0]
    if prev != patch.inputs[2]:
        bad("the stage's last op does not write the tile tensor")
    y4 = tensors[patch.outputs[0]].dims4
    for r, row in enumerate(table.reshape(-1, row_len(n)).tolist()):
        oy0, ox0 = row[0], row[1]
        in_h, in_w = tensors[patch.inputs[0]].dims4[1:3]
        for k, op in enumerate(stage):
            oh, ow, pt, pl = row[2 + 4 * k:6 + 4 * k]
            cap = tensors[op.outputs[0]].dims4
            kh, kw = tensors[op.inputs[1]].shape[1:3]
            sh, sw, dh, dw = op.params[:4]
            lo = -MAX_PAD if k == 0 else 0  # the first op reads a window of the whole x
            if not (1 <= oh <= cap[1] and 1 <= ow <= cap[2]):
                bad("tile %d: op %d output %dx%d outside 1..%dx%d", r, op.index, oh, ow, cap[1], cap[2])
            if not (lo <= pt <= (kh - 1) * dh and lo <= pl <= (kw - 1) * dw):
                bad("tile %d: op %d padding (%d, %d) out of range", r, op.index, pt, pl)
            if (oh - 1) * sh - pt >= in_h or (ow - 1) * sw - pl >= in_w:
                bad("tile %d: op %d output %dx%d does not fit its %dx%d input", r, op.index, oh, ow, in_h, in_w)
            in_h, in_w = oh, ow
        if oy0 < 0 or ox0 < 0 or oy0 + in_h > y4[1] or ox0 + in_w > y4[2]:
            bad("tile %d: %dx%d at (%d, %d) outside the %dx%d output", r, in_h, in_w, oy0, ox0, y4[1], y4[2])
    return stage


class _Shaped:
    """A tensor record seen with a tile's shape (what a kernel reads of its input/output)."""

    def __init__(self, t, h, w):
        self.dims4 = (1, h, w, t.dims4[3])
        self.shape = self.dims4
        self.offset, self.dtype, self.zero_point, self.scale = t.offset, t.dtype, t.zero_point, t.scale
        self.nbytes = h * w * t.dims4[3]


def run(ex, patch, stage, kernels, np_dtype):
    """Execute PATCH op `patch` and its stage on executor `ex`'s arena, tile by tile, as a device does."""
    T = ex.blob.tensors
    table = ex.read(patch.inputs[1]).reshape(-1, row_len(len(stage)))
    y_t = T[patch.outputs[0]]
    _, yh, yw, yc = y_t.dims4
    for row in table.tolist():
        x_view = T[patch.inputs[0]]
        for k, op in enumerate(stage):
            oh, ow, pt, pl = row[2 + 4 * k:6 + 4 * k]
            out = _Shaped(T[op.outputs[0]], oh, ow)
            ins = [x_view] + [T[i] for i in op.inputs[1:]]
            args = [_arena(ex, x_view, np_dtype)] + [ex.read(i) for i in op.inputs[1:]]
            params = dict(zip(op.spec.params, op.params), pad_top=pt, pad_left=pl)
            y = kernels[op.name](args, params, ins, out)
            ex.arena[out.offset:out.offset + out.nbytes] = np.asarray(y).astype(np.int8).reshape(-1).view(np.uint8)
            x_view = out
        oy0, ox0 = row[0], row[1]
        tile = ex.arena[x_view.offset:x_view.offset + x_view.nbytes].reshape(x_view.dims4[1], -1)
        for r in range(x_view.dims4[1]):
            at = y_t.offset + ((oy0 + r) * yw + ox0) * yc
            ex.arena[at:at + tile.shape[1]] = tile[r]


def _arena(ex, t, np_dtype):
    return ex.arena[t.offset:t.offset + t.nbytes].view(np_dtype[t.dtype]).reshape(t.dims4).copy()
