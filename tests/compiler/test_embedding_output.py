"""embedding_output: the last FULLY_CONNECTED's input as graph output 1 (on-device learning, docs/learning.md).
On Keras exports and on a Keras model through the int8 back-end: output 0 stays bit-exact with TFLite Micro, and
output 1 is bit-exact with TFLite Micro running the same .tflite with that tensor made a graph output too. The
TFLite interpreter's own intermediate (experimental_preserve_all_tensors) agrees within 1 LSB: LiteRT's reference
kernels round requantization once where TFLM rounds twice (ANCHORS.md), 1 embedding of 40 differs by 1 here."""

from pathlib import Path

import numpy as np
import pytest
from tflite_builder import run_tflm

from tinymlaas.backends import BackendError, SourceModel, Target, backend
from tinymlaas.blob import reference
from tinymlaas.blob.reader import parse
from tinymlaas.compiler import CompileError, compile_tflite
from tinymlaas.compiler.frontend import parse_tflite
from tinymlaas.learning.register import with_outputs

MODELS = Path(__file__).resolve().parent / "models"


def _fc_input(tflite):
    """The tensor index of the last FULLY_CONNECTED's input in the .tflite itself."""
    g = parse_tflite(tflite)
    return [op for op in g.ops if op.kind == "FULLY_CONNECTED"][-1].inputs[0]


def _interpreter_tensor(tflite, x, index):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=bytes(tflite), experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(index)


def _check(tflite, cm, rng, n=20):
    plain = compile_tflite(tflite, patches=False)
    assert len(cm.outputs) == len(plain.outputs) + 1 == 2
    assert cm.outputs[0] == plain.outputs[0]
    emb = cm.outputs[1]
    index = _fc_input(tflite)
    judge = with_outputs(tflite, [index])
    ex = reference.Executor(cm.blob)
    for _ in range(n):
        x = rng.integers(-128, 128, size=cm.inputs[0]["shape"], dtype=np.int8)
        y, e = ex.run([x])
        want = run_tflm(tflite, x)[0]
        assert np.array_equal(np.asarray(y).reshape(-1), want.reshape(-1))
        want_y, want_e = run_tflm(judge, x)
        assert np.array_equal(want_y, want)          # the judge's extra output changes nothing it computes
        got_e = np.asarray(e)
        assert got_e.dtype == np.int8 and list(got_e.shape) == emb["shape"]
        assert np.array_equal(got_e.reshape(-1), want_e.reshape(-1))
        lite = _interpreter_tensor(tflite, x, index).reshape(-1).astype(np.int16)
        assert np.abs(got_e.reshape(-1) - lite).max() <= 1


@pytest.mark.parametrize("name", ["mbv2_block", "conv1d", "avg_hswish"])
def test_keras_exports_gain_the_embedding_as_output_1(name, rng):
    tflite = (MODELS / (name + ".tflite")).read_bytes()
    cm = compile_tflite(tflite, embedding_output=True)
    _check(tflite, cm, rng)
    meta = parse(cm.blob).meta
    assert meta["embedding"]["output"] == 1 and meta["embedding"]["shape"] == cm.outputs[1]["shape"]
    # the planner keeps the embedding live to the end: its bytes are not reused by the ops after it
    end = max(b["live_ops"][1] for b in cm.memory_plan)
    (buf,) = [b for b in cm.memory_plan if cm.outputs[1]["name"] in b["tensors"]]
    assert buf["live_ops"][1] == end


def test_model_without_fully_connected_is_refused():
    tflite = (MODELS / "seq_gated.tflite").read_bytes()
    g = parse_tflite(tflite)
    if any(op.kind == "FULLY_CONNECTED" for op in g.ops):
        # seq_gated's Dense layers are FCs on 3-D inputs: the option works there too (the last one's input)
        cm = compile_tflite(tflite, embedding_output=True)
        assert len(cm.outputs) == 2
    from tflite_builder import unary_model
    with pytest.raises(CompileError, match="no FULLY_CONNECTED"):
        compile_tflite(unary_model(22, 0.05, 0, 0.05, 0), embedding_output=True)   # a RELU alone


def _keras_dense_head():
    import keras
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 6, 6, 1)).astype(np.float32)
    y = (x[:, :3].mean((1, 2, 3)) > x[:, 3:].mean((1, 2, 3))).astype(np.int64)
    m = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(12, activation="relu"),
                          keras.layers.Dense(3, name="head")])
    m.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=2, verbose=0)
    return m, x


def test_keras_dense_head_through_the_int8_backend(tmp_path, rng):
    model, x = _keras_dense_head()
    path = tmp_path / "m.keras"
    model.save(path)
    be = backend("tmlb-int8")
    source = SourceModel("keras", path.read_bytes(), name="dense-head")
    options = {"quantize": "int8", "representative": x, "embedding_output": True}
    art = be.compile(source, Target("tinyml-mpy"), options)
    tflite, _ = be.int8_tflite(source, options)
    assert art.report["embedding"]["output"] == 1 and art.report["embedding"]["shape"] == [1, 12]
    blob = parse(art.data)
    assert len(blob.outputs) == 2
    cm = compile_tflite(tflite, name="dense-head", embedding_output=True)
    assert cm.blob == art.data
    _check(tflite, cm, rng)
    with pytest.raises(BackendError, match="embedding_output"):
        be.compile(source, Target("tinyml-mpy"), dict(options, embedding_output="yes"))
