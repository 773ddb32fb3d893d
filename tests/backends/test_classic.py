"""Classic back-end: SVC (linear, RBF, polynomial, sigmoid), GaussianNB and KNeighborsClassifier -> blobs of the
§11 ops, run by the host reference executor, the C runtime and the real MicroPython VM, with predictions identical
to scikit-learn's on held-out iris, wine, breast_cancer and digits rows (or, where float32 cannot be, inside the
stated bound)."""

import io

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC, NuSVC

from tinymlaas.backends import BackendError, SourceModel, Target, UnsupportedModel, backend
from tinymlaas.backends.classic import blob_predict, compile_estimator, svc_decision_bound
from tinymlaas.blob.reference import Executor

LOADERS = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}


def held_out(name):
    x, y = LOADERS[name](return_X_y=True)
    return train_test_split(x.astype(np.float32), y, test_size=0.3, random_state=0, stratify=y)


def models():
    scaled = lambda m: make_pipeline(StandardScaler(), m)  # noqa: E731
    return {"svc-linear": scaled(SVC(kernel="linear")), "svc-rbf": scaled(SVC()),
            "svc-poly": scaled(SVC(kernel="poly", degree=3)), "svc-rbf-raw": SVC(), "nusvc-sigmoid":
            scaled(NuSVC(kernel="sigmoid", nu=0.3)), "gnb": GaussianNB(), "knn": KNeighborsClassifier(5),
            "knn-distance": KNeighborsClassifier(5, weights="distance"),
            "knn-manhattan": make_pipeline(MinMaxScaler(), KNeighborsClassifier(3, p=1))}


@pytest.fixture(scope="module")
def fitted():
    """{dataset: (x_test, {name: (model, blob)})}; digits with three of the models (its SVC blobs are 0.2 MB)."""
    out = {}
    for name in LOADERS:
        x_tr, x_te, y_tr, _ = held_out(name)
        chosen = models() if name != "digits" else {k: models()[k] for k in ("svc-rbf", "gnb", "knn")}
        out[name] = (x_te, {k: (m.fit(x_tr, y_tr), compile_estimator(m)[0]) for k, m in chosen.items()})
    return out


def classes(model):
    return model.steps[-1][1].classes_ if hasattr(model, "steps") else model.classes_


def test_predictions_identical_to_scikit_learn_on_held_out_sets(fitted):
    for dataset, (x_te, built) in fitted.items():
        for name, (model, blob) in built.items():
            ours = classes(model)[blob_predict(blob, x_te)]
            assert np.array_equal(ours, model.predict(x_te)), (dataset, name)


def test_c_runtime_bit_exact_with_the_host_statement(fitted):
    from tinymlaas.devices.cruntime import Model
    for dataset in ("iris", "wine", "breast_cancer"):
        x_te, built = fitted[dataset]
        for name, (model, blob) in built.items():
            c, ex = Model(blob), Executor(blob)
            for r in x_te:
                got = np.asarray(c.invoke([r[None, :]])[0])
                assert got.tobytes() == ex.run([r[None, :]])[0].tobytes(), (dataset, name)


def test_micropython_runtime_predicts_like_scikit_learn(fitted):
    """The real VM (unix port: double floats, scores stored as float32): same class as predict() on every
    held-out wine row and 40 breast_cancer rows, scores within 1e-5 (relative) of the binary32 statement."""
    from tinymlaas.verify.micropython import MicroPythonRuntime
    for dataset, rows in (("wine", None), ("breast_cancer", 40)):
        x_te, built = fitted[dataset]
        x_te = x_te[:rows]
        for name, (model, blob) in built.items():
            outs = MicroPythonRuntime(heap="256k").run(blob, [[r[None, :]] for r in x_te])
            dev = np.array([np.asarray(o[0], dtype=np.float64).reshape(-1) for o in outs])
            ref = np.array([Executor(blob).run([r[None, :]])[0].reshape(-1) for r in x_te], dtype=np.float64)
            assert np.array_equal(classes(model)[dev.argmax(axis=1)], model.predict(x_te)), (dataset, name)
            assert np.allclose(dev, ref, rtol=1e-5, atol=1e-6), (dataset, name)
    # Streamed from a file (tables read into RAM once at bind time): the same outputs.
    model, blob = fitted["wine"][1]["svc-rbf"]
    rows = [[r[None, :]] for r in fitted["wine"][0][:10]]
    streamed = MicroPythonRuntime(heap="256k", stream=True).run(blob, rows)
    assert [o[0].tobytes() for o in streamed] == [o[0].tobytes() for o in MicroPythonRuntime().run(blob, rows)]


