"""The int8 blob back-end ("tmlb-int8") through the plugin interface: int8 .tflite, float Keras, SavedModel."""

import hashlib
import io
import zipfile

import numpy as np
import pytest

from tinymlaas.backends import BackendError, SourceModel, Target, backend
from tinymlaas.blob.reader import parse
from tinymlaas.blob.reference import Executor


def _tflm(tflite, inputs):
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(tflite)
    outs = []
    for x in inputs:
        interp.set_input(x, 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)))
    return outs


def _int8_inputs(blob, x_float):
    """Float samples quantized with the blob's input scale / zero point (what a device's sensor code does)."""
    t = blob.tensors[blob.inputs[0]]
    q = np.clip(np.round(x_float / t.scale) + t.zero_point, -128, 127).astype(np.int8)
    return [row.reshape(t.shape) for row in q]


@pytest.fixture(scope="module")
def keras_artifact(small_cnn_bytes, quadrant):
    be = backend("tmlb-int8")
    source = SourceModel("keras", small_cnn_bytes, name="quadrants")
    options = {"quantize": True, "representative": quadrant["x_train"]}
    art = be.compile(source, Target("tinyml-mpy"), options)
    tflite, _ = be.int8_tflite(source, options)
    return art, tflite


def test_float_keras_becomes_int8_blob_bit_exact_with_tflm(keras_artifact, quadrant, small_cnn):
    art, tflite = keras_artifact
    assert art.kind == "tmlb" and art.flash_bytes == len(art.data)
    assert art.features == {"abi": 1, "float_io": False}
    # The TFLite the blob was compiled from is the one int8_tflite() gives again (seeded calibration).
    assert art.report["quantize"]["tflite_sha256"] == hashlib.sha256(tflite).hexdigest()
    blob = parse(art.data)
    assert art.ram_bytes == blob.arena_bytes and art.macs == art.report["macs"] > 0
    assert "CONV_2D" in art.ops and "DEPTHWISE_CONV_2D" in art.ops and "FULLY_CONNECTED" in art.ops
    inputs = _int8_inputs(blob, quadrant["x_val"][:40])
    ref = [Executor(blob).run([x])[0] for x in inputs]
    judge = _tflm(tflite, inputs)
    for r, j in zip(ref, judge):
        assert np.array_equal(r.reshape(-1), j.reshape(-1))
    # And the int8 model still does the float model's job.
    float_pred = np.argmax(small_cnn.predict(quadrant["x_val"][:40], verbose=0), axis=1)
    int8_pred = np.array([np.argmax(r) for r in ref])
    assert np.mean(float_pred == int8_pred) >= 0.9


def test_blob_runs_in_micropython_like_tflm(keras_artifact, quadrant):
    from tinymlaas.verify.micropython import MicroPythonRuntime
    art, tflite = keras_artifact
    inputs = _int8_inputs(parse(art.data), quadrant["x_val"][:8])
    outs = MicroPythonRuntime(heap="512k").run(art.data, [[x] for x in inputs])
    for got, want in zip(outs, _tflm(tflite, inputs)):
        assert np.array_equal(np.asarray(got[0]).reshape(-1), want.reshape(-1))


def test_float_io_option_keeps_float32_inputs(small_cnn_bytes, quadrant):
    art = backend("tmlb-int8").compile(SourceModel("keras", small_cnn_bytes), Target("tinyml-c"),
                                       {"quantize": "float", "representative": quadrant["x_train"]})
    blob = parse(art.data)
    assert art.features["float_io"] is True and blob.float_io
    assert blob.tensors[blob.inputs[0]].dtype == 5          # float32
    assert "QUANTIZE" in art.ops and "DEQUANTIZE" in art.ops
    y = Executor(blob).run([quadrant["x_val"][:1]])[0]
    assert y.dtype == np.float32 and y.shape[-1] == 4


def test_int8_tflite_compiles_unchanged(mlperf):
    from tinymlaas.compiler import compile_tflite
    data = mlperf("ad").read_bytes()
    art = backend("tmlb-int8").compile(SourceModel("tflite", data), Target("tinyml-c"), {})
    cm = compile_tflite(data)
    assert art.data == cm.blob and art.ram_bytes == cm.arena_bytes and art.macs == cm.macs == 264192
    assert art.ops == ["FULLY_CONNECTED"]


