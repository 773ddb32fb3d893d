"""The embedding output (on-device learning, docs/learning.md): the input of the model's last FULLY_CONNECTED op
becomes one more graph output, after the model's own outputs, so a device's trainable head reads the features
the model's classifier sees. Output 0 keeps its bytes (the ops are the same); the planner keeps the embedding's
buffer live to the end like any graph output."""

from .errors import CompileError


def add_embedding_output(graph):
    """Append the last FULLY_CONNECTED op's input to graph.outputs (in place, before the passes); returns
    {"output": its output index, "op": the FC's source index, "shape": [...], "scale": s, "zero_point": zp}."""
    fcs = [op for op in graph.ops if op.kind == "FULLY_CONNECTED" and not graph.tensors[op.inputs[0]].is_const]
    if not fcs:
        raise CompileError("embedding_output: the model has no FULLY_CONNECTED op whose input is an activation")
    fc = fcs[-1]
    t = fc.inputs[0]
    x = graph.tensors[t]
    if t in graph.inputs:
        raise CompileError("embedding_output: the last FULLY_CONNECTED (op %d) reads the graph input %r, so the "
                           "embedding is the input itself" % (fc.index, x.name))
    if t in graph.outputs:
        raise CompileError("embedding_output: the last FULLY_CONNECTED's input %r is already a graph output" % x.name)
    if x.dtype != "int8" or len(x.scale) != 1:
        raise CompileError("embedding_output: the last FULLY_CONNECTED's input %r is %s%s; a head needs a "
                           "per-tensor int8 embedding" % (x.name, x.dtype, " per-channel" if x.per_channel else ""))
    graph.outputs = list(graph.outputs) + [t]
    return {"output": len(graph.outputs) - 1, "op": fc.index, "shape": list(x.shape), "scale": x.s,
            "zero_point": x.zp}
