"""Classic scikit-learn back-end ("classic"): SVC / NuSVC, GaussianNB and KNeighborsClassifier -> a float32 blob of
the §11 ops (docs/blob-format.md): KERNEL, SVM_VOTE, KNN_VOTE, GAUSSIAN_NB, plus AFFINE for a scaler Pipeline.

    SVC          [AFFINE] -> KERNEL(linear | poly | rbf | sigmoid, support vectors) -> SVM_VOTE  -> int32 votes [C]
    KNN          [AFFINE] -> KERNEL(sqeuclidean | manhattan, training rows)        -> KNN_VOTE  -> float32 weights [C]
    GaussianNB   [AFFINE] -> GAUSSIAN_NB                                                        -> float32 log-joint [C]

The predicted class is the first argmax of the output, as scikit-learn's `predict` (libsvm's vote count, the
mode of the neighbours' labels, argmax of the joint log-likelihood). Why float32 and not int8 (docs/backends.md):
these models compare distances, exponentials and log-likelihoods whose range no single int8 scale holds, and
the tables (support vectors, training rows, class means) are the model itself, not weights to quantize.

The source is a pickled / joblib estimator (`kind="sklearn"`; unpickling runs code from the file, so register
only models you trust).
"""

import time

import numpy as np

from ..blob import classic as C
from ..blob import format as F
from ..blob.writer import OpRecord, TensorRecord, write_blob
from .interface import Artifact, Backend, BackendError, UnsupportedModel, check_abi, step
from .linear import SCALERS, _affine
from .quantize import representative_rows
from .trees import estimator

SUPPORTED = ("SVC", "NuSVC", "GaussianNB", "KNeighborsClassifier")
SVC_KERNELS = {"linear": C.KERNEL_LINEAR, "poly": C.KERNEL_POLY, "rbf": C.KERNEL_RBF, "sigmoid": C.KERNEL_SIGMOID}
MAX_ROWS = 1 << 16          # support vectors or training rows: past this a device has no business running it
OPCODES = {s.name: s.code for s in F.OPS if s.name in C.OP_NAMES}


class ClassicProgram:
    """The ops of one model before layout: [(op name, [const arrays], params, output dtype, output size)]."""

    def __init__(self, model_type, n_features, classes, output):
        self.model_type, self.n_features, self.classes, self.output = model_type, n_features, classes, output
        self.ops = []
        self.report = {}

    def add(self, name, consts, params, out_dtype, out_size):
        self.ops.append((name, [np.ascontiguousarray(c) for c in consts], list(params), out_dtype, out_size))


def _fitted(model, kind, attr):
    if not hasattr(model, attr):
        raise BackendError("the %s is not fitted" % kind)


def _unwrap(model):
    """(scaler affine maps [(m, o)], final estimator) of an estimator or a Pipeline of SCALERS ending in one."""
    if type(model).__name__ != "Pipeline":
        return [], model
    steps = [est for _, est in model.steps if est not in (None, "passthrough")]
    if not steps or any(type(e).__name__ not in SCALERS for e in steps[:-1]):
        raise UnsupportedModel("the classic back-end takes Pipelines of %s before %s, not %s"
                               % (", ".join(SCALERS), ", ".join(SUPPORTED),
                                  " -> ".join(type(e).__name__ for e in steps)))
    maps = []
    for scaler in steps[:-1]:
        _fitted(scaler, type(scaler).__name__, "scale_")
        maps.append(_affine(scaler))
    return maps, steps[-1]


def _program_svc(model, kind):
    _fitted(model, kind, "support_vectors_")
    if callable(model.kernel) or model.kernel not in SVC_KERNELS:
        raise BackendError("SVC kernel %r is not supported (%s)" % (model.kernel, ", ".join(SVC_KERNELS)))
    if getattr(model, "_sparse", False):
        raise BackendError("an SVC trained on sparse input is not supported: train it on a dense array")
    classes = list(model.classes_)
    if getattr(model, "break_ties", False) and len(classes) > 2 and model.decision_function_shape == "ovr":
        raise BackendError("SVC(break_ties=True) predicts from decision_function, not votes: train it with "
                           "break_ties=False (the default)")
    sv = np.asarray(model.support_vectors_, dtype=np.float64)
    if len(sv) > MAX_ROWS:
        raise BackendError("%d support vectors, at most %d" % (len(sv), MAX_ROWS))
    n_support = np.asarray(model._n_support, dtype=np.int64)      # libsvm's own (unflipped) coefficients
    starts = np.concatenate([[0], np.cumsum(n_support)]).astype(np.int32)
    kernel = SVC_KERNELS[model.kernel]
    prog = ClassicProgram(kind, sv.shape[1], classes, "votes")
    prog.add("KERNEL", [sv.astype(np.float32)],
             [kernel, C.f32_bits(model._gamma), C.f32_bits(model.coef0), int(model.degree)], F.DTYPE_FLOAT32,
             len(sv))
    if kernel == C.KERNEL_POLY and not 0 <= int(model.degree) <= C.MAX_DEGREE:
        raise BackendError("polynomial degree %d: at most %d" % (model.degree, C.MAX_DEGREE))
    prog.add("SVM_VOTE", [np.asarray(model._dual_coef_, np.float32), np.asarray(model._intercept_, np.float32),
                          starts], [], F.DTYPE_INT32, len(classes))
    prog.report = {"kernel": model.kernel, "support_vectors": int(len(sv)), "gamma": float(model._gamma),
                   "coef0": float(model.coef0), "degree": int(model.degree)}
    return prog


