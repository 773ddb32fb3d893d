"""TFLite flatbuffer -> IR. Reads one subgraph; refuses what cannot become a blob with an error naming the op."""

import numpy as np

from .errors import CompileError
from .ir import Graph, Op, Tensor
from .tflite_schema import ACTIVATION_NAMES, BUILTIN_NAMES, PADDING_NAMES, TENSOR_TYPE_NAMES, schema

_NUMPY_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
                 "float32": np.float32, "bool": np.bool_}


# Required (non-omitted) leading inputs of the ops the compiler handles; checked before any pass reads them.
REQUIRED_INPUTS = {
    "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "AVERAGE_POOL_2D": 1, "MAX_POOL_2D": 1, "ADD": 2,
    "MUL": 2, "SUB": 2, "SOFTMAX": 1, "PAD": 2, "PADV2": 2, "MEAN": 2, "CONCATENATION": 1, "QUANTIZE": 1,
    "DEQUANTIZE": 1, "RESHAPE": 1, "SQUEEZE": 1, "EXPAND_DIMS": 2, "LOGISTIC": 1, "TANH": 1, "RELU": 1, "RELU6": 1,
    "RELU_N1_TO_1": 1, "LEAKY_RELU": 1, "HARD_SWISH": 1, "SHAPE": 1, "STRIDED_SLICE": 4, "PACK": 1, "GATHER": 2,
    "REDUCE_PROD": 2, "SUM": 2, "REDUCE_MAX": 2, "REDUCE_MIN": 2, "CAST": 1, "FLOOR_DIV": 2, "FILL": 2, "RANGE": 3,
}

_ZP_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def _options(op):
    """The op's builtin options as a plain dict (activation and padding as names)."""
    opts = {}
    if op.builtinOptions is not None:
        for k, v in vars(op.builtinOptions).items():
            if isinstance(v, np.ndarray):
                v = [int(x) for x in v]
            opts[k] = v
    if "fusedActivationFunction" in opts:
        opts["fusedActivationFunction"] = ACTIVATION_NAMES.get(opts["fusedActivationFunction"], "UNKNOWN")
    if "padding" in opts and isinstance(opts["padding"], int):
        opts["padding"] = PADDING_NAMES.get(opts["padding"], "UNKNOWN")
    return opts


def _tensor(t, buffers, idx):
    name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or "t%d" % idx)
    dtype = TENSOR_TYPE_NAMES.get(t.type, "unknown")
    shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
    scale, zp, qdim = (), (), 0
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale) > 0:
        scale = tuple(float(s) for s in np.asarray(q.scale, dtype=np.float32))
        zp = tuple(int(z) for z in q.zeroPoint) if q.zeroPoint is not None else (0,) * len(scale)
        qdim = int(q.quantizedDimension)
        if len(zp) != len(scale):
            raise CompileError("tensor %r has %d scales but %d zero points" % (name, len(scale), len(zp)))
        if not all(np.isfinite(s) and s >= 0 for s in scale):
            raise CompileError("tensor %r has an invalid quantization scale %s" % (name, scale[:4]))
        lo, hi = _ZP_RANGE.get(dtype, (-(1 << 31), (1 << 31) - 1))
        if not all(lo <= z <= hi for z in zp):
            raise CompileError("tensor %r (%s) has a zero point outside [%d, %d]" % (name, dtype, lo, hi))
    data = None
    buf = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
    if buf is not None and (getattr(buf, "offset", 0) or 0) > 1:
        raise CompileError("tensor %r keeps its data outside the flatbuffer (models > 2 GB are not supported)" % name)
    if buf is not None and buf.data is not None and len(buf.data) > 0:
        if dtype not in _NUMPY_DTYPES:
            raise CompileError("constant tensor %r has dtype %s, which the compiler does not support" % (name, dtype))
        raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
        if any(d < 0 for d in shape):
            raise CompileError("constant tensor %r has shape %s" % (name, list(shape)))
        n = int(np.prod(shape)) if shape else 1
        item = np.dtype(_NUMPY_DTYPES[dtype]).itemsize
        if len(raw) != n * item:
            raise CompileError("constant tensor %r holds %d bytes for shape %s of %s" % (name, len(raw),
                                                                                     list(shape), dtype))
        arr = np.frombuffer(raw, dtype=_NUMPY_DTYPES[dtype])
        data = arr.reshape(shape).copy()
    return Tensor(name, dtype, shape, scale, zp, qdim, data)


def parse_tflite(buf):
    """Parse .tflite bytes into a Graph of the first (main) subgraph."""
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise CompileError("not a TFLite flatbuffer (file identifier %r, expected b'TFL3')" % bytes(buf[4:8]))
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    except Exception as e:  # the flatbuffers runtime raises assorted errors on corrupt input
        raise CompileError("corrupt TFLite flatbuffer: %s" % e) from None
    if not model.subgraphs:
        raise CompileError("the model has no subgraph")
    if len(model.subgraphs) > 1:
        raise CompileError("the model has %d subgraphs; control flow (WHILE/IF/CALL_ONCE) is not supported"
                           % len(model.subgraphs))
    g = model.subgraphs[0]
    buffers = model.buffers or []
    tensors = [_tensor(t, buffers, i) for i, t in enumerate(g.tensors or [])]
    n = len(tensors)
    codes = model.operatorCodes or []

    def check_index(i, what):
        if not -1 <= int(i) < n:
            raise CompileError("%s refers to tensor %d, but the model has %d tensors" % (what, int(i), n))

    g_inputs = [int(i) for i in (g.inputs if g.inputs is not None else [])]
    g_outputs = [int(i) for i in (g.outputs if g.outputs is not None else [])]
    for i in g_inputs + g_outputs:
        check_index(i, "a graph input/output")
        if int(i) < 0:
            raise CompileError("a graph input/output is the omitted tensor -1")
    ops = []
    for k, op in enumerate(g.operators or []):
        if not 0 <= op.opcodeIndex < len(codes):
            raise CompileError("op %d has opcode index %d, but the model has %d opcodes" % (k, op.opcodeIndex,
                                                                                          len(codes)))
        code = codes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        kind = BUILTIN_NAMES.get(builtin, "BUILTIN_%d" % builtin)
        if builtin == schema.BuiltinOperator.CUSTOM:
            cname = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            raise CompileError("CUSTOM op %r (op %d) is not supported" % (cname, k))
        ins = [int(i) for i in op.inputs] if op.inputs is not None else []
        outs = [int(i) for i in op.outputs] if op.outputs is not None else []
        for i in ins + outs:
            check_index(i, "%s (op %d)" % (kind, k))
        if not outs or any(i < 0 for i in outs):
            raise CompileError("%s (op %d) has no output tensor" % (kind, k))
        need = REQUIRED_INPUTS.get(kind, 0)
        if len(ins) < need or any(i < 0 for i in ins[:need]) or (kind == "CONCATENATION" and -1 in ins):
            raise CompileError("%s (op %d) has inputs %s; it needs %d" % (kind, k, ins, need))
        for i in ins + outs:
            if i >= 0 and any(d < 1 for d in tensors[i].shape):
                raise CompileError("%s (op %d): tensor %r has shape %s; dynamic or empty dimensions are not "
                                   "supported" % (kind, k, tensors[i].name, list(tensors[i].shape)))
        ops.append(Op(kind, ins, outs, _options(op), k))
    name = ""
    if model.description:
        name = model.description.decode("utf-8", "replace") if isinstance(model.description, bytes) else \
            str(model.description)
    return Graph(tensors, ops, g_inputs, g_outputs, name)
