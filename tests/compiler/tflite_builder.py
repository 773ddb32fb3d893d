"""Build small TFLite flatbuffers directly with the schema's object API (no converter, milliseconds per model).

Used to run single ops in the real TFLite Micro interpreter with chosen quantization parameters."""

import numpy as np

from tinymlaas.compiler.tflite_schema import schema as S

_TYPES = {"int8": S.TensorType.INT8, "int32": S.TensorType.INT32, "float32": S.TensorType.FLOAT32,
          "int16": S.TensorType.INT16, "int64": S.TensorType.INT64}


class ModelBuilder:
    def __init__(self):
        self.tensors = []
        self.buffers = [S.BufferT()]  # buffer 0 is the empty sentinel
        self.ops = []
        self.opcodes = []
        self.inputs = []
        self.outputs = []

    def tensor(self, shape, dtype="int8", scale=None, zero_point=None, data=None, name=None, quant_dim=0):
        t = S.TensorT()
        t.shape = np.array(shape, dtype=np.int32)
        t.type = _TYPES[dtype]
        t.name = (name or "t%d" % len(self.tensors)).encode()
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale = np.atleast_1d(np.array(scale, dtype=np.float32))
            q.zeroPoint = np.atleast_1d(np.array(zero_point if zero_point is not None else 0, dtype=np.int64))
            if len(q.zeroPoint) != len(q.scale):
                q.zeroPoint = np.zeros(len(q.scale), dtype=np.int64) + q.zeroPoint[0]
            q.quantizedDimension = quant_dim
            t.quantization = q
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data, dtype=dtype).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, builtin, inputs, outputs, options_type=0, options=None):
        code = S.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = 1
        if builtin not in [c.builtinCode for c in self.opcodes]:
            self.opcodes.append(code)
        o = S.OperatorT()
        o.opcodeIndex = [c.builtinCode for c in self.opcodes].index(builtin)
        o.inputs = np.array(inputs, dtype=np.int32)
        o.outputs = np.array(outputs, dtype=np.int32)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.ops.append(o)

    def build(self):
        import flatbuffers

        g = S.SubGraphT()
        g.tensors = self.tensors
        g.operators = self.ops
        g.inputs = np.array(self.inputs, dtype=np.int32)
        g.outputs = np.array(self.outputs, dtype=np.int32)
        m = S.ModelT()
        m.version = 3
        m.operatorCodes = self.opcodes
        m.subgraphs = [g]
        m.buffers = self.buffers
        m.description = b"tinymlaas test model"
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def unary_model(builtin, in_scale, in_zp, out_scale, out_zp, options_type=0, options=None, n=256):
    """An [1, n] int8 -> int8 model of one elementwise op."""
    mb = ModelBuilder()
    x = mb.tensor([1, n], "int8", in_scale, in_zp)
    y = mb.tensor([1, n], "int8", out_scale, out_zp)
    mb.op(builtin, [x], [y], options_type, options)
    mb.inputs, mb.outputs = [x], [y]
    return mb.build()


def run_tflm(model, *inputs):
    """Outputs of the model in the real TFLite Micro interpreter."""
    from tflite_micro.python.tflite_micro import runtime

    n_outputs = len(S.ModelT.InitFromPackedBuf(bytearray(model), 0).subgraphs[0].outputs)
    interp = runtime.Interpreter.from_bytes(model)
    for k, x in enumerate(inputs):
        interp.set_input(x, k)
    interp.invoke()
    return [interp.get_output(k) for k in range(n_outputs)]
