"""Tree-ensemble back-end: scikit-learn models -> TREE_ENSEMBLE blob, run in the real MicroPython unix port."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from tinymlaas.backends import BackendError, SourceModel, Target, backend
from tinymlaas.backends.trees import (compile_estimator, float32_key, predict_on_unixport, read_tree_blob,
                                      reference_scores, round_down_float32)


def _data(n_classes, seed=0):
    x, y = make_classification(n_samples=900, n_features=10, n_informative=6, n_redundant=2, n_classes=n_classes,
                               random_state=seed)
    # Coarse steps put many test values exactly on or next to split thresholds, where float32 vs float64 matters.
    x[:, :3] = np.round(x[:, :3] * 4) / 4
    return x[:600], y[:600], x[600:], y[600:]


MODELS = {
    "decision_tree": lambda: DecisionTreeClassifier(max_depth=10, random_state=1),
    "random_forest": lambda: RandomForestClassifier(n_estimators=15, max_depth=8, random_state=1),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=15, max_depth=8, random_state=1),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=1),
}


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_device_predictions_identical_to_sklearn(kind, n_classes):
    x_train, y_train, x_test, _ = _data(n_classes)
    model = MODELS[kind]().fit(x_train, y_train)
    blob, tables = compile_estimator(model, kind)
    expected = model.predict(x_test)
    classes, last_scores, us = predict_on_unixport(blob, x_test)
    assert list(np.asarray(tables.classes)[classes]) == list(expected)
    # The device's int32 scores are bit-identical to the host statement of the op.
    assert list(last_scores) == list(reference_scores(tables, x_test[-1:].astype(np.float32))[0])
    assert us > 0


def test_float32_keys_order_like_floats():
    values = np.array([-np.inf, -3.4e38, -1.0, -1e-45, -0.0, 0.0, 1e-45, 1.17e-38, 0.5, 1.0, 3.4e38, np.inf],
                      dtype=np.float32)
    keys = float32_key(values)
    assert list(keys) == sorted(keys)
    assert keys[4] == keys[5] == 0                      # -0.0 == +0.0
    assert len(set(keys)) == len(values) - 1
    with pytest.raises(ValueError):
        float32_key([np.nan])


def test_rounded_threshold_decides_like_sklearn_float64_compare():
    rng = np.random.default_rng(3)
    t64 = rng.normal(size=2000) * 10.0 ** rng.integers(-5, 5, size=2000)
    t32 = round_down_float32(t64)
    assert np.all(t32.astype(np.float64) <= t64)
    # float32 neighbours of each threshold: exactly the values where a round-to-nearest threshold would be wrong.
    near = t64.astype(np.float32)
    for x in (near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))):
        sklearn_left = x.astype(np.float64) <= t64
        assert np.array_equal(float32_key(x) <= float32_key(t32), sklearn_left)


def _pickled(model):
    return pickle.dumps(model)


def test_backend_compiles_pickled_model_through_the_registry_interface():
    x_train, y_train, x_test, _ = _data(3)
    model = RandomForestClassifier(n_estimators=5, max_depth=5, random_state=0).fit(x_train, y_train)
    art = backend("trees").compile(SourceModel("sklearn", _pickled(model), name="rf"), Target("tinyml-mpy"), {})
    assert art.kind == "tmlb" and art.flash_bytes == len(art.data)
    assert art.ops == ["TREE_ENSEMBLE"] and art.macs == 0
    assert art.features == {"abi": 1, "float_io": True}
    parsed, arrays, _ = read_tree_blob(art.data)
    assert parsed.meta["classes"] == ["0", "1", "2"] and parsed.meta["n_trees"] == 5
    assert art.ram_bytes == parsed.arena_bytes == 48 + 12      # x: 10 float32 padded to 48 B, y: 3 int32
    assert art.report["nodes"] == len(arrays["nodes"])
    scores = reference_scores(tuple(arrays[k] for k in ("nodes", "leaves", "trees", "init")),
                              x_test.astype(np.float32))
    assert np.array_equal(np.argmax(scores, axis=1), model.predict(x_test))
    # The project's reference executor (blob/reference.py, written separately from spec section 10) agrees.
    from tinymlaas.blob.reference import Executor
    executor = Executor(art.data)
    for row, want in zip(x_test[:20], scores[:20]):
        assert list(executor.run([row[None, :].astype(np.float32)])[0].reshape(-1)) == list(want)


def test_backend_rejects_wrong_inputs():
    trees = backend("trees")
    model = DecisionTreeClassifier(max_depth=2).fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(BackendError, match="does not accept tflite"):
        trees.compile(SourceModel("tflite", b"TFL3"), Target("tinyml-mpy"), {})
    with pytest.raises(BackendError, match="does not target runtime tflm"):
        trees.compile(SourceModel("sklearn", _pickled(model)), Target("tflm"), {})
    with pytest.raises(BackendError, match="does not support option"):
        trees.compile(SourceModel("sklearn", _pickled(model)), Target("tinyml-mpy"), {"prune": 0.5})
    with pytest.raises(BackendError, match="not a LogisticRegression: train one of those"):
        trees.compile(SourceModel("sklearn", _pickled(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))),
                      Target("tinyml-mpy"), {})
    with pytest.raises(BackendError, match="cannot unpickle"):
        trees.compile(SourceModel("sklearn", b"\x80\x04not a pickle"), Target("tinyml-mpy"), {})
    with pytest.raises(BackendError, match="does not implement TREE_ENSEMBLE"):
        trees.compile(SourceModel("sklearn", _pickled(model)), Target("tinyml-mpy", ops=frozenset({"CONV_2D"})), {})


def _corrupt_child(blob):
    """The blob with node 1's left child pointing back at node 0 (a cycle), re-hashed so only that rule fails."""
    import hashlib
    from tinymlaas.blob import format as F
    parsed, arrays, op = read_tree_blob(blob)
    nodes_t = parsed.tensors[op.inputs[1]]
    const_off = [F.SECTION.unpack_from(blob, 64 + 16 * i) for i in range(F.HEADER.unpack_from(blob)[5])]
    const_off = next(off for kind, off, size, count in const_off if kind == F.SECTION_CONST)
    b = bytearray(blob)
    at = const_off + nodes_t.offset + 16 * 1 + 8
    b[at:at + 4] = (0).to_bytes(4, "little")
    b[24:56] = hashlib.sha256(bytes(b[64:])).digest()
    return bytes(b)


