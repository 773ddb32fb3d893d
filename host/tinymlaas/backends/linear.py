"""Linear and MLP back-end ("linear"): scikit-learn linear models and multi-layer perceptrons -> int8 blob.

These models are chains of dense layers, so they need no new runtime op: each becomes FULLY_CONNECTED layers
(ReLU fused, tanh / logistic as LUTs), quantized to int8 with TensorFlow's converter on a representative dataset
and compiled like any int8 .tflite (docs/backends.md, "linear"). The blob's output is the model's decision scores:

* classifiers: `decision_function` (LogisticRegression multinomial, LinearSVC, RidgeClassifier, OneVsRestClassifier
  of those) or the output layer's logits (MLPClassifier), so the predicted class is the first argmax, as
  scikit-learn's `predict`. A binary model's single score s becomes the two outputs (-s, s): argmax is class 1
  exactly when s > 0.
* regressors (LinearRegression, Ridge, MLPRegressor): the predictions.

int8 arithmetic makes predictions equal to scikit-learn's only up to a bound: the report carries the agreement of
the blob's predictions with the float model's on the calibration rows (regressors: the largest error), measured
with the blob reference executor, which is bit-exact with TFLite Micro on the .tflite compiled.

Options: `quantize` "float" (default: float32 features in, float32 scores out, int8 inside, like the trees blob) or
true / "int8" (int8 I/O); `representative` (required: rows of features, e.g. the training set); `min_agreement`
(default 0.9): a classifier whose blob agrees less often with it on the calibration rows is refused (regressors:
off by more than 5 % of the target range). A Pipeline of scalers before the model is folded into its first layer.
"""

import hashlib

import numpy as np

from ..blob import format as F
from .int8 import blob_artifact
from .interface import Backend, BackendError, UnsupportedModel, check_abi, step

LINEAR_CLASSIFIERS = ("LogisticRegression", "LinearSVC", "RidgeClassifier", "RidgeClassifierCV", "SGDClassifier")
REGRESSORS = ("LinearRegression", "Ridge", "RidgeCV", "Lasso", "ElasticNet", "SGDRegressor", "MLPRegressor")
SUPPORTED = LINEAR_CLASSIFIERS + ("OneVsRestClassifier", "MLPClassifier") + REGRESSORS
ACTIVATIONS = ("identity", "relu", "tanh", "logistic")
MIN_AGREEMENT = 0.9           # default: refuse a classifier blob whose predictions differ more often on calibration
MAX_REGRESSION_ERROR = 0.05   # refuse a regressor blob off by more than this share of the calibrated target range


class DenseChain:
    """A model as dense layers: [(W [in, out] float64, b [out], activation)], and what its output means."""

    def __init__(self, layers, task, classes=None):
        self.layers, self.task, self.classes = layers, task, classes

    @property
    def n_features(self):
        return self.layers[0][0].shape[0]


def _fitted(model, kind, attr):
    if not hasattr(model, attr):
        raise BackendError("the %s is not fitted" % kind)


def _binary_pair(w, b):
    """One score column s -> the two columns (-s, s): first-argmax picks class 1 exactly when s > 0."""
    return np.concatenate([-w, w], axis=1), np.concatenate([-b, b])


SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler")


def _affine(scaler):
    """(multiplier, offset) per feature: the scaler computes x * multiplier + offset."""
    kind = type(scaler).__name__
    if kind == "StandardScaler":
        mul = 1.0 / np.asarray(scaler.scale_ if scaler.scale_ is not None else np.ones(scaler.n_features_in_))
        mean = np.asarray(scaler.mean_ if scaler.mean_ is not None else np.zeros(scaler.n_features_in_))
        return mul, -mean * mul
    if kind == "MinMaxScaler":
        return np.asarray(scaler.scale_, np.float64), np.asarray(scaler.min_, np.float64)
    return 1.0 / np.asarray(scaler.scale_, np.float64), np.zeros(scaler.n_features_in_)


