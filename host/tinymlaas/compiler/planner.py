"""Static memory planner: one arena, an offset for every activation tensor.

1. Buffers. Every arena tensor is a buffer, except that a VIEW's output joins its input's buffer (same bytes), and
   an in-place-capable op (LUT; ADD/MUL for an operand of the output's shape) writes into an operand's buffer when
   that operand dies at this op and is not a graph input or output.
2. Lifetimes. A buffer lives from the op that first writes it (graph inputs: before the first op) to the last op
   that reads it (graph outputs: after the last op), inclusive, so an op's operands and output always conflict.
3. Placement. Several orderings (by size, by lifetime length, by start, by size x lifetime, by conflict degree) are
   each placed first-fit and best-fit into the lowest gap between already-placed conflicting buffers; the plan with
   the smallest arena wins. The lower bound (largest sum of buffers alive at one op) is reported alongside, so the
   planner's waste is visible; for all five MLPerf Tiny models the plan reaches it.
"""

from dataclasses import dataclass

ALIGN = 4  # every arena offset is a multiple of 4: float32 I/O tensors and word loads in the C runtime


def _round(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    id: int
    size: int
    start: int
    end: int
    tensors: list
    offset: int = -1
    deltas: dict = None  # tensor -> bytes after the buffer's offset (a PATCH stage's input inside its output)
    segments: list = None  # (start, end, lo, hi): bytes [offset+lo, offset+hi) in use from start to end; None: all


def _segs(b):
    return b.segments or [(b.start, b.end, 0, b.size)]


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, keep, other):
        self.parent[self.find(other)] = self.find(keep)


@dataclass
class Plan:
    offsets: dict  # tensor index -> arena offset
    arena_bytes: int
    lower_bound: int
    buffers: list
    strategy: str
    inplace: int  # number of ops planned in place


def _arena_tensors(graph):
    ts = set(graph.inputs) | set(graph.outputs)
    for op in graph.ops:
        ts.update(i for i in op.inputs if i >= 0 and not graph.tensors[i].is_const)
        ts.update(op.outputs)
    return ts


def _inplace_operand(graph, op):
    """Operands op may overwrite with its output (same byte size, elementwise position-for-position)."""
    y = graph.tensors[op.outputs[0]]
    if op.kind == "LUT":
        return [op.inputs[0]]
    if op.kind in ("ADD", "MUL"):
        return [i for i in op.inputs if not graph.tensors[i].is_const and graph.tensors[i].shape == y.shape
                and graph.tensors[i].dtype == y.dtype]
    return []


def build_buffers(graph, inplace=True, chain=True):
    tensors = _arena_tensors(graph)
    uf = _UnionFind()
    for t in tensors:
        uf.find(t)
    for op in graph.ops:
        if op.kind == "VIEW":
            uf.union(op.inputs[0], op.outputs[0])
    io = set(graph.inputs) | set(graph.outputs)
    n = len(graph.ops)

    def lifetimes():
        start, end = {}, {}
        for t in tensors:
            r = uf.find(t)
            start.setdefault(r, n + 1)
            end.setdefault(r, -1)
        for t in graph.inputs:
            start[uf.find(t)] = 0
        for t in graph.outputs:
            end[uf.find(t)] = n + 1
        for k, op in enumerate(graph.ops, start=1):
            for t in op.outputs:
                r = uf.find(t)
                start[r] = min(start[r], k)
                end[r] = max(end[r], k)
            for t in op.inputs:
                if t in tensors:
                    r = uf.find(t)
                    end[r] = max(end[r], k)
                    start[r] = min(start[r], k)
        for k, op in enumerate(graph.ops, start=1):
            if op.kind == "PATCH":  # its operands and output live through the stage's ops, run once per tile
                for t in list(op.inputs) + list(op.outputs):
                    if t in tensors:
                        r = uf.find(t)
                        start[r], end[r] = min(start[r], k), max(end[r], k + op.params[0])
        for r in start:  # a graph input no op reads still occupies its bytes while the caller writes it
            end[r] = max(end[r], start[r])
        return start, end

    n_inplace = 0
    if inplace:
        start, end = lifetimes()
        io_roots = {uf.find(t) for t in io}
        for k, op in enumerate(graph.ops, start=1):
            if op.kind == "VIEW":
                continue
            y = op.outputs[0]
            if uf.find(y) in io_roots:
                continue
            for cand in _inplace_operand(graph, op):
                r = uf.find(cand)
                if r in io_roots or end[r] != k:
                    continue
                if max(graph.tensors[t].nbytes for t in tensors if uf.find(t) == r) != graph.tensors[y].nbytes:
                    continue
                ry = uf.find(y)
                uf.union(cand, y)
                end[r] = max(end[r], end[ry])
                n_inplace += 1
                break
    start, end = lifetimes()
    groups = {}
    for t in sorted(tensors):
        groups.setdefault(uf.find(t), []).append(t)
    size = {r: _round(max(graph.tensors[t].nbytes for t in ts)) for r, ts in groups.items()}
    deltas, segments = {}, {}
    for k, op in enumerate(graph.ops, start=1):
        # A PATCH stage whose input dies in it: its output y starts `overlap` bytes before x in one buffer.
        if op.kind == "PATCH" and op.options.get("overlap") is not None:
            rx, ry = uf.find(op.inputs[0]), uf.find(op.outputs[0])
            io_out = {uf.find(t) for t in graph.outputs}
            if rx == ry or end[rx] != k + op.params[0] or rx in io_out or ry in io_out or ry in segments \
                    or (rx in segments and not chain) or start[ry] != k:
                continue
            d, sx, sy = op.options["overlap"], size[rx], size[ry]
            for t in groups[rx]:
                deltas[t] = deltas.get(t, 0) + d
            groups[ry] += groups.pop(rx)
            size[ry] = max(sy, d + size.pop(rx))
            # x alone before the stage (x itself an earlier stage's output over its input: that one's segments, d
            # bytes on), x and y during it, y alone after it
            old = segments.pop(rx, [(start[rx], end[rx], 0, sx)])
            before = [(s, min(e, k - 1), lo + d, hi + d) for s, e, lo, hi in old]
            x_hi = max(hi for s, e, lo, hi in old if s <= k <= e)  # x's own bytes while the stage runs
            segments[ry] = before + [(k, end[rx], 0, max(sy, d + x_hi)), (end[rx] + 1, end[ry], 0, sy)]
            segments[ry] = [sg for sg in segments[ry] if sg[0] <= sg[1]]
            start[ry] = start[rx]
            uf.union(ry, rx)
    buffers = []
    for i, (r, ts) in enumerate(sorted(groups.items())):
        buffers.append(Buffer(i, size[r], start[r], end[r], ts, -1, {t: deltas[t] for t in ts if t in deltas},
                              segments.get(r)))
    return buffers, n_inplace