def _program_knn(model, kind):
    _fitted(model, kind, "_fit_X")
    metric, p = model.effective_metric_, model.effective_metric_params_.get("p", getattr(model, "p", 2))
    if metric == "minkowski":
        metric = {1: "manhattan", 2: "euclidean"}.get(p, "minkowski p=%s" % p)
    if metric not in ("euclidean", "manhattan"):
        raise BackendError("KNeighborsClassifier metric %s is not supported (euclidean, manhattan)" % metric)
    if model.weights not in ("uniform", "distance"):
        raise BackendError("KNeighborsClassifier weights %r are not supported (uniform, distance)" % model.weights)
    if getattr(model, "outputs_2d_", False):
        raise BackendError("multi-output KNeighborsClassifier is not supported")
    rows = np.asarray(model._fit_X, dtype=np.float64)
    if len(rows) > MAX_ROWS:
        raise BackendError("%d training rows, at most %d: a k-NN model keeps its whole training set" %
                           (len(rows), MAX_ROWS))
    classes = list(model.classes_)
    prog = ClassicProgram(kind, rows.shape[1], classes, "weights")
    euclid = metric == "euclidean"
    prog.add("KERNEL", [rows.astype(np.float32)],
             [C.KERNEL_SQEUCLIDEAN if euclid else C.KERNEL_MANHATTAN, 0, 0, 0], F.DTYPE_FLOAT32, len(rows))
    prog.add("KNN_VOTE", [np.asarray(model._y, dtype=np.int32).reshape(-1)],
             [int(model.n_neighbors), int(model.weights == "distance"), int(euclid)], F.DTYPE_FLOAT32, len(classes))
    prog.report = {"metric": metric, "k": int(model.n_neighbors), "weights": model.weights,
                   "training_rows": int(len(rows))}
    return prog


def _program_gnb(model, kind):
    _fitted(model, kind, "theta_")
    theta = np.asarray(model.theta_, dtype=np.float64)
    var = np.asarray(model.var_, dtype=np.float64)
    prior = np.asarray(model.class_prior_, dtype=np.float64)
    with np.errstate(divide="ignore"):
        bias = np.log(prior) - 0.5 * np.sum(np.log(2.0 * np.pi * var), axis=1)
    if not np.all(np.isfinite(bias)) or np.any(var <= 0):
        raise BackendError("GaussianNB with a zero prior or variance cannot be compiled")
    prog = ClassicProgram(kind, theta.shape[1], list(model.classes_), "log-joint")
    prog.add("GAUSSIAN_NB", [theta.astype(np.float32), (0.5 / var).astype(np.float32), bias.astype(np.float32)],
             [], F.DTYPE_FLOAT32, len(theta))
    return prog


def program_from_estimator(model):
    """The ClassicProgram of a fitted estimator of a SUPPORTED type (or a scaler Pipeline ending in one)."""
    maps, est = _unwrap(model)
    kind = type(est).__name__
    if kind not in SUPPORTED:
        raise UnsupportedModel("the classic back-end compiles %s, not a %s" % (", ".join(SUPPORTED), kind))
    build = {"SVC": _program_svc, "NuSVC": _program_svc, "GaussianNB": _program_gnb,
             "KNeighborsClassifier": _program_knn}[kind]
    prog = build(est, kind)
    if maps:
        m, o = np.ones(prog.n_features), np.zeros(prog.n_features)
        for mul, off in maps:                         # compose: (x * m + o) * mul + off
            m, o = m * mul, o * mul + off
        prog.ops.insert(0, ("AFFINE", [m.astype(np.float32), o.astype(np.float32)], [], F.DTYPE_FLOAT32,
                            prog.n_features))
        prog.report["scaler"] = [type(s).__name__ for _, s in model.steps[:-1]]
    return prog


