"""Frontend: parsing, and clear compile-time errors for what a blob cannot hold."""

import numpy as np
import pytest
from tflite_builder import ModelBuilder

from tinymlaas.compiler import CompileError, compile_tflite
from tinymlaas.compiler.frontend import parse_tflite
from tinymlaas.compiler.tflite_schema import schema as S

BO = S.BuiltinOperator


def test_parses_mlperf_kws(mlperf):
    g = parse_tflite(mlperf("kws").read_bytes())
    assert [op.kind for op in g.ops][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    x = g.tensors[g.inputs[0]]
    assert (x.shape, x.dtype) == ((1, 49, 10, 1), "int8")
    w = g.tensors[g.ops[0].inputs[1]]
    assert w.is_const and w.data.shape == (64, 10, 4, 1) and len(w.scale) == 64
    assert g.ops[0].options["fusedActivationFunction"] == "RELU"


def test_rejects_non_tflite():
    with pytest.raises(CompileError, match="not a TFLite flatbuffer"):
        compile_tflite(b"\0" * 64)
    with pytest.raises(CompileError):
        compile_tflite(b"")


def test_rejects_truncated_flatbuffer(mlperf):
    data = mlperf("kws").read_bytes()
    with pytest.raises(CompileError):
        compile_tflite(data[:len(data) // 3])


def _unsupported_op_model():
    mb = ModelBuilder()
    x = mb.tensor([1, 8], "int8", 0.1, 0)
    h = mb.tensor([1, 8], "int8", 0.1, 0)
    y = mb.tensor([1, 8], "int8", 0.1, 0)
    mb.op(BO.RELU, [x], [h])
    mb.op(BO.SQUARED_DIFFERENCE, [h, x], [y])
    mb.inputs, mb.outputs = [x], [y]
    return mb.build()


def test_unsupported_op_is_named_with_position():
    with pytest.raises(CompileError, match=r"SQUARED_DIFFERENCE \(op 1\) is not supported"):
        compile_tflite(_unsupported_op_model())


def test_int16_activations_rejected():
    mb = ModelBuilder()
    x = mb.tensor([1, 8], "int16", 0.1, 0)
    y = mb.tensor([1, 8], "int16", 0.1, 0)
    mb.op(BO.RELU, [x], [y])
    mb.inputs, mb.outputs = [x], [y]
    with pytest.raises(CompileError, match="int16"):
        compile_tflite(mb.build())


def _fc_model(weights_const=True, in_shape=(1, 4)):
    mb = ModelBuilder()
    x = mb.tensor(list(in_shape), "int8", 0.05, 3)
    w = mb.tensor([2, in_shape[-1]], "int8", 0.01, 0,
                  data=np.ones((2, in_shape[-1]), np.int8) if weights_const else None)
    y = mb.tensor(list(in_shape[:-1]) + [2], "int8", 0.1, -1)
    mb.op(BO.FULLY_CONNECTED, [x, w, -1], [y], S.BuiltinOptions.FullyConnectedOptions,
          S.FullyConnectedOptionsT())
    mb.inputs = [x] if weights_const else [x, w]
    mb.outputs = [y]
    return mb.build()


def test_non_constant_weights_rejected():
    with pytest.raises(CompileError, match=r"FULLY_CONNECTED \(op 0\): weights .* not constant"):
        compile_tflite(_fc_model(weights_const=False))


def test_five_dimensional_tensor_rejected():
    with pytest.raises(CompileError, match="rank 5"):
        compile_tflite(_fc_model(in_shape=(1, 1, 1, 1, 4)))


def test_custom_op_rejected():
    mb = ModelBuilder()
    x = mb.tensor([1, 4], "int8", 0.1, 0)
    y = mb.tensor([1, 4], "int8", 0.1, 0)
    code = S.OperatorCodeT()
    code.builtinCode = BO.CUSTOM
    code.deprecatedBuiltinCode = BO.CUSTOM
    code.customCode = b"MyOp"
    mb.opcodes.append(code)
    o = S.OperatorT()
    o.opcodeIndex = 0
    o.inputs = np.array([x], np.int32)
    o.outputs = np.array([y], np.int32)
    mb.ops.append(o)
    mb.inputs, mb.outputs = [x], [y]
    with pytest.raises(CompileError, match=r"CUSTOM op 'MyOp' \(op 0\)"):
        compile_tflite(mb.build())


def test_out_of_range_tensor_index_rejected():
    mb = ModelBuilder()
    x = mb.tensor([1, 4], "int8", 0.1, 0)
    y = mb.tensor([1, 4], "int8", 0.1, 0)
    mb.op(BO.RELU, [x], [y + 5])
    mb.inputs, mb.outputs = [x], [y]
    with pytest.raises(CompileError, match=r"RELU \(op 0\) refers to tensor 6, but the model has 2 tensors"):
        compile_tflite(mb.build())


def test_empty_dimension_rejected():
    mb = ModelBuilder()
    x = mb.tensor([1, 0], "int8", 0.1, 0)
    y = mb.tensor([1, 0], "int8", 0.1, 0)
    mb.op(BO.RELU, [x], [y])
    mb.inputs, mb.outputs = [x], [y]
    with pytest.raises(CompileError, match="dynamic or empty"):
        compile_tflite(mb.build())


def test_corrupted_model_bytes_never_crash(mlperf, rng):
    """Flip bytes all over a real model: the compiler either compiles or raises CompileError, nothing else."""
    data = bytearray(mlperf("kws").read_bytes())
    for _ in range(40):
        bad = bytearray(data)
        for pos in rng.integers(0, len(bad), size=8):
            bad[pos] = int(rng.integers(0, 256))
        try:
            compile_tflite(bytes(bad))
        except CompileError:
            pass


def test_constant_data_input_only_for_add_mul_concatenation(rng):
    from tinymlaas.blob import reference
    from tflite_builder import run_tflm

    mb = ModelBuilder()
    x = mb.tensor([1, 2, 2, 3], "int8", 0.1, 0)
    c = mb.tensor([3], "int8", 0.05, 4, data=np.array([10, -20, 30], np.int8))
    y = mb.tensor([1, 2, 2, 3], "int8", 0.12, -5)
    mb.op(BO.ADD, [x, c], [y], S.BuiltinOptions.AddOptions, S.AddOptionsT())
    mb.inputs, mb.outputs = [x], [y]
    m = mb.build()
    cm = compile_tflite(m)
    xs = rng.integers(-128, 128, size=(1, 2, 2, 3), dtype=np.int8)
    assert np.array_equal(np.asarray(reference.run(cm.blob, [xs])[0]).reshape(1, 2, 2, 3), run_tflm(m, xs)[0])

    mb = ModelBuilder()
    x = mb.tensor([1, 2, 2, 3], "int8", 0.1, 0)
    c = mb.tensor([1, 2, 2, 3], "int8", 0.1, 0, data=np.arange(12, dtype=np.int8).reshape(1, 2, 2, 3))
    y = mb.tensor([1, 1, 1, 3], "int8", 0.1, 0)
    y2 = mb.tensor([1, 2, 2, 3], "int8", 0.1, 0)
    po = S.Pool2DOptionsT()
    po.padding, po.strideH, po.strideW, po.filterHeight, po.filterWidth = S.Padding.VALID, 2, 2, 2, 2
    mb.op(BO.MAX_POOL_2D, [c], [y], S.BuiltinOptions.Pool2DOptions, po)
    mb.op(BO.RELU, [x], [y2])
    mb.inputs, mb.outputs = [x], [y, y2]
    with pytest.raises(CompileError, match=r"MAX_POOL_2D \(op 0\): .*constant"):
        compile_tflite(mb.build())
