"""The tinymlaas model compiler: TFLite int8 flatbuffer -> tinymlaas blob (docs/compiler.md, docs/blob-format.md).

    from tinymlaas.compiler import compile_tflite
    cm = compile_tflite("model.tflite")
    open("model.tmlb", "wb").write(cm.blob)
    print(cm.arena_bytes, cm.macs, cm.ops, cm.report())
"""

from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..blob import format as F
from . import backend
from .embedding import add_embedding_output
from .errors import CompileError
from .frontend import parse_tflite
from .passes.fold_constants import fold_constants, remove_dead_ops
from .passes.fuse import fuse_activations, fuse_pads
from .passes.lower import lower
from .passes.lut import lower_to_lut, requantize_concat_inputs
from .passes.views import make_views
from .patches import plan_patches, report as patch_report
from .planner import plan_memory

__all__ = ["compile_tflite", "compile_graph", "run_passes", "CompiledModel", "CompileError"]


@dataclass
class CompiledModel:
    blob: bytes
    arena_bytes: int
    macs: int
    ops: list  # blob op names in execution order
    tflite_bytes: int
    inputs: list
    outputs: list
    source_ops: list  # TFLite op names in source order
    arena_lower_bound: int = 0
    arena_layerwise: int = 0  # the arena without patch-based stages (equal to arena_bytes when none is used)
    patches: list = field(default_factory=list)  # the patch-based stages (docs/compiler.md)
    plan_strategy: str = ""
    const_bytes: int = 0
    passes: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)  # per blob op: name, source op, output shape, MACs, arena span
    memory_plan: list = field(default_factory=list)  # per arena buffer: offset, bytes, live op range, tensors

    def report(self, detail=False):
        """A JSON-able summary (what `tinymlaas compile --json` prints)."""
        return {
            "blob_bytes": len(self.blob),
            "tflite_bytes": self.tflite_bytes,
            "arena_bytes": self.arena_bytes,
            "arena_lower_bound": self.arena_lower_bound,
            "arena_layerwise": self.arena_layerwise,
            "patches": self.patches,
            "plan_strategy": self.plan_strategy,
            "const_bytes": self.const_bytes,
            "macs": self.macs,
            "ops": self.ops,
            "source_ops": self.source_ops,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "passes": self.passes,
            **({"layers": self.layers, "memory_plan": self.memory_plan} if detail else {}),
        }