def _align(n, a=16):
    return (n + a - 1) // a * a


def write_classic_blob(prog, name=""):
    """Blob bytes of a ClassicProgram: x float32 [1,F] at arena 0, each op's output after the previous one's."""
    records = [TensorRecord(F.DTYPE_FLOAT32, (1, prog.n_features), F.STORAGE_ARENA, 0)]
    const = bytearray()
    arena = _align(4 * prog.n_features)
    ops, prev = [], 0
    for op_name, consts, params, out_dtype, out_size in prog.ops:
        inputs = [prev]
        for arr in consts:
            const += b"\0" * ((-len(const)) % F.CONST_ALIGN)
            dtype = F.DTYPE_INT32 if arr.dtype == np.int32 else F.DTYPE_FLOAT32
            inputs.append(len(records))
            records.append(TensorRecord(dtype, tuple(arr.shape), F.STORAGE_CONST, len(const)))
            const += arr.astype("<i4" if dtype == F.DTYPE_INT32 else "<f4").tobytes()
        out = len(records)
        records.append(TensorRecord(out_dtype, (1, out_size), F.STORAGE_ARENA, arena))
        arena = _align(arena + 4 * out_size)
        ops.append(OpRecord(OPCODES[op_name], inputs, [out], params))
        prev = out
    meta = {"name": name, "model": prog.model_type, "classes": [str(c) for c in prog.classes],
            "ops": [o[0] for o in prog.ops], "macs": 0,
            "inputs": [{"name": "features", "shape": [1, prog.n_features], "dtype": "float32"}],
            "outputs": [{"name": prog.output, "shape": [1, len(prog.classes)],
                         "dtype": F.DTYPE_NAMES[prog.ops[-1][3]]}]}
    blob = write_blob(records, [0], [prev], ops, bytes(const), arena, meta=meta)
    return blob, arena


def compile_estimator(model, name=""):
    """(blob bytes, ClassicProgram, arena bytes) for a fitted estimator."""
    prog = program_from_estimator(model)
    blob, arena = write_classic_blob(prog, name)
    return blob, prog, arena


def blob_predict(blob, x):
    """Class indices of the rows of x through the blob's reference executor (the device's arithmetic)."""
    from ..blob.reference import Executor

    ex = Executor(blob)
    rows = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    return np.array([int(np.argmax(ex.run([r[None, :]])[0].reshape(-1))) for r in rows], dtype=np.int64)


U32 = 2.0 ** -24      # unit roundoff of binary32


def svc_decision_bound(model, x):
    """(dec, bound), each [rows, class pairs] in libsvm's pair order: an SVC's float64 decision values on the
    rows of x and a bound on how far the blob's binary32 evaluation (§11: float32 tables, sums in order) can be
    from them. Where |dec| > bound for every pair, the blob's votes, hence its prediction, are scikit-learn's.
    A first-order bound, doubled: the rounding of the stored tables and of each operation, summed in absolute
    value (Higham's gamma_n), propagated through exp / powi / tanh by their derivatives."""
    maps, est = _unwrap(model)
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    ex = np.zeros_like(x)
    for mul, off in maps:                      # the scalers' rounding, carried as an input error
        x = x * mul + off
        ex = np.abs(ex * mul) + 2 * U32 * (np.abs(x) + np.abs(off))
    sv = np.asarray(est.support_vectors_, dtype=np.float64)
    nf = sv.shape[1]
    g, c0, deg = float(est._gamma), float(est.coef0), int(est.degree)
    kind = est.kernel
    if kind == "rbf":
        diff = np.abs(x[:, None, :] - sv[None, :, :])
        sq = np.sum(diff ** 2, axis=2)
        e_sq = (nf + 3) * U32 * sq + 2 * np.sum(diff * (U32 * np.abs(sv)[None] + ex[:, None, :]), axis=2)
        k = np.exp(-g * sq)
        e_k = k * (g * e_sq + 3 * U32 * (1 + g * sq))
    else:
        dot = x @ sv.T
        e_dot = (nf + 2) * U32 * (np.abs(x) @ np.abs(sv).T) + ex @ np.abs(sv).T
        base = g * dot + c0
        e_base = g * e_dot + 2 * U32 * (np.abs(g * dot) + abs(c0))
        if kind == "linear":
            k, e_k = dot, e_dot
        elif kind == "poly":
            k = base ** deg
            e_k = deg * np.abs(base) ** max(deg - 1, 0) * e_base + 2 * deg * U32 * np.abs(k)
        else:
            k, e_k = np.tanh(base), e_base + 2 * U32
    coef, icpt = np.asarray(est._dual_coef_, np.float64), np.asarray(est._intercept_, np.float64)
    starts = np.concatenate([[0], np.cumsum(est._n_support)])
    decs, bounds = [], []
    p = 0
    for i in range(len(starts) - 1):
        for j in range(i + 1, len(starts) - 1):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            w = np.concatenate([coef[j - 1, si], coef[i, sj]])
            kk = np.concatenate([k[:, si], k[:, sj]], axis=1)
            ee = np.concatenate([e_k[:, si], e_k[:, sj]], axis=1)
            terms = np.abs(kk * w)
            decs.append(kk @ w + icpt[p])
            bounds.append(2 * (ee @ np.abs(w) + (len(w) + 3) * U32 * terms.sum(axis=1) + U32 * abs(icpt[p])))
            p += 1
    return np.stack(decs, axis=1), np.stack(bounds, axis=1)


