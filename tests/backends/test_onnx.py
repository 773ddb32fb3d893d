"""Float ONNX -> int8 blob (tmlb-int8, kind "onnx"): models written with onnx.helper as torch.onnx.export writes them,
judged by onnx's reference evaluator (float), TFLite Micro (int8) and the MicroPython runtime (the device)."""

import subprocess
import sys

import numpy as np
import onnx
import pytest

from tinymlaas.backends import BackendError, SourceModel, Target, backend
from tinymlaas.blob.reader import parse
from tinymlaas.blob.reference import Executor

from onnx_models import branches, dynamic_flatten, from_small_cnn, op_zoo, with_node
from test_int8 import _int8_inputs, _tflm


def _compile(model, rows, **options):
    be = backend("tmlb-int8")
    source = SourceModel("onnx", model.SerializeToString(), name=model.graph.name)
    options = dict({"quantize": True, "representative": rows}, **options)
    tflite, _ = be.int8_tflite(source, options)
    return be.compile(source, Target("tinyml-mpy"), options), tflite


def _judged(model, art, tflite, rows, tolerance):
    """Run NCHW `rows` through the float-I/O blob: each output equal to TFLM's on the .tflite and within
    `tolerance` (relative to max(1, |output|)) of onnx's float result; returns how many argmaxes agree."""
    from tinymlaas.backends.onnx_import import reference_outputs
    blob, agree = parse(art.data), 0
    for row, want in zip(rows, reference_outputs(model, rows)):
        nhwc, want = row.transpose(1, 2, 0)[None], want.reshape(-1)
        got = Executor(blob).run([nhwc])[0].reshape(-1)
        assert np.array_equal(got, _tflm(tflite, [nhwc])[0].reshape(-1))
        assert np.max(np.abs(got - want)) < tolerance * max(1.0, float(np.max(np.abs(want))))
        agree += int(np.argmax(got) == np.argmax(want))
    return agree


@pytest.fixture(scope="module")
def cnn(small_cnn, quadrant):
    model = from_small_cnn(small_cnn)
    x_train = quadrant["x_train"].transpose(0, 3, 1, 2)            # NCHW, as a PyTorch user holds the data
    art, tflite = _compile(model, x_train)
    return model, art, tflite


def test_pytorch_style_cnn_becomes_an_int8_blob_bit_exact_with_tflm(cnn, small_cnn, quadrant):
    model, art, tflite = cnn
    x_val = quadrant["x_val"].transpose(0, 3, 1, 2)
    # The ONNX file is the trained Keras CNN in NCHW: onnx's reference evaluator agrees with Keras.
    from onnx.reference import ReferenceEvaluator
    ref_float = ReferenceEvaluator(model).run(None, {"x": x_val[:50]})[0]
    np.testing.assert_allclose(ref_float, small_cnn.predict(quadrant["x_val"][:50], verbose=0), atol=1e-4)
    assert art.report["onnx"]["input_transpose"] == [0, 2, 3, 1] and art.report["onnx"]["float_max_abs_diff"] < 1e-4
    # BatchNormalization folded, depthwise Conv kept, Flatten a view, ReLUs fused: no MUL, ADD, LUT or TRANSPOSE;
    # the depthwise conv runs as a patch-based stage (PATCH, docs/compiler.md).
    assert art.report["ops"] == ["CONV_2D", "PATCH", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "CONV_2D", "FULLY_CONNECTED",
                                 "FULLY_CONNECTED"]
    blob = parse(art.data)
    assert list(blob.tensors[blob.inputs[0]].shape) == [1, 8, 8, 1]       # the blob holds images NHWC
    inputs = _int8_inputs(blob, quadrant["x_val"][:60])
    ref = [Executor(blob).run([x])[0] for x in inputs]
    for r, j in zip(ref, _tflm(tflite, inputs)):
        assert np.array_equal(r.reshape(-1), j.reshape(-1))
    # Accuracy of the int8 variant through the blob, as the catalogue measures it, next to the float model's.
    from tinymlaas.service.catalog import blob_accuracy
    y_val = quadrant["y_val"]
    float_acc = float(np.mean(np.argmax(ReferenceEvaluator(model).run(None, {"x": x_val})[0], 1) == y_val))
    int8_acc = blob_accuracy(art.data, x_val, y_val, art.report["onnx"]["input_transpose"])
    assert float_acc > 0.7 and int8_acc >= float_acc - 0.03, (float_acc, int8_acc)


def test_the_onnx_blob_runs_in_micropython_and_c_like_tflm(cnn, quadrant):
    from tinymlaas.verify.micropython import MicroPythonRuntime
    _, art, tflite = cnn
    inputs = _int8_inputs(parse(art.data), quadrant["x_val"][:8])
    outs = MicroPythonRuntime(heap="512k").run(art.data, [[x] for x in inputs])
    judge = _tflm(tflite, inputs)
    for got, want in zip(outs, judge):
        assert np.array_equal(np.asarray(got[0]).reshape(-1), want.reshape(-1))
    from tinymlaas.devices.cruntime import CRuntime                  # the C runtime (host build) too
    for got, want in zip(CRuntime().run(art.data, [[x] for x in inputs]), judge):
        assert np.array_equal(np.asarray(got[0]).reshape(-1), want.reshape(-1))