def test_cyclic_node_table_is_rejected_on_host_and_device():
    x_train, y_train, x_test, _ = _data(2)
    blob, _ = compile_estimator(DecisionTreeClassifier(max_depth=4, random_state=0).fit(x_train, y_train))
    bad = _corrupt_child(blob)
    with pytest.raises(ValueError, match="node 1.*child"):
        read_tree_blob(bad)


def test_device_check_rejects_cycle_and_nan_input(mpy_run):
    x_train, y_train, _, _ = _data(2)
    blob, tables = compile_estimator(DecisionTreeClassifier(max_depth=4, random_state=0).fit(x_train, y_train))
    nodes = tables.nodes.copy()
    nodes[1, 2] = 0
    code = """
import struct
from tinyml import trees
nodes = bytes(%r); leaves = bytes(%r); tr = bytes(%r); init = bytes(%r)
good = bytes(%r)
try:
    trees.check(nodes, leaves, tr, init, %d, %d)
except ValueError as e:
    print('rejected:', e)
trees.check(good, leaves, tr, init, %d, %d)
p = trees.params(0, 48, len(good) // 16, 1, %d, 2)
ar = bytearray(56)
ar[0:40] = struct.pack('<10f', *([float('nan')] * 10))
try:
    trees.run_op(ar, p, good, leaves, tr, init)
except ValueError as e:
    print('nan:', e)
""" % (nodes.astype("<i4").tobytes(), tables.leaves.astype("<i4").tobytes(), tables.trees.astype("<i4").tobytes(),
       tables.init.astype("<i4").tobytes(), tables.nodes.astype("<i4").tobytes(), 10, tables.leaves.shape[1],
       10, tables.leaves.shape[1], tables.leaves.shape[1])
    out = mpy_run(code)
    assert "rejected: TREE_ENSEMBLE: node 1 child 0 is not after it" in out
    assert "nan: input feature is NaN" in out


