"""Pass 2: RESHAPE, SQUEEZE and EXPAND_DIMS change no byte, so they become VIEW ops: the planner gives the
output the input's arena bytes and the backend emits nothing (or a COPY where sharing is impossible, e.g. a graph
output that is a view of a graph input)."""

from ..errors import CompileError, op_where

VIEW_KINDS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")


def make_views(graph):
    n = 0
    for op in graph.ops:
        if op.kind not in VIEW_KINDS:
            continue
        x = graph.tensors[op.inputs[0]]
        y = graph.tensors[op.outputs[0]]
        if x.elements != y.elements:
            raise CompileError("%s: reshapes %s (%d elements) to %s (%d elements)" % (op_where(op), x.shape,
                                                                                        x.elements, y.shape,
                                                                                        y.elements))
        if x.dtype != y.dtype or (x.quantized and not x.same_quant(y)):
            raise CompileError("%s: changes dtype or quantization, which a view cannot" % op_where(op))
        op.options = {"source_kind": op.kind}
        op.kind = "VIEW"
        op.inputs = [op.inputs[0]]
        n += 1
    return n