def _io(graph, indices):
    out = []
    for i in indices:
        t = graph.tensors[i]
        out.append({"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                    "scale": t.s if t.quantized else None, "zero_point": t.zp if t.quantized else None})
    return out


def _check_io(graph):
    for kind, idx in (("input", graph.inputs), ("output", graph.outputs)):
        for i in idx:
            t = graph.tensors[i]
            if t.dtype not in ("int8", "float32"):
                raise CompileError("graph %s %r is %s; only int8 and float32 are supported" % (kind, t.name, t.dtype))
            if t.is_const:
                raise CompileError("graph %s %r is a constant" % (kind, t.name))
            if len(t.shape) > F.MAX_RANK:
                raise CompileError("graph %s %r has rank %d > 4" % (kind, t.name, len(t.shape)))
    if not graph.inputs or not graph.outputs:
        raise CompileError("the model has no inputs or no outputs")


def _views_to_copies(graph):
    """A view from a graph input to a graph output cannot share bytes (both are the caller's); copy instead."""
    n = 0
    for op in graph.ops:
        if op.kind == "VIEW" and op.inputs[0] in graph.inputs and op.outputs[0] in graph.outputs:
            op.kind = "COPY"
            n += 1
    return n


def run_passes(graph, fuse=True):
    """Passes 1-5 (docs/compiler.md) in place on `graph`; returns per-pass statistics. After this every op is a
    blob op (or a VIEW) with its integer params, ready for the memory planner."""
    _check_io(graph)
    stats = {}
    stats["folded_constant_ops"] = fold_constants(graph)
    stats["views"] = make_views(graph)
    stats["luts"] = lower_to_lut(graph)
    stats["concat_requantizations"] = requantize_concat_inputs(graph)
    # Activations first: a RELU folded into a convolution's clamp then lets a following PAD fuse into MAX_POOL_2D.
    stats["fused_activations"] = fuse_activations(graph) if fuse else 0
    stats["fused_pads"] = fuse_pads(graph) if fuse else 0
    stats["copies"] = _views_to_copies(graph)
    remove_dead_ops(graph)
    lower(graph)
    return stats


def compile_graph(graph, tflite=b"", name="", inplace=True, fuse=True, meta=None, patches=True):
    source_ops = [op.kind for op in graph.ops]
    stats = run_passes(graph, fuse=fuse)
    stages, layerwise = plan_patches(graph, inplace=inplace) if patches else ([], None)
    plan = plan_memory(graph, inplace=inplace)
    stats["inplace_ops"] = plan.inplace
    macs = sum(op.macs for op in graph.ops)
    inputs, outputs = _io(graph, graph.inputs), _io(graph, graph.outputs)
    meta = {
        "name": name or graph.name,
        "source_sha256": backend.source_sha256(tflite),
        "compiler": "tinymlaas " + __version__,
        "ops": source_ops,
        "macs": macs,
        "inputs": inputs,
        "outputs": outputs,
        **(meta or {}),     # what the caller knows about the source (e.g. an ONNX model's input layout)
    }
    blob, const_bytes = backend.emit(graph, plan, meta)
    layers, k = [], 0
    for op in graph.ops:
        if op.kind == "VIEW":
            continue
        y = graph.tensors[op.outputs[0]]
        layers.append({"index": k, "op": op.kind, "source": "%s (op %d)" % (op.options.get("source_kind", op.kind),
                                                                           op.index),
                       "output_shape": list(y.shape), "macs": op.macs,
                       "output_offset": plan.offsets[op.outputs[0]], "output_bytes": y.nbytes})
        k += 1
    memory_plan = [{"offset": b.offset, "bytes": b.size, "live_ops": [b.start, b.end],
                    "tensors": [graph.tensors[t].name for t in b.tensors]}
                   for b in sorted(plan.buffers, key=lambda b: (b.offset, b.start))]
    return CompiledModel(blob=blob, arena_bytes=plan.arena_bytes, macs=macs,
                         ops=[op.kind for op in graph.ops if op.kind != "VIEW"], tflite_bytes=len(tflite),
                         inputs=inputs, outputs=outputs, source_ops=source_ops,
                         arena_lower_bound=plan.lower_bound, arena_layerwise=layerwise or plan.arena_bytes,
                         patches=patch_report(stages, graph), plan_strategy=plan.strategy, const_bytes=const_bytes,
                         passes=stats, layers=layers, memory_plan=memory_plan)


def compile_tflite(path_or_bytes, name=None, inplace=True, fuse=True, meta=None, patches=True,
                   embedding_output=False):
    """Compile a .tflite model (path or bytes) into a blob. Raises CompileError for anything unsupported.

    Options: `name` (META name; default the file stem or the model description), `inplace` (let LUT/ADD/MUL write
    over a dying operand; default True), `fuse` (PAD and standalone-activation fusion; default True). Every
    combination gives a bit-identical function; the options only trade arena bytes and op count. `patches`: run
    memory-heavy stages tile by tile where that lowers the arena (default True; costs recomputed MACs). `meta`:
    extra META entries (JSON-able). `embedding_output`: the last FULLY_CONNECTED op's input becomes one more graph
    output (after the model's own; META "embedding" says which), for a device's trainable head."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        default_name = ""
    else:
        p = Path(path_or_bytes)
        data = p.read_bytes()
        default_name = p.stem
    graph = parse_tflite(data)
    if embedding_output:
        meta = dict(meta or {}, embedding=add_embedding_output(graph))
    return compile_graph(graph, data, name or default_name or graph.name, inplace=inplace, fuse=fuse, meta=meta,
                         patches=patches)
