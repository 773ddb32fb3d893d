# PATCH (opcode 22, docs/blob-format.md §12): a stage of convolutions run tile by tile over its last output.
# Imported only by models that have one. At load the stage's n op records are folded into the PATCH op; at run time
# each tile runs those ops with the ordinary kernels, on the tile's shapes (their tile buffers read with the tile's
# rows and columns) and the tile's padding, then the tile is copied into the stage's output.

import gc
import struct

import micropython

from . import ops as O
from .errors import BlobError
from .blob import T_DTYPE, T_STORAGE, T_DIMS, T_OFF, T_BYTES, T_SHAPE, INT8, INT32, ARENA, CONST

MAX_PAD = 65535
from .conv import conv, GEMM_K


def _fail(i, msg):
    raise BlobError("op %d (PATCH): %s" % (i, msg))


def check_op(src, p, i):
    """The record alone (x, tiles, tile -> y; n_ops)."""
    code, ins, out, par = p.ops[i]
    T = p.tensors
    x, tt, tile, y = T[ins[0]], T[ins[1]], T[ins[2]], T[out]
    n = par[0]
    if not 1 <= n <= 255:
        _fail(i, "n_ops %d outside 1..255" % n)
    for t in (x, tile, y):
        if t[T_DTYPE] != INT8 or t[T_STORAGE] != ARENA:
            _fail(i, "x, tile and y must be int8 arena tensors")
    if len(tile[T_SHAPE]) != 4:
        _fail(i, "the tile tensor must be 4-D")
    if tt[T_DTYPE] != INT32 or tt[T_STORAGE] != CONST or len(tt[T_SHAPE]) != 2 or tt[T_SHAPE][1] != 2 + 4 * n:
        _fail(i, "tile table must be const int32 [tiles, %d]" % (2 + 4 * n))
    if x[T_DIMS][0] != 1 or y[T_DIMS][0] != 1 or tile[T_DIMS][3] != y[T_DIMS][3]:
        _fail(i, "batch must be 1 and the tile's channels those of y")
    if tile[T_OFF] < y[T_OFF] + y[T_BYTES] and y[T_OFF] < tile[T_OFF] + tile[T_BYTES]:
        _fail(i, "tile buffer overlaps the output")


def fold(src, p):
    """Check every PATCH op's stage and table, then move its n stage ops into it: (PATCH, ins, out, par, stage)."""
    ops, i = p.ops, 0
    while i < len(ops):
        code, ins, out, par = ops[i][:4]
        if code == O.PATCH:
            n = par[0]
            if i + n >= len(ops):
                _fail(i, "its %d stage ops run past the op list" % n)
            stage = tuple(ops[i + 1:i + 1 + n])
            _check_stage(src, p, i, stage)
            gc.collect()  # the tile table's reads: the folded op goes to the lowest hole (see parse)
            ops[i:i + 1 + n] = [(code, ins, out, par, stage)]
        i += 1


def _check_stage(src, p, i, stage):
    code, ins, out, par = p.ops[i]
    T = p.tensors
    prev = ins[0]
    for k, op in enumerate(stage):
        if op[0] not in (O.CONV_2D, O.DEPTHWISE_CONV_2D) or op[1][0] != prev:
            _fail(i, "stage op %d is not a convolution reading its predecessor's output" % (i + 1 + k))
        prev = op[2]
        if len(T[prev][T_SHAPE]) != 4:
            _fail(i, "stage op %d output is not 4-D" % (i + 1 + k))
    if prev != ins[2]:
        _fail(i, "the stage's last op does not write the tile tensor")
    tt = T[ins[1]]
    width = 2 + 4 * len(stage)
    yd, xd = T[out][T_DIMS], T[ins[0]][T_DIMS]
    for r in range(tt[T_SHAPE][0]):
        row = struct.unpack("<%di" % width, src.read(tt[T_OFF] + 4 * width * r, 4 * width))
        in_h, in_w = xd[1], xd[2]
        for k, op in enumerate(stage):
            oh, ow, pt, pl = row[2 + 4 * k:6 + 4 * k]
            cap, wd, q = T[op[2]][T_DIMS], T[op[1][1]][T_DIMS], op[3]
            lo = -MAX_PAD if k == 0 else 0
            if not (1 <= oh <= cap[1] and 1 <= ow <= cap[2]):
                _fail(i, "tile %d: op %d output %dx%d outside its tile buffer" % (r, i + 1 + k, oh, ow))
            if not (lo <= pt <= (wd[1] - 1) * q[2] and lo <= pl <= (wd[2] - 1) * q[3]):
                _fail(i, "tile %d: op %d padding (%d, %d) out of range" % (r, i + 1 + k, pt, pl))
            if (oh - 1) * q[0] - pt >= in_h or (ow - 1) * q[1] - pl >= in_w:
                _fail(i, "tile %d: op %d output does not fit its input" % (r, i + 1 + k))
            in_h, in_w = oh, ow
        if row[0] < 0 or row[1] < 0 or row[0] + in_h > yd[1] or row[1] + in_w > yd[2]:
            _fail(i, "tile %d lands outside the output" % r)