def test_unscaled_linear_svc_disagrees_only_inside_the_float32_bound():
    """A linear SVC on raw breast_cancer (features up to 4,254; kernel values ~1e7, decisions ~1) loses the
    decision to cancellation in binary32 on some rows: every row that disagrees has a class pair whose float64
    decision lies within svc_decision_bound, and rows outside the bound all agree."""
    x_tr, x_te, y_tr, _ = held_out("breast_cancer")
    model = SVC(kernel="linear", max_iter=20000).fit(x_tr, y_tr)
    blob = compile_estimator(model)[0]
    ours = model.classes_[blob_predict(blob, x_te)]
    dec, bound = svc_decision_bound(model, x_te)
    certain = np.all(np.abs(dec) > bound, axis=1)
    art = backend("classic").compile(SourceModel("sklearn", model), Target("tinyml-mpy"), {"representative": x_te})
    assert art.report["float32_certified"] == pytest.approx(certain.mean(), abs=1e-4) and certain.mean() < 0.5
    wrong = ours != model.predict(x_te)
    assert wrong.any() and not np.any(wrong & certain)
    # The same model behind a StandardScaler: every row outside the bound, so all identical.
    scaled = make_pipeline(StandardScaler(), SVC(kernel="linear")).fit(x_tr, y_tr)
    dec, bound = svc_decision_bound(scaled, x_te)
    assert np.all(np.abs(dec) > bound)
    assert np.array_equal(classes(scaled)[blob_predict(compile_estimator(scaled)[0], x_te)], scaled.predict(x_te))


def test_gaussian_nb_scores_lie_within_their_float32_bound():
    """The blob's binary32 joint log-likelihoods are within gnb_score_bound of the exact ones (float64 from the
    model's parameters) for every held-out row and class, and the bound is tight enough to certify (nearly) every
    prediction. (Fitted on float32 rows, scikit-learn keeps theta_ and var_ in float32 and computes its own
    log-likelihoods in float32 too.)"""
    from tinymlaas.backends.classic import gnb_score_bound
    for dataset in LOADERS:
        x_tr, x_te, y_tr, _ = held_out(dataset)
        model = GaussianNB().fit(x_tr, y_tr)
        ex = Executor(compile_estimator(model)[0])
        out = np.array([ex.run([r[None, :]])[0].reshape(-1) for r in x_te], dtype=np.float64)
        jll, bound = gnb_score_bound(model, x_te)
        assert np.all(np.abs(out - jll) <= bound), dataset
        top = np.argsort(-jll, axis=1)[:, :2]
        rows = np.arange(len(x_te))
        gap = jll[rows, top[:, 0]] - jll[rows, top[:, 1]]
        assert np.mean(gap > bound[rows, top[:, 0]] + bound[rows, top[:, 1]]) >= 0.99, dataset


def test_knn_ties_go_to_the_lower_training_row():
    """Equal distances: the k nearest are the lowest rows among the tied (spec §11), on every runtime."""
    from tinymlaas.devices.cruntime import Model
    from tinymlaas.verify.micropython import MicroPythonRuntime
    x = np.array([[0, 1], [0, -1], [1, 0], [-1, 0], [5, 5]], dtype=np.float32)
    model = KNeighborsClassifier(2).fit(x, [2, 1, 0, 0, 1])
    blob = compile_estimator(model)[0]
    q = np.zeros((1, 2), np.float32)
    want = np.array([0, 1, 1], dtype=np.float32)          # rows 0 and 1: classes 2 and 1, one vote each
    assert np.array_equal(Executor(blob).run([q])[0].reshape(-1), want)
    assert np.array_equal(np.asarray(Model(blob).invoke([q])[0]).reshape(-1), want)
    assert np.array_equal(np.asarray(MicroPythonRuntime().run(blob, [[q]])[0][0]).reshape(-1), want)


