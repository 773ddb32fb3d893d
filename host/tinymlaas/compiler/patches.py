"""Patch-based execution of memory-heavy stages (MCUNetV2's idea; docs/compiler.md "Patch-based stages").

A *stage* is a chain of CONV_2D / DEPTHWISE_CONV_2D ops, each reading only the previous one's output. Run layer by
layer it needs every full intermediate tensor; run tile by tile over its last output, each op computes only the
window of its output that the tile's receptive field needs (the overlapping halo is recomputed), so the stage needs
only tile-sized buffers. The stage's input `x` and output `y` stay whole; where `x` dies in the stage, `y` is placed
over it, `overlap` bytes earlier, so that no tile's output lands on input bytes a later tile still reads.

Exactness is by construction: an op run on a window is the same op with the window's own padding (the positions it
skips are exactly those outside the full input), so every output byte is the one the layer-wise run computes.

The blob construct (docs/blob-format.md §12): a PATCH op (inputs x, the tile table, the last op's tile buffer;
output y; param n_ops) followed by the stage's n_ops op records, whose intermediate tensors are the tile buffers
(shaped as the largest tile). Table row per tile: the last op's tile origin in y (oy0, ox0), then per op its
output rows, columns, pad_top and pad_left for this tile.
"""

from copy import copy
from dataclasses import dataclass, field

import numpy as np

from .ir import Op, Tensor
from .planner import ALIGN, build_buffers, live_bytes, plan_memory

