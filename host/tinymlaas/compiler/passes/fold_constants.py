"""Pass 1: constant folding of shape sub-graphs.

Keras 3 `Flatten`/`Reshape` export SHAPE -> STRIDED_SLICE -> PACK/CONCATENATION (-> REDUCE_PROD, GATHER) feeding
RESHAPE's shape input. All tensor shapes are static here, so these ops are evaluated with NumPy and their outputs
become constants; ops whose outputs nobody uses any more are then removed.
"""

import numpy as np

from ..errors import CompileError, op_where


def _strided_slice(op, x, begin, end, strides):
    o = op.options
    if o.get("ellipsisMask") or o.get("newAxisMask"):
        raise CompileError("%s: ellipsis/new-axis masks are not supported in shape computations" % op_where(op))
    if o.get("offset"):
        end = begin + end
    slices = []
    for k in range(len(begin)):
        b = None if (o.get("beginMask", 0) >> k) & 1 else int(begin[k])
        e = None if (o.get("endMask", 0) >> k) & 1 else int(end[k])
        s = int(strides[k])
        if (o.get("shrinkAxisMask", 0) >> k) & 1:
            slices.append(int(begin[k]))
        else:
            slices.append(slice(b, e, s))
    return x[tuple(slices)]


def _axes(a, rank):
    return tuple(int(v) % rank for v in np.atleast_1d(a))


def _evaluate(op, ins, out_t):
    k = op.kind
    o = op.options
    if k == "SHAPE":
        return np.array(ins[0], dtype=np.int32)
    if k == "STRIDED_SLICE":
        return _strided_slice(op, *ins)
    if k == "PACK":
        return np.stack(ins, axis=o.get("axis", 0))
    if k == "CONCATENATION":
        return np.concatenate([np.atleast_1d(x) for x in ins], axis=o.get("axis", 0))
    if k == "GATHER":
        if o.get("batchDims", 0):
            raise CompileError("%s: GATHER with batch_dims is not supported" % op_where(op))
        return np.take(ins[0], ins[1], axis=o.get("axis", 0))
    if k in ("REDUCE_PROD", "SUM", "REDUCE_MAX", "REDUCE_MIN"):
        fn = {"REDUCE_PROD": np.prod, "SUM": np.sum, "REDUCE_MAX": np.max, "REDUCE_MIN": np.min}[k]
        x = ins[0]
        return fn(x, axis=_axes(ins[1], max(x.ndim, 1)) if x.ndim else None, keepdims=bool(o.get("keepDims")))
    if k in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        return ins[0].reshape(out_t.shape)
    if k == "CAST":
        return ins[0]
    if k in ("ADD", "SUB", "MUL", "FLOOR_DIV") and all(x.dtype.kind in "iu" for x in ins) and \
            o.get("fusedActivationFunction", "NONE") == "NONE":
        a, b = (x.astype(np.int64) for x in ins)
        return {"ADD": a + b, "SUB": a - b, "MUL": a * b, "FLOOR_DIV": a // np.where(b == 0, 1, b)}[k]
    if k == "FILL":
        return np.full(tuple(int(d) for d in ins[0]), ins[1])
    if k == "RANGE":
        return np.arange(int(ins[0]), int(ins[1]), int(ins[2]))
    return None


# Ops folded when all their inputs are constant (SHAPE only needs its input's static shape).
FOLDABLE = ("SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION", "GATHER", "REDUCE_PROD", "SUM", "REDUCE_MAX",
            "REDUCE_MIN", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CAST", "ADD", "SUB", "MUL", "FLOOR_DIV", "FILL",
            "RANGE")

_NP = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
       "float32": np.float32, "bool": np.bool_}


def _foldable(graph, op):
    if op.kind not in FOLDABLE or len(op.outputs) != 1:
        return False
    if op.kind == "SHAPE":
        return True
    ins = [i for i in op.inputs if i >= 0]
    if not ins or not all(graph.tensors[i].is_const for i in ins):
        return False
    # Quantized arithmetic on constants (e.g. int8 ADD of two weights) is not a shape computation: leave it.
    if op.kind in ("ADD", "SUB", "MUL") and any(graph.tensors[i].quantized for i in ins):
        return False
    return True


_SAME_SHAPE = ("LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "HARD_SWISH", "QUANTIZE",
               "DEQUANTIZE", "SOFTMAX")
_BROADCAST = ("ADD", "MUL", "SUB")


def _infer_shape(graph, op):
    """Recompute an output shape the model may store with a placeholder batch (exported with a dynamic batch
    dimension, TFLite keeps e.g. [1, 1] for a RESHAPE whose real shape is only known from the folded shape input)."""
    if not op.outputs or op.outputs[0] < 0:
        return
    y = graph.tensors[op.outputs[0]]
    ins = [graph.tensors[i] for i in op.inputs if i >= 0]
    shape = None
    if op.kind == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] >= 0 and graph.tensors[op.inputs[1]].is_const:
        new = [int(v) for v in np.asarray(graph.tensors[op.inputs[1]].data).reshape(-1)]
        n = ins[0].elements
        if new.count(-1) == 1:
            known = int(np.prod([d for d in new if d != -1])) or 1
            new[new.index(-1)] = n // known
        if int(np.prod(new)) == n:
            shape = tuple(new)
    elif op.kind in _SAME_SHAPE and ins:
        shape = ins[0].shape
    elif op.kind in _BROADCAST and len(ins) == 2:
        try:
            shape = tuple(np.broadcast_shapes(ins[0].shape, ins[1].shape))
        except ValueError:
            shape = None
    elif op.kind == "FULLY_CONNECTED" and len(ins) >= 2 and len(ins[1].shape) == 2:
        co, ci = ins[1].shape
        if ci and ins[0].elements % ci == 0:
            rows = ins[0].elements // ci
            shape = tuple(ins[0].shape[:-1]) + (co,) if op.options.get("keepNumDims") else (rows, co)
    elif op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D") and \
            len(ins[0].shape) == 4 and len(y.shape) == 4:
        shape = (ins[0].shape[0],) + tuple(y.shape[1:])
    if shape is not None and tuple(shape) != tuple(y.shape):
        y.shape = tuple(shape)


def fold_constants(graph):
    """Evaluate foldable ops in place (in execution order, re-deriving placeholder output shapes on the way);
    returns the number of ops folded."""
    folded = 0
    changed = True
    while changed:
        changed = False
        for op in list(graph.ops):
            if not _foldable(graph, op):
                _infer_shape(graph, op)
                continue
            out = graph.tensors[op.outputs[0]]
            if op.kind == "SHAPE":
                ins = [graph.tensors[op.inputs[0]].shape]
            else:
                ins = [graph.tensors[i].data for i in op.inputs if i >= 0]
            value = _evaluate(op, ins, out)
            if value is None:
                continue
            value = np.asarray(value).astype(_NP.get(out.dtype, np.int32))
            if op.outputs[0] in graph.outputs:
                raise CompileError("%s: the graph output %r is a constant" % (op_where(op), out.name))
            out.data = value
            out.shape = tuple(value.shape)
            graph.ops.remove(op)
            folded += 1
            changed = True
    remove_dead_ops(graph)
    return folded


def remove_dead_ops(graph):
    """Drop ops none of whose outputs is used by another op or the graph."""
    changed = True
    while changed:
        changed = False
        used = set(graph.outputs)
        for op in graph.ops:
            used.update(op.inputs)
        for op in list(graph.ops):
            if not any(t in used for t in op.outputs):
                graph.ops.remove(op)
                changed = True