@micropython.viper
def geo(c: ptr32, t: ptr32, b: int, k: int):
    # conv.conv's geometry for one tile (conv.plan's fields) from the tile table's int32 words t[b..b+3] = output
    # rows, columns, padding top, left: output OW, OH, padding, output pixels; k (every op but the first):
    # input H, W = the previous op's output rows and columns (t[b-4], t[b-3]). The words are copied as they are
    # (the padding may be negative), so no sign handling is needed.
    oh = t[b]
    ow = t[b + 1]
    if k:
        c[25] = t[b - 4]
        c[26] = t[b - 3]
    c[28] = ow
    c[29] = oh
    c[36] = t[b + 2]
    c[37] = t[b + 3]
    c[6] = oh * ow  # the pixels of this call, for the direct calls below
    c[47] = oh * ow


def run(m, op, runner, plans):
    """Run PATCH op `op` on model m, tile by tile; runner(m, op, plan) runs one stage op. plans: the stage ops'
    conv configs built once at load (kernels._patch_plan; each tile sets its shapes and padding in them). The
    reference kernels run stages on their own (kernels_ref.run_patch)."""
    code, ins, out, par, stage = op
    T = m.tensors
    tt, y = T[ins[1]], T[out]
    yd = y[T_DIMS]
    tile_off = T[ins[2]][T_OFF]
    n = len(stage)
    width = 2 + 4 * n
    xd = T[ins[0]][T_DIMS]
    a = m._amv
    row_bytes = yd[3]
    plans[0][25], plans[0][26] = xd[1], xd[2]  # the first op reads a window of the whole input (negative padding)
    # Blob in RAM, every op one kernel call (conv.run's `whole`): after the first tile, whose run sets the rest of
    # each config, a tile only changes the geometry, so the kernel is called directly (conv.run's set-up per op
    # and tile was a third of SWW's stage overhead).
    whole = m._wbuf is None
    for c in plans:
        if not c[1] and c[2] > GEMM_K:
            whole = False
    kern, rows, arena = conv, m._acc2, m.arena
    mv = m._src.mv if whole else None
    plan = plans[n - 1]
    for r in range(tt[T_SHAPE][0]):
        buf, at = m._wview(tt[T_OFF] + 4 * width * r, 4 * width)
        y0, x0 = struct.unpack_from("<II", buf, at)
        for k in range(n):  # all of the tile's geometry before any op runs: streamed, the ops reuse buf
            geo(plans[k], buf, (at >> 2) + 2 + 4 * k, k)
        if whole and r:
            for k in range(n):
                kern(mv, rows, arena, plans[k])
        else:
            for k in range(n):
                runner(m, stage[k], plans[k])
        oh, ow = plan[29], plan[28]
        run_len = ow * row_bytes
        at = y[T_OFF] + (y0 * yd[2] + x0) * row_bytes
        if ow == yd[2]:  # the tile spans y's rows: one copy
            a[at:at + oh * run_len] = a[tile_off:tile_off + oh * run_len]
            continue
        for q in range(oh):  # the tile into y at (y0, x0)
            a[at:at + run_len] = a[tile_off + q * run_len:tile_off + (q + 1) * run_len]
            at += yd[2] * row_bytes