STAGE_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D")
MAX_STAGE_OPS = 8
MAX_EXTRA_MACS = 0.3  # recomputation allowed, as a share of the model's MACs
BANDS = (1, 2, 4)  # full-width tiles of this many output rows
# rows x columns tiles: squares and 1.5 or 2 times as wide (a wider tile shares more of its halo with its row)
BLOCKS = tuple((h, w) for h in (2, 4, 8) for w in (h, h * 3 // 2, 2 * h))


def _round(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class _Geo:
    """One stage op's spatial geometry (lowered params, real tensor shapes)."""
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    h: int
    w: int
    oh: int
    ow: int
    c: int  # output channels
    macs_per_pixel: int


def _geo(graph, op):
    x, w, y = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]]
    kh, kw = int(w.shape[1]), int(w.shape[2])
    sh, sw, dh, dw, pt, pl = op.params[:6]
    oh, ow = int(y.shape[1]), int(y.shape[2])
    return _Geo(kh, kw, sh, sw, dh, dw, pt, pl, int(x.shape[1]), int(x.shape[2]), oh, ow, int(y.shape[3]),
                op.macs // (oh * ow))


def _windows_1d(geos, a, b, axis):
    """For output range [a, b) of the last op along one axis: per op (out_lo, out_len, local pad), and the first
    op's input window [lo, hi)."""
    per = [None] * len(geos)
    for k in range(len(geos) - 1, -1, -1):
        g = geos[k]
        s, d, kk, p, size = (g.sh, g.dh, g.kh, g.pt, g.h) if axis == 0 else (g.sw, g.dw, g.kw, g.pl, g.w)
        lo, hi = a * s - p, (b - 1) * s - p + (kk - 1) * d + 1
        in_lo, in_hi = max(0, lo), min(size, hi)
        pad = p - a * s + (in_lo if k > 0 else 0)  # the first op reads the whole x: origin 0
        per[k] = (a, b - a, pad)
        a, b = in_lo, in_hi
    return per, (a, b)


@dataclass
class Stage:
    first: int  # index in graph.ops of the stage's first op
    n: int
    tile: tuple  # (rows, cols) of the last op's output per tile
    rows: list  # per row band: (per-op windows, input window)
    cols: list
    caps: list  # per op: (max rows, max cols) of its output over the tiles
    overlap: int  # bytes y starts before x (None: x and y do not overlap)
    extra_macs: int
    estimate: int = 0
    table: np.ndarray = field(default=None, repr=False)
    pointwise_first: int = 0  # MACs of the first op when it is a 1x1 CONV_2D (see _cost)


def _bands(size, t):
    return [(a, min(size, a + t)) for a in range(0, size, t)]


def _stage(graph, first, n, tile, x_dies):
    ops = graph.ops[first:first + n]
    geos = [_geo(graph, op) for op in ops]
    last = geos[-1]
    rows = [_windows_1d(geos, a, b, 0) for a, b in _bands(last.oh, tile[0])]
    cols = [_windows_1d(geos, a, b, 1) for a, b in _bands(last.ow, tile[1])]
    caps = [(max(r[0][k][1] for r in rows), max(c[0][k][1] for c in cols)) for k in range(n)]
    work = sum(g.macs_per_pixel * sum(r[0][k][1] for r in rows) * sum(c[0][k][1] for c in cols)
               for k, g in enumerate(geos))
    extra = work - sum(op.macs for op in ops)
    overlap = _overlap(graph, ops, rows, cols) if x_dies else None
    pointwise = ops[0].kind == "CONV_2D" and geos[0].kh == geos[0].kw == 1
    return Stage(first, n, tile, rows, cols, caps, overlap, extra, pointwise_first=ops[0].macs if pointwise else 0)


def _overlap(graph, ops, rows, cols):
    """Smallest D >= 0 such that y placed D bytes before x never overwrites input a later tile reads: tiles run in
    raster order; after tile t its output rectangle is written to y."""
    x, y = graph.tensors[ops[0].inputs[0]], graph.tensors[ops[-1].outputs[0]]
    xw, xc = int(x.shape[2]), int(x.shape[3])
    yw, yc = int(y.shape[2]), int(y.shape[3])
    writes, needs = [], []
    for r in rows:
        (ya, yn, _), (ia, _) = r[0][-1], r[1]
        for c in cols:
            (xa, xn, _), (ja, _) = c[0][-1], c[1]
            writes.append(((ya + yn - 1) * yw + xa + xn) * yc)
            needs.append((ia * xw + ja) * xc)
    d, written = 0, 0
    later = [0] * len(needs)
    low = None
    for t in range(len(needs) - 1, -1, -1):
        later[t] = low
        low = needs[t] if low is None else min(low, needs[t])
    for t, w in enumerate(writes):
        written = max(written, w)
        if later[t] is not None:
            d = max(d, written - later[t])
    return _round(d)


def _chains(graph, taken):
    """Maximal runs of stage-able ops, each reading only its predecessor's output (which nothing else reads)."""
    outs = set(graph.outputs)
    readers = {}
    for op in graph.ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1

    def ok(op):
        if op.kind not in STAGE_KINDS:
            return False
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        return len(x.shape) == 4 and len(y.shape) == 4 and x.shape[0] == 1 and x.dtype == "int8"

    chains, cur = [], []
    for k, op in enumerate(graph.ops):
        if k in taken or not ok(op):
            cur = []
        elif cur and not (op.inputs[0] == graph.ops[cur[-1]].outputs[0]
                          and readers.get(op.inputs[0]) == 1 and op.inputs[0] not in outs):
            cur = [k]
        else:
            cur = cur + [k]
        if cur:
            if len(cur) == 1:
                chains.append(cur)
            else:
                chains[-1] = cur
    return chains


def _size_at(b, t):
    return sum(hi - lo for start, end, lo, hi in (b.segments or [(b.start, b.end, 0, b.size)]) if start <= t <= end)


class _Round:
    """The live-bytes profile of one graph state, for estimating many candidate stages against it."""

    def __init__(self, graph, inplace, chain=True):
        self.chain = chain
        self.buffers, _n = build_buffers(graph, inplace, chain)
        self.live = live_bytes(self.buffers)
        self.owner = {t: b for b in self.buffers for t in b.tensors}
        n = len(self.live)
        self.before, self.after = [0] * (n + 1), [0] * (n + 1)  # max live over times < t, > t
        for t in range(n):
            self.before[t + 1] = max(self.before[t], self.live[t])
        for t in range(n - 1, -1, -1):
            self.after[t] = max(self.after[t + 1], self.live[t])
        self.peak_time = max(range(n), key=lambda t: self.live[t])

    def estimate(self, graph, st):
        """Lower bounds of the arena with stage `st`: while it runs, and over all times (op k is time k + 1).
        Outside the stage nothing changes: x alone before it, y alone after it (the planner's segments)."""
        i, j = st.first + 1, st.first + st.n
        ops = graph.ops[st.first:st.first + st.n]
        bx, by = self.owner[ops[0].inputs[0]], self.owner[ops[-1].outputs[0]]
        if bx.segments and not self.chain:  # x is an earlier stage's output laid over its input: no further
            st.overlap = None
        mine = {id(b): b for b in [bx, by] + [self.owner[op.outputs[0]] for op in ops[:-1]]}.values()
        chans = [graph.tensors[op.outputs[0]].shape[3] for op in ops]
        caps = [_round(r * c * ch) for (r, c), ch in zip(st.caps, chans)]
        tile_peak = caps[-1] + max([caps[0]] + [caps[k - 1] + (caps[k] if k < st.n - 1 else 0)
                                                for k in range(1, st.n)])
        sx = _size_at(bx, i)
        joint = max(by.size, st.overlap + sx) if st.overlap is not None else sx + by.size
        inside = max(self.live[t] - sum(_size_at(b, t) for b in mine) for t in range(i, j + 1)) + joint + tile_peak
        return inside, max(inside, self.before[i], self.after[j + 1])


def _candidates(graph, taken, peak_time, cache):
    """Stages over the op at peak_time: every run of at most MAX_STAGE_OPS chain ops holding it, every tile."""
    macs = sum(op.macs for op in graph.ops) or 1
    io = set(graph.inputs) | set(graph.outputs)
    for chain in _chains(graph, taken):
        for a in range(len(chain)):
            for b in range(a, min(len(chain), a + MAX_STAGE_OPS)):
                first, n = chain[a], b - a + 1
                if not first + 1 <= peak_time <= first + n:
                    continue
                ops = graph.ops[first:first + n]
                x_t = ops[0].inputs[0]
                x_dies = x_t not in graph.outputs and all(x_t not in op.inputs for op in graph.ops[first + 1:]) \
                    and ops[-1].outputs[0] not in io
                y = graph.tensors[ops[-1].outputs[0]]
                oh, ow = int(y.shape[1]), int(y.shape[2])
                for tile in sorted({(h, ow) for h in BANDS if h < oh} | {(h, w) for h, w in BLOCKS if h < oh and w < ow}):
                    key = (ops[0].index, n, tile, x_dies)  # source positions are stable across graph copies
                    if key not in cache:
                        cache[key] = _stage(graph, first, n, tile, x_dies)
                    st = copy(cache[key])
                    st.first = first
                    if st.extra_macs <= MAX_EXTRA_MACS * macs:
                        yield st


TILE_MACS = 1000  # a stage op's fixed cost per tile (kernel set-up, tile geometry, the copy out), in MACs


def _cost(st):
    """What a stage adds to the layer-wise run, in MACs: the recomputed ones, every op's fixed cost per tile, and
    for a 1x1 CONV_2D first in the stage over several tiles its MACs again, 3 times: its windows of x have negative
    padding, which the runtimes' pointwise kernels leave to the generic loop (several times slower)."""
    tiles = len(st.rows) * len(st.cols)
    return st.extra_macs + TILE_MACS * st.n * tiles + (3 * st.pointwise_first if tiles > 1 else 0)


def plan_patches(graph, inplace=True, max_stages=4, slack=0.1):
    """Choose the stages and apply them to `graph`: for targets from the lowest own peak of any stage over the
    layer-wise peak upwards, _reach's greedy pass finds stages fitting each (no stage's output laid over an earlier
    stage's); of the arenas within `slack` of the smallest found, the one that recomputes least is the reference.
    Then _reach's wider search to that arena (stage outputs laid over stage outputs too) may find sets that cost
    less (_cost: recomputed MACs and per-tile work) in no more arena: the cheapest such wins (VWW: the first conv
    alone in full-width bands, recomputing nothing, instead of 4x6 tiles recomputing its K = 27 MACs 1.56 times).
    Returns (stages applied, layer-wise arena)."""
    base = plan_memory(graph, inplace=inplace).arena_bytes
    cache = {}
    r = _Round(graph, inplace)
    targets = []
    for st in _candidates(graph, set(), r.peak_time, cache):
        inside, _overall = r.estimate(graph, st)
        if inside < r.live[r.peak_time]:
            targets.append(inside)
    found = []
    for t in sorted(set(targets)):
        if found and t > (1 + slack) * min(f[0] for f in found):
            break
        found += [got for got in _reach(graph, t, inplace, max_stages, cache, wide=False) if got[0] < base]
    if not found:
        return [], base
    smallest = min(f[0] for f in found)
    pick = min((f for f in found if f[0] <= (1 + slack) * smallest),
               key=lambda f: (sum(s.extra_macs for s in f[2]), f[0]))
    cheaper = [got for got in _reach(graph, pick[0], inplace, max_stages, cache, wide=True)
               if got[0] <= pick[0] and got[1] < pick[1]]
    if cheaper:
        pick = min(cheaper, key=lambda f: f[:2][::-1])
    graph.ops, graph.tensors = pick[3].ops, pick[3].tensors
    return sorted(pick[2], key=lambda s: s.first), base


def _reach(graph, target, inplace, max_stages, cache, wide):
    """Stage sets bringing the arena's peak to target: while the peak is above it, take a stage over the peak op
    whose own peak fits the target: the one leaving the lowest peak anywhere, then recomputing least; `wide`: also
    the one costing least (_cost; later stages fix what it leaves), and stage outputs may be laid over earlier
    stages' outputs. Returns [(planned arena, cost, stages, rewritten copy of the graph)]. Each graph state's
    candidates are estimated once (`cache`): the targets mostly walk the same states."""
    out = []

    def walk(work, stages):
        state = ("state", wide) + tuple((s.first, s.n, s.tile) for s in stages)
        if state not in cache:
            r = _Round(work, inplace, chain=wide)
            taken = {k for s in stages for k in range(s.first - 1, s.first + s.n)}
            found = []
            if len(stages) < max_stages:
                for st in _candidates(work, taken, r.peak_time, cache):
                    st.estimate, overall = r.estimate(work, st)
                    found.append((overall, st.extra_macs, len(st.rows) * len(st.cols), st.estimate, st))
            cache[state] = (r.live[r.peak_time], found)
        peak, found = cache[state]
        if peak <= target:
            if stages:
                if state + ("plan",) not in cache:
                    cache[state + ("plan",)] = plan_memory(work, inplace=inplace, chain=wide).arena_bytes
                out.append((cache[state + ("plan",)], sum(_cost(s) for s in stages), stages, work))
            return
        cands = [(max(c[0], target),) + c[1:] for c in found if c[3] <= target]
        if not cands:
            return
        picks = [min(cands, key=lambda c: c[:4])[4]]
        if wide:
            cheapest = min(cands, key=lambda c: (_cost(c[4]), c[0]))[4]
            picks += [cheapest] if cheapest is not picks[0] else []
        for st in picks:
            w, sts = _clone(work), [copy(s) for s in stages]
            _apply(w, sts, copy(st))
            walk(w, sts)

    walk(_clone(graph), [])
    return out


def _apply(graph, stages, st):
    apply_stage(graph, st)
    for s in stages:  # ops after the new PATCH op moved one place
        if s.first > st.first:
            s.first += 1
    st.first += 1  # its first op now follows its PATCH op
    stages.append(st)


def _clone(graph):
    g = copy(graph)
    g.tensors = list(graph.tensors)
    g.ops = [copy(op) for op in graph.ops]
    for op in g.ops:
        op.inputs, op.outputs, op.options = list(op.inputs), list(op.outputs), dict(op.options)
    return g


def tile_table(st):
    """int32 [tiles, 2 + 4 n]: per tile the last op's origin in y, then per op rows, cols, pad_top, pad_left."""
    table = []
    for r, _ in st.rows:
        for c, _ in st.cols:
            row = [r[-1][0], c[-1][0]]
            for k in range(st.n):
                row += [r[k][1], c[k][1], r[k][2], c[k][2]]
            table.append(row)
    return np.array(table, dtype=np.int32)


def apply_stage(graph, st):
    """Rewrite graph: a PATCH op before the stage's ops, whose intermediate tensors become tile buffers."""
    ops = graph.ops[st.first:st.first + st.n]
    prev = ops[0].inputs[0]
    for k, op in enumerate(ops):
        op.inputs = [prev] + list(op.inputs[1:])
        y = graph.tensors[op.outputs[0]]
        rows, cols = st.caps[k]
        tile = Tensor("%s/tile" % y.name, y.dtype, (1, rows, cols, int(y.shape[3])), y.scale, y.zero_point,
                      y.quant_dim)
        y_full = op.outputs[0]
        op.outputs = [graph.add_tensor(tile)]
        prev = op.outputs[0]
    st.table = tile_table(st)
    tiles = graph.add_const("patch%d/tiles" % st.first, st.table, dtype=np.int32)
    patch = Op("PATCH", [ops[0].inputs[0], tiles, prev], [y_full], index=ops[0].index, params=[st.n],
               options={"source_kind": "PATCH", "overlap": st.overlap})
    graph.ops.insert(st.first, patch)
    return graph


def report(stages, graph):
    """Per stage: ops, tile, tiles, overlap, extra MACs (for the compile report)."""
    out = []
    for s in stages:
        ops = graph.ops[s.first:s.first + s.n]
        out.append({"ops": [s.first - len([t for t in stages if t.first < s.first]) + k for k in range(s.n)],
                    "kinds": [op.kind for op in ops], "tile": list(s.tile), "tiles": len(s.rows) * len(s.cols),
                    "overlap_bytes": s.overlap, "extra_macs": s.extra_macs})
    return out
