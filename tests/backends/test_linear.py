"""scikit-learn linear models and MLPs -> int8 blob (back-end "linear"): agreement with scikit-learn on held-out
digits, the blob equal to TFLite Micro on the .tflite it was compiled from, the MicroPython runtime equal to both."""

import hashlib
import io
import pickle

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.svm import LinearSVC

from tinymlaas.backends import BackendError, SourceModel, Target, UnsupportedModel, backend
from tinymlaas.backends.linear import blob_outputs, chain_scores, dense_chain, quantize_input
from tinymlaas.blob.reader import parse
from tinymlaas.blob.reference import Executor

from test_int8 import _tflm

# short max_iter keeps the file fast; the models are good enough (their accuracy is asserted, not assumed)
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)                 # pixels in [0, 1]: the solvers converge in a fraction
    return x[:1200], y[:1200], x[1200:], y[1200:]


def _classifiers():
    return {
        "logreg_multinomial": LogisticRegression(max_iter=500),
        "logreg_ovr": OneVsRestClassifier(LogisticRegression(max_iter=500)),
        "linear_svc": LinearSVC(max_iter=2000),
        "mlp_relu": MLPClassifier((24,), max_iter=200, random_state=0),
        "mlp_tanh_logistic": MLPClassifier((24, 12), activation="tanh", max_iter=200, random_state=0),
        "mlp_logistic": MLPClassifier((16,), activation="logistic", max_iter=300, random_state=0),
    }


@pytest.fixture(scope="module")
def compiled(digits):
    x_tr, y_tr, _, _ = digits
    be, out = backend("linear"), {}
    for name, model in _classifiers().items():
        model.fit(x_tr, y_tr)
        out[name] = model, be.compile(SourceModel("sklearn", pickle.dumps(model), name=name), Target("tinyml-mpy"),
                                      {"representative": x_tr})
    return out


@pytest.mark.parametrize("name", sorted(_classifiers()))
def test_held_out_predictions_agree_with_scikit_learn(name, compiled, digits):
    _, _, x_te, y_te = digits
    model, art = compiled[name]
    assert art.features["float_io"] and art.report["agreement"] >= 0.99   # on the calibration rows
    pred = np.argmax(blob_outputs(art.data, x_te), axis=1)
    agree = np.mean(pred == model.predict(x_te))
    assert agree >= 0.99, agree                           # the documented bound (docs/backends.md)
    assert abs(np.mean(pred == y_te) - model.score(x_te, y_te)) <= 0.01
    assert set(art.ops) <= {"QUANTIZE", "FULLY_CONNECTED", "LUT", "DEQUANTIZE"}
    assert ("LUT" in art.ops) == (name in ("mlp_tanh_logistic", "mlp_logistic"))


def test_blob_equals_tflm_and_the_micropython_and_c_runtimes(compiled, digits):
    """int8 I/O variant of the two-layer tanh MLP: the reference executor, TFLite Micro, MicroPython and the C
    runtime agree on every output byte."""
    from tinymlaas.verify.micropython import MicroPythonRuntime
    x_tr, _, x_te, _ = digits
    be = backend("linear")
    source = SourceModel("sklearn", compiled["mlp_tanh_logistic"][0])
    options = {"representative": x_tr, "quantize": "int8"}
    art = be.compile(source, Target("tinyml-c"), options)
    tflite, _ = be.int8_tflite(source, options)
    assert not art.features["float_io"]
    assert art.report["quantize"]["tflite_sha256"] == hashlib.sha256(tflite).hexdigest()   # seeded: the same
    blob = parse(art.data)
    t = blob.tensors[blob.inputs[0]]
    inputs = [quantize_input(r, t.scale, t.zero_point).reshape(t.shape) for r in x_te[:40]]
    ref = [Executor(blob).run([x])[0].reshape(-1) for x in inputs]
    for r, j in zip(ref, _tflm(tflite, inputs)):
        assert np.array_equal(r, j.reshape(-1))
    outs = MicroPythonRuntime(heap="256k").run(art.data, [[x] for x in inputs[:10]])
    for got, want in zip(outs, ref):
        assert np.array_equal(np.asarray(got[0]).reshape(-1), want)
    from tinymlaas.devices.cruntime import CRuntime                  # the C runtime (host build) too
    for got, want in zip(CRuntime().run(art.data, [[x] for x in inputs]), ref):
        assert np.array_equal(np.asarray(got[0]).reshape(-1), want)


def test_binary_models_predict_class_one_exactly_when_the_score_is_positive(digits):
    x_tr, y_tr, x_te, y_te = digits
    for model in (LogisticRegression(max_iter=500), MLPClassifier((8,), max_iter=200, random_state=0)):
        model.fit(x_tr, y_tr >= 5)
        chain = dense_chain(model)
        assert chain.layers[-1][0].shape[1] == 2                 # (-s, s)
        art = backend("linear").compile(SourceModel("sklearn", model), Target("tinyml-mpy"), {"representative": x_tr})
        pred = np.asarray(model.classes_)[np.argmax(blob_outputs(art.data, x_te), axis=1)]
        # digits 0-4 vs 5-9 leaves more rows near the boundary than the ten-class models: 7 of 597 flip at most
        assert np.mean(pred == model.predict(x_te)) >= 0.98, type(model).__name__


