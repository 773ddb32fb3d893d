# Model.meta() and Model.inspect(), imported on first use: diagnostics whose code a model that only runs need not
# hold in RAM.

from . import ops as O
from .blob import T_DTYPE, T_SHAPE, DTYPE_NAME


def _hex(b):
    return "".join("%02x" % v for v in b)


def meta(m):
    """The blob's META JSON as a dict (read from the blob on demand), or None."""
    if not m._p.meta:
        return None
    import json
    off, size = m._p.meta
    try:
        return json.loads(bytes(m._src.read(off, size)))
    except (ValueError, OSError):
        return None


def inspect(m):
    """Print a readable summary: sizes, I/O, and the op list."""
    p = m._p
    meta = m.meta() or {}
    print("tinyml model %s: blob %d bytes, sha256 %s..." % (meta.get("name", "?"), p.total_bytes, _hex(p.sha256)[:16]))
    print("  arena %d bytes, runtime scratch %d bytes, %s" % (m.arena_bytes, m.scratch_bytes,
          "weights streamed from file" if m._src.streaming else "weights used in place"))
    for nm, lst in (("input", m.inputs), ("output", m.outputs)):
        for i, d in enumerate(lst):
            print("  %s %d: %s %r scale %g zero_point %d" % (nm, i, d["dtype"], d["shape"], d["scale"], d["zero_point"]))
    for i, op in enumerate(p.ops):
        y = m.tensors[op[2]]
        us = "  %7d us" % m.op_us[i] if m.op_us else ""
        print("  %3d %-18s -> %r %s%s" % (i, O.name(op[0]), y[T_SHAPE], DTYPE_NAME[y[T_DTYPE]], us))
    if "macs" in meta:
        print("  %d MACs" % meta["macs"])