def _conflict(a, b):
    return a.start <= b.end and b.start <= a.end


def lower_bound(buffers):
    """Largest total size of buffers alive at one time: no plan can use less."""
    if not buffers:
        return 0
    return max(live_bytes(buffers))


def live_bytes(buffers):
    """Bytes in use at each time 0 .. last end."""
    live = [0] * (max(b.end for b in buffers) + 1 if buffers else 1)
    for b in buffers:
        for start, end, lo, hi in _segs(b):
            for t in range(start, end + 1):
                live[t] += hi - lo
    return live


def _clashes(a, oa, b, ob):
    """Open intervals of offsets for b that overlap buffer a (at oa) while both are in use."""
    return [(oa + la - hb, oa + ha - lb) for sa, ea, la, ha in _segs(a) for sb, eb, lb, hb in _segs(b)
            if sa <= eb and sb <= ea]


def _place_segmented(b, placed, offsets):
    """First fit for a buffer when it, or one it conflicts with, is in use in segments (PATCH stages)."""
    bad = [iv for p in placed if _conflict(p, b) for iv in _clashes(p, offsets[p.id], b, 0)]
    for o in sorted({0} | {hi for lo, hi in bad}):
        if o >= 0 and not any(lo < o < hi for lo, hi in bad):
            return o


def _place(buffers, order, best_fit):
    placed = []
    offsets = {}
    for b in order:
        if b.segments or any(p.segments and _conflict(p, b) for p in placed):
            offsets[b.id] = _place_segmented(b, placed, offsets)
            placed.append(b)
            continue
        busy = sorted((offsets[p.id], offsets[p.id] + p.size) for p in placed if _conflict(p, b))
        candidates = []
        cursor = 0
        for lo, hi in busy:
            if lo - cursor >= b.size:
                candidates.append((lo - cursor, cursor))
            cursor = max(cursor, hi)
        if best_fit and candidates:
            offset = min(candidates)[1]
        elif candidates:
            offset = candidates[0][1]
        else:
            offset = cursor
        offsets[b.id] = offset
        placed.append(b)
    peak = max((offsets[b.id] + b.size for b in buffers), default=0)
    return peak, offsets


def _orders(buffers):
    degree = {b.id: sum(b2.size for b2 in buffers if b2 is not b and _conflict(b, b2)) for b in buffers}
    return {
        "size": sorted(buffers, key=lambda b: (-b.size, b.start)),
        "lifetime": sorted(buffers, key=lambda b: (-(b.end - b.start), -b.size)),
        "start": sorted(buffers, key=lambda b: (b.start, -b.size)),
        "area": sorted(buffers, key=lambda b: (-b.size * (b.end - b.start + 1), b.start)),
        "conflict": sorted(buffers, key=lambda b: (-(degree[b.id] + b.size), -b.size)),
    }


def plan_memory(graph, inplace=True, chain=True):
    buffers, n_inplace = build_buffers(graph, inplace, chain)
    best = None
    for name, order in _orders(buffers).items():
        for best_fit in (False, True):
            peak, offsets = _place(buffers, order, best_fit)
            if best is None or peak < best[0]:
                best = (peak, offsets, "%s/%s" % (name, "best-fit" if best_fit else "first-fit"))
    peak, offsets, strategy = best if best else (0, {}, "empty")
    tensor_offsets = {}
    for b in buffers:
        b.offset = offsets[b.id]
        for t in b.tensors:
            tensor_offsets[t] = b.offset + (b.deltas or {}).get(t, 0)
    plan = Plan(tensor_offsets, peak, lower_bound(buffers), buffers, strategy, n_inplace)
    validate_plan(plan)
    return plan


def validate_plan(plan):
    """Raise AssertionError if two buffers alive at the same time overlap in the arena or one leaves it."""
    bs = plan.buffers
    for b in bs:
        if b.offset < 0 or b.offset % ALIGN or b.offset + b.size > plan.arena_bytes:
            raise AssertionError("buffer %d at %d+%d outside the %d B arena" % (b.id, b.offset, b.size,
                                                                               plan.arena_bytes))
    for i, a in enumerate(bs):
        for b in bs[i + 1:]:
            if _conflict(a, b) and any(lo < b.offset < hi for lo, hi in _clashes(a, a.offset, b, 0)):
                raise AssertionError("buffers %d (tensors %s, ops %d..%d) and %d (tensors %s, ops %d..%d) overlap"
                                     % (a.id, a.tensors, a.start, a.end, b.id, b.tensors, b.start, b.end))