def test_artifact_and_refusals():
    x, y = load_iris(return_X_y=True)
    art = backend("classic").compile(SourceModel("sklearn", SVC().fit(x, y)), Target("tinyml-c"), {})
    assert art.ops == ["KERNEL", "SVM_VOTE"] and art.report["support_vectors"] > 0
    assert art.flash_bytes == len(art.data) and art.ram_bytes >= 4 * (4 + art.report["support_vectors"] + 3)
    with pytest.raises(BackendError, match="does not implement SVM_VOTE"):
        backend("classic").compile(SourceModel("sklearn", SVC().fit(x, y)),
                                   Target("tinyml-c", ops=frozenset({"KERNEL"})), {})
    with pytest.raises(UnsupportedModel, match="compiles SVC, NuSVC, GaussianNB, KNeighborsClassifier, not a "
                                                "LinearDiscriminantAnalysis"):
        compile_estimator(LinearDiscriminantAnalysis().fit(x, y))
    for bad, why in ((SVC(kernel="precomputed").fit(x @ x.T, y), "kernel 'precomputed' is not supported"),
                     (KNeighborsClassifier(metric="chebyshev").fit(x, y), "metric chebyshev is not supported"),
                     (SVC(break_ties=True, decision_function_shape="ovr").fit(x, y), "break_ties"),
                     (GaussianNB(), "not fitted")):
        with pytest.raises(BackendError, match=why):
            compile_estimator(bad)


def test_catalog_registers_a_classic_variant(tmp_path):
    """`models add` of a joblib SVC pipeline: one classic variant (the trees and linear back-ends' "not a ..." is
    not news), its accuracy on the evaluation set equal to scikit-learn's, chosen by selection like any variant."""
    from tinymlaas.commands.explain import profile_capabilities
    from tinymlaas.service.catalog import Catalog
    from tinymlaas.service.selection import choose
    x_tr, x_te, y_tr, y_te = held_out("wine")
    model = make_pipeline(StandardScaler(), SVC()).fit(x_tr, y_tr)
    buf = io.BytesIO()
    joblib.dump(model, buf)
    (tmp_path / "svc.joblib").write_bytes(buf.getvalue())
    np.savez(tmp_path / "eval.npz", x=x_te, y=y_te)
    cat = Catalog("sqlite:///%s" % (tmp_path / "db.sqlite"), tmp_path / "data")
    entry, errors = cat.add(tmp_path / "svc.joblib", "wine-svc", datasets={"eval": tmp_path / "eval.npz"})
    assert errors == {}
    (variant,) = cat.registry.variants(entry)
    assert variant["backend"] == "classic"
    assert variant["accuracy"] == pytest.approx(float(np.mean(model.predict(x_te) == y_te)))
    m4 = profile_capabilities("cortex-m4")
    best, _ = choose([variant], m4)
    assert best is not None and best.variant["id"] == variant["id"]
    best, (verdict,) = choose([variant], dict(m4, ops=[op for op in m4["ops"] if op != "SVM_VOTE"]))
    assert best is None and verdict.reasons == ["device runtime lacks op(s) SVM_VOTE"]


def test_models_without_classic_ops_never_import_the_module(mpy_run):
    """tinyml/classic.py is loaded on first use: a tree model runs without it, a GaussianNB loads it."""
    from tinymlaas.paths import REPO
    x, y = load_iris(return_X_y=True)
    gnb = compile_estimator(GaussianNB().fit(x, y))[0]
    code = """
import sys, tinyml
t = tinyml.load(open(%r, 'rb').read())
t.invoke()
print('tinyml.classic' in sys.modules)
g = tinyml.load(%r)
g.invoke()
print('tinyml.classic' in sys.modules, len(g.output_buffer(0)))
""" % (str(REPO / "tests" / "vectors" / "trees_forest.blob"), gnb)
    assert mpy_run(code).split() == ["False", "True", "12"]