def test_savedmodel_archive_and_path(small_cnn, quadrant, tmp_path):
    export = tmp_path / "sm"
    small_cnn.export(str(export), verbose=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in export.rglob("*"):
            if p.is_file():
                z.write(p, "model/" + str(p.relative_to(export)))
    be = backend("tmlb-int8")
    opts = {"representative": quadrant["x_train"]}
    from_zip = be.compile(SourceModel("savedmodel", buf.getvalue()), Target("tinyml-mpy"), opts)
    from_path = be.compile(SourceModel("savedmodel", b"", metadata={"path": str(export)}), Target("tinyml-mpy"), opts)
    assert from_zip.data == from_path.data
    # the depthwise conv runs as a patch-based stage over the first conv's output (docs/compiler.md)
    assert from_zip.ops == ["CONV_2D", "PATCH", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED"]


def test_prune_option_shrinks_the_blob(small_cnn_bytes, quadrant, keras_artifact):
    art, _ = keras_artifact
    train = {"x": quadrant["x_train"], "y": quadrant["y_train"], "x_val": quadrant["x_val"], "y_val": quadrant["y_val"]}
    pruned = backend("tmlb-int8").compile(
        SourceModel("keras", small_cnn_bytes), Target("tinyml-mpy"),
        {"quantize": True, "prune": {"fraction": 0.5, "data": train, "epochs": 3}})
    pr = pruned.report["prune"]
    assert pr["macs_after"] < pr["macs_before"] / 2
    assert pruned.macs < art.macs / 2 and pruned.flash_bytes < art.flash_bytes
    assert pr["accuracy_after"] > 0.6


def _float_tflite(model):
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_refusals(small_cnn, small_cnn_bytes, quadrant, mlperf):
    be = backend("tmlb-int8")
    int8 = mlperf("ad").read_bytes()
    cases = [
        (SourceModel("sklearn", b"\x80"), Target("tinyml-mpy"), {}, "does not accept sklearn"),
        (SourceModel("tflite", int8), Target("tflm"), {}, "does not target runtime tflm"),
        (SourceModel("tflite", int8), Target("tinyml-mpy", abi=2), {}, "ABI"),
        (SourceModel("tflite", int8), Target("tinyml-mpy"), {"quantize": True}, "already int8"),
        (SourceModel("tflite", int8), Target("tinyml-mpy"), {"prune": 0.5}, "cannot be pruned"),
        (SourceModel("tflite", int8), Target("tinyml-mpy"), {"fuse": False}, "always fuses"),
        (SourceModel("tflite", int8), Target("tinyml-mpy", ops=frozenset({"CONV_2D"})), {}, "FULLY_CONNECTED"),
        (SourceModel("tflite", int8), Target("tinyml-mpy"), {"dither": 1}, "does not support option"),
        (SourceModel("tflite", b"junk"), Target("tinyml-mpy"), {}, "TFLite"),
        (SourceModel("tflite", _float_tflite(small_cnn)), Target("tinyml-mpy"), {}, "computes in float"),
        (SourceModel("keras", small_cnn_bytes), Target("tinyml-mpy"), {}, "representative dataset"),
        (SourceModel("keras", small_cnn_bytes), Target("tinyml-mpy"),
         {"quantize": "int4", "representative": quadrant["x_train"]}, "quantize='int4'"),
        (SourceModel("keras", small_cnn_bytes), Target("tinyml-mpy"),
         {"prune": 0.5, "representative": quadrant["x_train"]}, "fine-tunes"),
        (SourceModel("keras", b"PK\x03\x04broken"), Target("tinyml-mpy"),
         {"representative": quadrant["x_train"]}, "not a complete zip archive .* truncated or damaged"),
        (SourceModel("savedmodel", b"not an archive"), Target("tinyml-mpy"),
         {"representative": quadrant["x_train"]}, "zip or tar"),
    ]
    for source, target, options, message in cases:
        with pytest.raises(BackendError, match=message):
            be.compile(source, target, options)