def gnb_score_bound(model, x):
    """(jll, bound), each [rows, classes]: a GaussianNB's float64 joint log-likelihoods on the rows of x and a bound
    on how far the blob's binary32 GAUSSIAN_NB can be from them (tables rounded to binary32, each operation rounded,
    summed in absolute value, doubled). Where the top two classes differ by more than the sum of their bounds, the
    blob predicts what scikit-learn does. For the bare estimator (no scaler pipeline)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    theta, var = np.asarray(model.theta_, np.float64), np.asarray(model.var_, np.float64)
    w = 0.5 / var
    prior = np.asarray(model.class_prior_, np.float64)
    bias = np.log(prior) - 0.5 * np.sum(np.log(2.0 * np.pi * var), axis=1)
    d = np.abs(x[:, None, :] - theta[None, :, :])                     # [rows, C, F]
    t = w[None] * d ** 2
    nf = x.shape[1]
    err = ((nf + 4) * U32 * t + 2 * w[None] * d * U32 * (np.abs(theta)[None] + d)).sum(axis=2)
    err += 3 * U32 * np.abs(bias)[None] + U32 * t.sum(axis=2)
    return bias[None] - t.sum(axis=2), 2 * err


def certified_share(model, x):
    """Share of the rows of x whose prediction the float32 bound proves equal to scikit-learn's (SVC: every class
    pair's decision outside svc_decision_bound; bare GaussianNB: the top two log-likelihoods farther apart than
    their gnb_score_bound), or None for a model without a bound (k-NN, a GaussianNB behind a scaler)."""
    maps, est = _unwrap(model)
    kind = type(est).__name__
    if kind in ("SVC", "NuSVC"):
        dec, bound = svc_decision_bound(model, x)
        return round(float(np.mean(np.all(np.abs(dec) > bound, axis=1))), 4)
    if kind == "GaussianNB" and not maps:
        jll, bound = gnb_score_bound(est, x)
        top = np.argsort(-jll, axis=1)[:, :2]
        r = np.arange(len(x))
        return round(float(np.mean(jll[r, top[:, 0]] - jll[r, top[:, 1]] > bound[r, top[:, 0]] + bound[r, top[:, 1]])),
                     4)
    return None


class ClassicBackend(Backend):
    name = "classic"
    accepts = frozenset({"sklearn"})
    runtimes = frozenset({"tinyml-mpy", "tinyml-c"})
    optimizations = frozenset()

    def compile(self, source, target, options):
        self.check(source, target, options)
        check_abi(target, self.name)
        started = time.perf_counter()
        # no step announced before the estimator is known to be one of ours: `models add` of a forest would
        # otherwise show a classic step for a model only the trees back-end takes
        model = estimator(source)
        prog = program_from_estimator(model)          # UnsupportedModel before any other work
        step("write its %s tables" % prog.model_type)
        blob, arena = write_classic_blob(prog, options.get("name") or source.name)
        ops = list(dict.fromkeys(o[0] for o in prog.ops))
        missing = [o for o in ops if target.ops and o not in target.ops]
        if missing:
            raise BackendError("the target runtime does not implement %s" % ", ".join(missing))
        report = dict(prog.report, model=prog.model_type, classes=[str(c) for c in prog.classes],
                      output=prog.output, table_bytes=int(sum(c.nbytes for o in prog.ops for c in o[1])))
        rows = options.get("representative", source.metadata.get("representative"))
        if rows is not None:
            step("check the float32 bound on the representative rows")
            report["float32_certified"] = certified_share(model, representative_rows(rows, (None, prog.n_features)))
        report["compile_seconds"] = round(time.perf_counter() - started, 3)
        return Artifact(kind="tmlb", data=blob, flash_bytes=len(blob), ram_bytes=arena, macs=0, ops=ops,
                        features={"abi": F.ABI, "float_io": True}, report=report)