def dense_chain(model):
    """The DenseChain of a fitted estimator of one of the SUPPORTED types (UnsupportedModel for other types), or of a
    Pipeline of scalers (SCALERS) ending in one: the scalers' per-feature affine maps are folded into the first
    layer (exact in real arithmetic; the blob then takes the raw features)."""
    if type(model).__name__ == "Pipeline":
        steps = [est for _, est in model.steps if est not in (None, "passthrough")]
        names = [type(est).__name__ for est in steps[:-1]]
        if not steps or any(n not in SCALERS for n in names):
            raise UnsupportedModel("the linear back-end folds Pipelines of %s before a linear model or MLP, not %s"
                                   % (", ".join(SCALERS), " -> ".join(type(e).__name__ for e in steps)))
        chain = dense_chain(steps[-1])
        w, b, act = chain.layers[0]
        for scaler in reversed(steps[:-1]):
            _fitted(scaler, type(scaler).__name__, "scale_")
            mul, off = _affine(scaler)            # layer(x * mul + off) = x @ (mul[:, None] * w) + (off @ w + b)
            w, b = mul[:, None] * w, off @ w + b
        chain.layers[0] = (w, b, act)
        return chain
    kind = type(model).__name__
    if kind not in SUPPORTED:
        raise UnsupportedModel("the linear back-end compiles %s, not a %s" % (", ".join(SUPPORTED), kind))
    if kind in LINEAR_CLASSIFIERS or kind == "OneVsRestClassifier":
        _fitted(model, kind, "classes_")
        if kind == "OneVsRestClassifier":
            inner = [type(e).__name__ for e in model.estimators_]
            if any(name not in LINEAR_CLASSIFIERS for name in inner) or len(model.classes_) < 3:
                raise UnsupportedModel("the linear back-end compiles a OneVsRestClassifier of linear classifiers "
                                       "(%s) with 3 or more classes" % ", ".join(LINEAR_CLASSIFIERS))
            coef = np.concatenate([np.atleast_2d(e.coef_) for e in model.estimators_])
            intercept = np.concatenate([np.atleast_1d(e.intercept_) for e in model.estimators_])
        else:
            coef, intercept = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
        w, b = coef.T.astype(np.float64), np.broadcast_to(intercept, (coef.shape[0],)).astype(np.float64)
        if w.shape[1] == 1:
            w, b = _binary_pair(w, b)
        return DenseChain([(w, b, "identity")], "classification", list(model.classes_))
    if kind in ("MLPClassifier", "MLPRegressor"):
        _fitted(model, kind, "coefs_")
        if model.activation not in ACTIVATIONS:
            raise BackendError("MLP activation %r is not supported (%s)" % (model.activation, ", ".join(ACTIVATIONS)))
        layers = [(np.asarray(w, np.float64), np.asarray(b, np.float64), model.activation)
                  for w, b in zip(model.coefs_, model.intercepts_)]
        w, b, _ = layers[-1]
        if kind == "MLPRegressor":
            layers[-1] = (w, b, "identity")
            return DenseChain(layers, "regression")
        if model.out_activation_ not in ("softmax", "logistic") or \
                (model.out_activation_ == "logistic" and len(model.classes_) != 2):
            raise BackendError("multi-label MLPClassifier (out activation %s) is not supported"
                               % model.out_activation_)
        layers[-1] = _binary_pair(w, b) + ("identity",) if w.shape[1] == 1 else (w, b, "identity")
        return DenseChain(layers, "classification", list(model.classes_))
    _fitted(model, kind, "coef_")
    coef = np.asarray(model.coef_, np.float64)
    w = coef.reshape(-1, 1) if coef.ndim == 1 else coef.T
    b = np.broadcast_to(np.asarray(model.intercept_, np.float64).reshape(-1), (w.shape[1],))
    return DenseChain([(w, b.copy(), "identity")], "regression")


def chain_function(chain):
    """(concrete TF function of one [1, F] float32 row, its module) computing the chain in float32."""
    import tensorflow as tf

    acts = {"identity": lambda t: t, "relu": tf.nn.relu, "tanh": tf.tanh, "logistic": tf.sigmoid}
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([1, chain.n_features], tf.float32)], autograph=False)
    def forward(x):
        for w, b, act in chain.layers:
            x = acts[act](tf.matmul(x, w.astype(np.float32)) + b.astype(np.float32))
        return x

    module.forward = forward
    return forward.get_concrete_function(), module


def chain_scores(chain, X):
    """The chain's outputs in float64 (what scikit-learn's decision_function / predict compute)."""
    acts = {"identity": lambda t: t, "relu": lambda t: np.maximum(t, 0), "tanh": np.tanh,
            "logistic": lambda t: 1 / (1 + np.exp(-t))}
    x = np.asarray(X, np.float64)
    for w, b, act in chain.layers:
        x = acts[act](x @ w + b)
    return x