@pytest.mark.parametrize("opset", [13, 21])
def test_op_zoo_at_the_ends_of_the_opset_range(opset):
    model = op_zoo(opset)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (300, 2, 8, 8)).astype(np.float32)
    art, tflite = _compile(model, x[:200], quantize="float")
    assert art.features["float_io"] and art.report["onnx"]["opset"] == opset
    # PyTorch's symmetric stride-2 padding becomes a PAD fused into the convolution; no TRANSPOSE anywhere.
    assert "PAD" in art.report["source_ops"] and "PAD" not in art.ops and art.report["ops"].count("CONV_2D") == 2
    assert {"ADD", "MUL", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "LUT", "SOFTMAX"} <= set(art.ops)
    agree = _judged(model, art, tflite, x[200:], 0.05)
    assert agree >= 90
    # The catalogue's accuracy measure turns the 2-channel NCHW samples into the blob's NHWC the same way.
    from tinymlaas.backends.onnx_import import reference_outputs
    from tinymlaas.service.catalog import blob_accuracy
    labels = [int(np.argmax(w)) for w in reference_outputs(model, x[200:])]
    assert blob_accuracy(art.data, x[200:], labels, art.report["onnx"]["input_transpose"]) == agree / 100
    # The blob's META says the callers' layout, and `infer` turns NCHW rows into the blob's NHWC bytes.
    from tinymlaas.service.inference import ModelIO
    io_ = ModelIO.of(art.data)
    assert parse(art.data).meta["input_layout"] == "NCHW" and io_.describe() == "1x2x8x8 float32"
    assert io_.encode(x[200:203]) == [r.transpose(1, 2, 0).astype("<f4").tobytes() for r in x[200:203]]


@pytest.mark.parametrize("opset", [17, 18])     # ReduceMean's axes: an attribute until 17, an input from 18
def test_normalization_pad_concat_and_mean(opset):
    model = branches(opset)
    x = np.random.default_rng(2).uniform(0, 1, (260, 3, 6, 6)).astype(np.float32)
    art, tflite = _compile(model, x[:200], quantize="float")
    assert {"CONCATENATION", "MEAN", "ADD", "MUL"} <= set(art.ops) and "PAD" not in art.ops
    _judged(model, art, tflite, x[200:], 0.1)


def test_a_dynamic_batch_flatten_is_computed_at_translation():
    model = dynamic_flatten()
    x = np.random.default_rng(3).normal(0, 1, (230, 2, 6, 6)).astype(np.float32)
    art, tflite = _compile(model, x[:200], quantize="float")
    assert art.report["ops"] == ["QUANTIZE", "CONV_2D", "FULLY_CONNECTED", "DEQUANTIZE"]
    _judged(model, art, tflite, x[200:], 0.1)
    # The shape ops compute shapes only: on an activation they are refused, naming the node.
    bad = with_node("Cast", "/Cast", to=onnx.TensorProto.FLOAT)
    with pytest.raises(BackendError, match=r"Cast \(node '/Cast', #1\): supported on constants and shapes"):
        _compile(bad, np.zeros((4, 6), np.float32))


def test_refusals_name_the_op_and_the_node(quadrant):
    be = backend("tmlb-int8")

    def compile_(model, rows=np.zeros((4, 6), np.float32)):
        data = model if isinstance(model, bytes) else model.SerializeToString()
        return be.compile(SourceModel("onnx", data), Target("tinyml-mpy"), {"quantize": True, "representative": rows})

    with pytest.raises(BackendError, match=r"ONNX op Sin \(node 'odd_one', #1\) is not supported \(supported: Add"):
        compile_(with_node("Sin", "odd_one"))
    with pytest.raises(BackendError, match="ONNX opset 12 is not supported"):
        compile_(with_node("Relu", "r", opset=12))
    with pytest.raises(BackendError, match="not a valid ONNX model"):
        compile_(from_small_cnn.__doc__.encode())
    with pytest.raises(BackendError, match="representative dataset"):
        compile_(with_node("Relu", "r"), rows=None)
    with pytest.raises(BackendError, match=r"Softmax \(node 'sm', #1\): softmax over the last axis"):
        model = with_node("Softmax", "sm")
        model.graph.node[1].attribute.append(onnx.helper.make_attribute("axis", 0))
        compile_(model)


def test_models_add_refuses_an_unsupported_onnx_op_and_registers_nothing(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(with_node("Sin", "/block/Sin").SerializeToString())
    np.save(tmp_path / "x.npy", np.zeros((4, 6), np.float32))
    cmd = [sys.executable, "-m", "tinymlaas", "models", "add", str(path), "--name", "net", "--representative",
           str(tmp_path / "x.npy"), "--data", str(tmp_path / "data")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "nothing registered" in r.stderr and "ONNX op Sin (node '/block/Sin', #1)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "tinymlaas", "models", "list", "--json", "--data",
                        str(tmp_path / "data")], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "[]"


def test_truncated_and_mutated_onnx_files_only_ever_give_a_backend_error(request):
    """Seeded truncations and byte mutations of the op zoo: loading and translating either works or raises
    BackendError (never another exception). 200 cases by default (at most 50 translated), 3,000 with --fuzz-long."""
    from tinymlaas.backends import onnx_import
    long = request.config.getoption("--fuzz-long")
    count, translate = (3000, 3000) if long else (200, 50)
    data = op_zoo(17).SerializeToString()
    rng = np.random.default_rng(0)
    loaded = 0
    for i in range(count):
        b = bytearray(data)
        if i % 3 == 0:
            b = b[:int(rng.integers(0, len(b)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        try:
            model = onnx_import.load(bytes(b))
            if loaded < translate:
                loaded += 1
                onnx_import.to_tf(model)
        except BackendError:
            pass
    assert loaded > 0


def test_compile_points_an_onnx_file_to_models_add(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(with_node("Relu", "r").SerializeToString())
    r = subprocess.run([sys.executable, "-m", "tinymlaas", "compile", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "tinymlaas models add %s --name NAME --representative X.npy" % path in r.stderr