def test_runtime_adapters_on_parsed_tuples(mpy_run, tmp_path):
    """check_op / run_model_op, the two functions the runtime's dispatch calls, on the runtime's tensor tuples."""
    x_train, y_train, x_test, _ = _data(3)
    model = GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x_train, y_train)
    blob, tables = compile_estimator(model)
    parsed, _, op = read_tree_blob(blob)
    from tinymlaas.blob import format as F
    n_sec = F.HEADER.unpack_from(blob)[5]
    const_off = [off for kind, off, size, count in
                 (F.SECTION.unpack_from(blob, 64 + 16 * i) for i in range(n_sec)) if kind == F.SECTION_CONST][0]
    tensors = [(t.dtype, 1 if t.is_const else 0, tuple(t.dims4), t.offset + (const_off if t.is_const else 0),
                t.nbytes, t.zero_point, t.scale, tuple(t.shape)) for t in parsed.tensors]
    (tmp_path / "m.tmlb").write_bytes(blob)
    rows = x_test[:30].astype(np.float32)
    (tmp_path / "x.f32").write_bytes(rows.tobytes())
    x_t, y_t = parsed.tensors[op.inputs[0]], parsed.tensors[op.outputs[0]]
    code = """
from tinyml import trees
from tinyml.source import MemorySource
class Obj: pass
src = MemorySource(open(%r, 'rb').read())
prog = Obj(); prog.tensors = %r; prog.ops = [(16, %r, %d, %r)]
trees.check_op(src, prog, 0)
m = Obj(); m._src = src; m.tensors = prog.tensors; m.arena = bytearray(%d)
xs = open(%r, 'rb').read()
out = []
for r in range(%d):
    m.arena[%d:%d] = xs[r * %d:(r + 1) * %d]
    trees.run_model_op(m, prog.ops[0])
    out.append(trees.argmax(m.arena, %d, %d))
print(' '.join(str(c) for c in out))
bad = list(prog.tensors); bad[%d] = (5,) + bad[%d][1:]
prog.tensors = bad
try:
    trees.check_op(src, prog, 0)
except ValueError as e:
    print('rejected', e)
""" % (str(tmp_path / "m.tmlb"), tensors, tuple(op.inputs), op.outputs[0], tuple(op.params), parsed.arena_bytes,
       str(tmp_path / "x.f32"), len(rows), x_t.offset, x_t.offset + x_t.nbytes, x_t.nbytes, x_t.nbytes,
       y_t.offset, y_t.elements, op.outputs[0], op.outputs[0])
    lines = mpy_run(code).strip().splitlines()
    classes = [int(c) for c in lines[0].split()]
    assert list(np.asarray(tables.classes)[classes]) == list(model.predict(x_test[:30]))
    assert lines[1] == "rejected TREE_ENSEMBLE: y must be an int32 arena tensor"


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_c_runtime_scores_identical_to_the_reference(kind, n_classes):
    """The C runtime's TREE_ENSEMBLE (inference_module/c/tml_ops.c): every row's int32 scores equal the host
    statement of the op, and the first argmax is scikit-learn's prediction."""
    from tinymlaas.devices.cruntime import Model

    x_train, y_train, x_test, _ = _data(n_classes)
    model = MODELS[kind]().fit(x_train, y_train)
    art = backend("trees").compile(SourceModel("sklearn", _pickled(model)), Target("tinyml-c"), {})
    _, tables = compile_estimator(model, kind)
    m = Model(art.data)
    x32 = x_test.astype(np.float32)
    scores = np.stack([m.invoke([row[None, :]])[0][0] for row in x32])
    assert np.array_equal(scores, reference_scores(tables, x32))
    assert list(np.asarray(tables.classes)[scores.argmax(axis=1)]) == list(model.predict(x_test))


def test_c_runtime_fails_an_inference_on_a_nan_feature_and_keeps_working():
    from tinymlaas.devices.cruntime import CRuntimeError, Model

    model = DecisionTreeClassifier(max_depth=2).fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    m = Model(compile_estimator(model)[0])
    with pytest.raises(CRuntimeError, match="NaN"):
        m.invoke([np.array([[np.nan, np.nan]], dtype=np.float32)])
    assert m.invoke([np.array([[1.0, 0.0]], dtype=np.float32)])[0].argmax() == 1


def test_string_labels_are_kept_in_class_order():
    x_train, y_train, x_test, _ = _data(3)
    names = np.array(["idle", "walk", "run"])
    model = DecisionTreeClassifier(max_depth=6, random_state=0).fit(x_train, names[y_train])
    blob, tables = compile_estimator(model)
    parsed, _, _ = read_tree_blob(blob)
    assert parsed.meta["classes"] == list(model.classes_) == ["idle", "run", "walk"]
    scores = reference_scores(tables, x_test.astype(np.float32))
    assert list(model.classes_[np.argmax(scores, axis=1)]) == list(model.predict(x_test))