def blob_outputs(blob, X):
    """Float outputs of a compiled blob for rows X (quantized by the blob's rule when its input is int8), run by
    the reference executor."""
    from ..blob import reference
    from ..blob.reader import parse

    parsed = parse(blob)
    t_in, t_out = parsed.tensors[parsed.inputs[0]], parsed.tensors[parsed.outputs[0]]
    ex = reference.Executor(blob)
    out = []
    for row in np.asarray(X, np.float32):
        x = row.reshape(t_in.shape)
        if t_in.dtype != F.DTYPE_FLOAT32:
            x = quantize_input(x, t_in.scale, t_in.zero_point)
        y = np.asarray(ex.run([x])[0]).reshape(-1).astype(np.float64)
        out.append(y if t_out.dtype == F.DTYPE_FLOAT32 else (y - t_out.zero_point) * t_out.scale)
    return np.array(out)


def quantize_input(x, scale, zero_point):
    """int8 of float features by the blob's QUANTIZE rule (binary32 quotient, ties away from zero), as a device."""
    quotient = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)
    return np.clip(np.sign(quotient) * np.floor(np.abs(quotient) + 0.5) + zero_point, -128, 127).astype(np.int8)


class LinearBackend(Backend):
    name = "linear"
    accepts = frozenset({"sklearn"})
    runtimes = frozenset({"tinyml-mpy", "tinyml-c"})
    optimizations = frozenset({"quantize", "min_agreement"})

    def _quantized(self, source, options):
        """(estimator, DenseChain, calibration rows, int8 .tflite bytes, report) for the source."""
        from . import quantize as Q
        from .trees import estimator
        model = estimator(source)
        chain = dense_chain(model)   # UnsupportedModel for a type this back-end does not take: no step shown for it
        step("read its %d layer(s)" % len(chain.layers))
        io_mode = {None: "float", "float": "float", True: "int8", "int8": "int8"}.get(options.get("quantize", None))
        if io_mode is None:
            raise BackendError("option quantize=%r: use \"float\" (the default), true or \"int8\""
                               % (options.get("quantize"),))
        rows = Q.representative_rows(options.get("representative", source.metadata.get("representative")),
                                     (None, chain.n_features))
        step("quantize to int8")
        fn, module = chain_function(chain)
        tflite = Q.quantize_function(fn, module, rows, io=io_mode)
        report = {"model": type(model).__name__, "task": chain.task,
                  "layers": [[int(w.shape[0]), int(w.shape[1]), act] for w, _, act in chain.layers],
                  "quantize": {"io": io_mode, "tflite_bytes": len(tflite),
                               "tflite_sha256": hashlib.sha256(tflite).hexdigest()}}
        return model, chain, rows, tflite, report

    def int8_tflite(self, source, options):
        """(int8 .tflite bytes, report) the blob is compiled from: what TFLite Micro judges it against.
        Deterministic (seeded calibration sample), like the int8 back-end's."""
        _, _, _, tflite, report = self._quantized(source, options)
        return tflite, report

    def compile(self, source, target, options):
        self.check(source, target, options)
        check_abi(target, self.name)
        model, chain, rows, tflite, report = self._quantized(source, options)
        art = blob_artifact(tflite, target, options.get("name") or source.name or None, report, self.name)
        step("measure agreement with the float model on the calibration rows")
        art.report.update(self._agreement(chain, model, art.data, rows))
        self._refuse_if_int8_fails(art.report, options.get("min_agreement", MIN_AGREEMENT))
        return art

    @staticmethod
    def _refuse_if_int8_fails(report, min_agreement):
        """BackendError when int8 loses the model: typically features of very different ranges (raw wine data:
        proline ~1,000, hue ~1) sharing the blob's one input scale."""
        if "agreement" in report:
            lost = report["agreement"] < float(min_agreement)
            what = "agrees with the float model on %.1f %% of the calibration rows (min_agreement %.2f)" \
                % (100 * report["agreement"], float(min_agreement))
        else:
            lost = report["max_abs_error"] > MAX_REGRESSION_ERROR * max(report["target_range"], 1e-12)
            what = "is off by up to %.3g on a target range of %.3g" % (report["max_abs_error"], report["target_range"])
        if lost:
            raise BackendError("the int8 blob %s: all features share one int8 input scale, so they must span similar "
                               "ranges; standardize them before the model (on the device too) and register the model "
                               "without its scaler" % what)

    @staticmethod
    def _agreement(chain, model, blob, rows):
        got = blob_outputs(blob, rows)
        if chain.task == "classification":
            want = model.predict(rows)
            pred = np.asarray(chain.classes, dtype=object)[np.argmax(got, axis=1)]
            return {"classes": [str(c) for c in chain.classes],
                    "agreement": float(np.mean([p == w for p, w in zip(pred, want)]))}
        want = np.asarray(model.predict(rows), np.float64).reshape(len(rows), -1)
        return {"max_abs_error": float(np.max(np.abs(got - want))),
                "target_range": float(np.max(want) - np.min(want))}