def test_regressors_stay_within_a_bound_inside_the_calibrated_range():
    x, y = make_regression(500, 8, noise=2.0, random_state=0)
    x_cal, x_te = x[:200], x[200:]              # at most 200 calibration rows are used: give exactly those
    # One int8 scale for all features: a held-out row with a feature beyond the calibrated span saturates there.
    x_te = x_te[np.all((x_te >= x_cal.min()) & (x_te <= x_cal.max()), axis=1)]
    for model in (LinearRegression(), Ridge(alpha=0.5), MLPRegressor(hidden_layer_sizes=(16,), max_iter=2000, random_state=0)):
        model.fit(x[:350], y[:350])
        art = backend("linear").compile(SourceModel("sklearn", model), Target("tinyml-mpy"),
                                        {"representative": x_cal})
        assert art.report["task"] == "regression" and art.report["max_abs_error"] > 0
        got = blob_outputs(art.data, x_te).reshape(-1)
        # int8 output: the calibration rows' predictions span 255 steps; a prediction outside that span saturates
        # at its edge. So the blob computes clip(predict, span) to within 2 % of the span.
        lo, hi = np.min(model.predict(x_cal)), np.max(model.predict(x_cal))
        err = np.abs(got - np.clip(model.predict(x_te), lo, hi))
        assert len(x_te) > 250 and err.max() <= 0.02 * (hi - lo), (type(model).__name__, err.max(), hi - lo)


def test_a_pipeline_of_scalers_is_folded_and_raw_wine_is_refused(digits):
    from sklearn.datasets import load_wine
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    x_tr, y_tr, x_te, _ = digits
    pipe = make_pipeline(MinMaxScaler(), StandardScaler(), LogisticRegression(max_iter=500)).fit(x_tr, y_tr)
    chain = dense_chain(pipe)
    np.testing.assert_allclose(chain_scores(chain, x_te), pipe.decision_function(x_te), rtol=1e-5, atol=1e-5)  # f32
    art = backend("linear").compile(SourceModel("sklearn", pipe), Target("tinyml-mpy"), {"representative": x_tr})
    pred = np.argmax(blob_outputs(art.data, x_te), axis=1)
    assert np.mean(pred == pipe.predict(x_te)) >= 0.98
    # Raw wine features span 0.1 to 1,680: one int8 input scale loses most of them, and the back-end says so.
    x, y = load_wine(return_X_y=True)
    wine = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    with pytest.raises(BackendError, match=r"agrees with the float model on \d+\.\d % .*one int8 input scale"):
        backend("linear").compile(SourceModel("sklearn", wine), Target("tinyml-mpy"), {"representative": x})
    from sklearn.decomposition import PCA
    with pytest.raises(UnsupportedModel, match="folds Pipelines of StandardScaler.*not PCA -> LogisticRegression"):
        dense_chain(make_pipeline(PCA(3), LogisticRegression()).fit(x, y))


def test_refusals():
    be = backend("linear")
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    with pytest.raises(UnsupportedModel, match="not a GaussianNB"):
        be.compile(SourceModel("sklearn", GaussianNB().fit(x, x[:, 0] > 0)), Target("tinyml-mpy"),
                   {"representative": x})
    with pytest.raises(BackendError, match="is not fitted"):
        be.compile(SourceModel("sklearn", LogisticRegression()), Target("tinyml-mpy"), {"representative": x})
    with pytest.raises(BackendError, match="representative dataset"):
        be.compile(SourceModel("sklearn", LogisticRegression().fit(x, x[:, 0] > 0)), Target("tinyml-mpy"), {})
    with pytest.raises(BackendError, match="quantize="):
        be.compile(SourceModel("sklearn", LogisticRegression().fit(x, x[:, 0] > 0)), Target("tinyml-mpy"),
                   {"representative": x, "quantize": "int4"})


def test_catalog_registers_a_linear_variant_and_keeps_quiet_about_the_tree_back_end(tmp_path, digits):
    from tinymlaas.service.catalog import Catalog
    x_tr, y_tr, x_te, y_te = digits
    buf = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=500).fit(x_tr, y_tr), buf)
    (tmp_path / "lr.joblib").write_bytes(buf.getvalue())
    np.save(tmp_path / "x.npy", x_tr)
    np.savez(tmp_path / "eval.npz", x=x_te, y=y_te)
    cat = Catalog("sqlite:///%s" % (tmp_path / "db.sqlite"), tmp_path / "data")
    model, errors = cat.add(tmp_path / "lr.joblib", "digits-lr",
                            datasets={"representative": tmp_path / "x.npy", "eval": tmp_path / "eval.npz"})
    assert errors == {}                                          # the trees back-end's "not a ..." is not news
    (variant,) = cat.registry.variants(model)
    assert variant["backend"] == "linear" and variant["accuracy"] >= 0.9
    # Selection judges it like any variant: it fits a Cortex-M4 board profile, not one whose runtime lacks
    # FULLY_CONNECTED nor one with 1 KB of heap.
    from tinymlaas.commands.explain import profile_capabilities
    from tinymlaas.service.selection import choose
    best, _ = choose([variant], profile_capabilities("cortex-m4"))
    assert best is not None and best.variant["id"] == variant["id"]
    m4 = profile_capabilities("cortex-m4")
    best, (verdict,) = choose([variant], dict(m4, ops=[op for op in m4["ops"] if op != "FULLY_CONNECTED"]))
    assert best is None and verdict.reasons == ["device runtime lacks op(s) FULLY_CONNECTED"]
    best, (verdict,) = choose([variant], dict(m4, heap_free=1024, largest_block=1024))
    assert best is None and len(verdict.reasons) == 1 and verdict.ram_needed > verdict.ram_available
