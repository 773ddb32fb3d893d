"""The classic-model ops of docs/blob-format.md §11 (KERNEL, SVM_VOTE, KNN_VOTE, GAUSSIAN_NB, AFFINE): their
NumPy statement for the reference executor and their load-time rules for the reader.

Arithmetic is binary32, each operation rounded once, in the order the spec gives (features in ascending order,
accumulators starting at 0): NumPy float32 elementwise operations round exactly so, and the loops below run over
features with the rows vectorized, never through NumPy's pairwise `sum`. exp and tanh are the platform's
(binary32 in, binary32 out); the spec does not pin their last bit, which is why the shared vectors of these ops
avoid them or end in integer votes.
"""

import struct

import numpy as np

KERNEL_LINEAR, KERNEL_POLY, KERNEL_RBF, KERNEL_SIGMOID, KERNEL_SQEUCLIDEAN, KERNEL_MANHATTAN = range(6)
KERNEL_NAMES = ("linear", "poly", "rbf", "sigmoid", "sqeuclidean", "manhattan")
MAX_DEGREE = 16
OP_NAMES = ("KERNEL", "SVM_VOTE", "KNN_VOTE", "GAUSSIAN_NB", "AFFINE")
F32 = np.float32


def f32_bits(value):
    """The binary32 bit pattern of `value` as a signed int32 (how gamma and coef0 travel in op params)."""
    return struct.unpack("<i", struct.pack("<f", float(value)))[0]


def bits_f32(bits):
    return struct.unpack("<f", struct.pack("<i", int(bits)))[0]


# -- reference kernels: kernel(args, params, input_tensors, output_tensor) -> output array ----------------------------

def _powi(base, times):
    """libsvm's powi: binary exponentiation, each product rounded to binary32."""
    ret = np.ones_like(base)
    tmp = base
    while times > 0:
        if times % 2 == 1:
            ret = ret * tmp
        tmp = tmp * tmp
        times //= 2
    return ret


def kernel_rows(x, rows, kernel, gamma, coef0, degree):
    """KERNEL for one float32 feature vector x [F] against rows [N, F] -> float32 [N]."""
    x = np.asarray(x, dtype=F32).reshape(-1)
    rows = np.asarray(rows, dtype=F32)
    acc = np.zeros(len(rows), dtype=F32)
    g, c0 = F32(gamma), F32(coef0)
    with np.errstate(all="ignore"):
        for f in range(len(x)):
            if kernel in (KERNEL_LINEAR, KERNEL_POLY, KERNEL_SIGMOID):
                acc = acc + x[f] * rows[:, f]
            elif kernel in (KERNEL_RBF, KERNEL_SQEUCLIDEAN):
                d = x[f] - rows[:, f]
                acc = acc + d * d
            else:
                acc = acc + np.abs(x[f] - rows[:, f])
        if kernel == KERNEL_POLY:
            return _powi(g * acc + c0, degree)
        if kernel == KERNEL_RBF:
            return np.exp(-g * acc).astype(F32)
        if kernel == KERNEL_SIGMOID:
            return np.tanh(g * acc + c0).astype(F32)
    return acc


def svm_votes(k, coef, intercept, starts):
    """SVM_VOTE: one-vs-one votes int32 [C] from kernel values k [N] (libsvm's order of pairs and of sums)."""
    k = np.asarray(k, dtype=F32).reshape(-1)
    coef = np.asarray(coef, dtype=F32)
    starts = [int(v) for v in np.asarray(starts).reshape(-1)]
    n_classes = len(starts) - 1
    votes = np.zeros(n_classes, dtype=np.int64)
    p = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            terms = np.concatenate([coef[j - 1][starts[i]:starts[i + 1]] * k[starts[i]:starts[i + 1]],
                                    coef[i][starts[j]:starts[j + 1]] * k[starts[j]:starts[j + 1]],
                                    [F32(intercept[p])]]).astype(F32)
            dec = np.add.accumulate(terms, dtype=F32)[-1]     # sequential, as the devices add
            votes[i if dec > 0 else j] += 1
            p += 1
    return votes.astype(np.int32)


def knn_select(d, k):
    """Indices of the k smallest distances, nearest first; equal distances by lower index; NaN counts as +inf."""
    d = np.asarray(d, dtype=F32).reshape(-1)
    key = np.where(np.isnan(d), F32(np.inf), d)
    return np.lexsort((np.arange(len(d)), key))[:k]


def knn_votes(d, labels, n_classes, k, weights, root):
    """KNN_VOTE: float32 [C] class weights of the k nearest rows."""
    d = np.asarray(d, dtype=F32).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    near = knn_select(d, k)
    y = np.zeros(n_classes, dtype=F32)
    if not weights:
        for n in near:
            y[labels[n]] += F32(1)
        return y
    dist = np.sqrt(d[near]) if root else d[near]
    zero = dist == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        for n, dn, z in zip(near, dist, zero):
            if zero.any():
                y[labels[n]] += F32(1) if z else F32(0)
            else:
                y[labels[n]] = F32(y[labels[n]] + F32(F32(1) / dn))
    return y


def gaussian_nb(x, theta, w, bias):
    """GAUSSIAN_NB: y_c = bias_c - sum_f w_cf (x_f - theta_cf)^2, float32 [C]."""
    x = np.asarray(x, dtype=F32).reshape(-1)
    acc = np.zeros(len(theta), dtype=F32)
    with np.errstate(all="ignore"):
        for f in range(len(x)):
            d = x[f] - theta[:, f]
            acc = acc + w[:, f] * d * d
        return np.asarray(bias, dtype=F32).reshape(-1) - acc


def _kernel(args, P, ins, y_t):
    return kernel_rows(args[0], args[1], P["kernel"], bits_f32(P["gamma"]), bits_f32(P["coef0"]), P["degree"])


def _svm_vote(args, P, ins, y_t):
    k, coef, intercept, starts = args
    return svm_votes(k, coef.reshape(len(starts.reshape(-1)) - 2, -1), intercept.reshape(-1), starts)


def _knn_vote(args, P, ins, y_t):
    return knn_votes(args[0], args[1], int(np.prod(y_t.shape)), P["k"], P["weights"], P["root"])


def _gaussian_nb(args, P, ins, y_t):
    x, theta, w, bias = args
    return gaussian_nb(x, theta, w, bias)


def _affine(args, P, ins, y_t):
    x, m, o = (np.asarray(a, dtype=F32).reshape(-1) for a in args)
    return x * m + o


KERNELS = {"KERNEL": _kernel, "SVM_VOTE": _svm_vote, "KNN_VOTE": _knn_vote, "GAUSSIAN_NB": _gaussian_nb,
           "AFFINE": _affine}


# -- the reader's rules ------------------------------------------------------------------------------------------

def check_op(op, T, y, P, bad, need, float32, int32):
    """Dtype, storage and shape rules of §11 for one op (before any table is read). `need(t, dtype, what, const)`
    and `bad(msg, *args)` are the reader's."""
    name = op.name
    if name == "KERNEL":
        x, rows = T
        need(x, float32, "input", const=False)
        need(rows, float32, "rows", const=True)
        need(y, float32, "output")
        if len(rows.shape) != 2 or rows.shape[1] != x.elements:
            bad("rows must be [N,%d] (the input's features), are %s", x.elements, list(rows.shape))
        if y.elements != rows.shape[0]:
            bad("output has %d elements for %d rows", y.elements, rows.shape[0])
        if not 0 <= P["kernel"] < len(KERNEL_NAMES):
            bad("kernel %d outside 0..%d", P["kernel"], len(KERNEL_NAMES) - 1)
        if not 0 <= P["degree"] <= MAX_DEGREE:
            bad("degree %d outside 0..%d", P["degree"], MAX_DEGREE)
        for k in ("gamma", "coef0"):
            if not np.isfinite(bits_f32(P[k])):
                bad("%s is not a finite float32", k)
    elif name == "SVM_VOTE":
        k, coef, intercept, starts = T
        need(k, float32, "kernel values", const=False)
        for t, what in ((coef, "coef"), (intercept, "intercept")):
            need(t, float32, what, const=True)
        need(starts, int32, "starts", const=True)
        need(y, int32, "output")
        c = y.elements
        if c < 2:
            bad("needs at least 2 classes, output has %d", c)
        if len(starts.shape) != 1 or starts.elements != c + 1:
            bad("starts must be [%d] (classes + 1), is %s", c + 1, list(starts.shape))
        if len(coef.shape) != 2 or tuple(coef.shape) != (c - 1, k.elements):
            bad("coef must be [%d,%d], is %s", c - 1, k.elements, list(coef.shape))
        if len(intercept.shape) != 1 or intercept.elements != c * (c - 1) // 2:
            bad("intercept must be [%d] (one per class pair), is %s", c * (c - 1) // 2, list(intercept.shape))
    elif name == "KNN_VOTE":
        d, labels = T
        need(d, float32, "distances", const=False)
        need(labels, int32, "labels", const=True)
        need(y, float32, "output")
        if len(labels.shape) != 1 or labels.elements != d.elements:
            bad("labels must be [%d] (one per distance), is %s", d.elements, list(labels.shape))
        if not 1 <= P["k"] <= d.elements:
            bad("k=%d outside 1..%d", P["k"], d.elements)
        if P["weights"] not in (0, 1) or P["root"] not in (0, 1):
            bad("weights=%d and root=%d must be 0 or 1", P["weights"], P["root"])
    elif name == "GAUSSIAN_NB":
        x, theta, w, bias = T
        need(x, float32, "input", const=False)
        for t, what in ((theta, "theta"), (w, "w"), (bias, "bias")):
            need(t, float32, what, const=True)
        need(y, float32, "output")
        c, f = y.elements, x.elements
        for t, what in ((theta, "theta"), (w, "w")):
            if tuple(t.shape) != (c, f):
                bad("%s must be [%d,%d], is %s", what, c, f, list(t.shape))
        if len(bias.shape) != 1 or bias.elements != c:
            bad("bias must be [%d], is %s", c, list(bias.shape))
    elif name == "AFFINE":
        x, m, o = T
        need(x, float32, "input", const=False)
        need(m, float32, "m", const=True)
        need(o, float32, "o", const=True)
        need(y, float32, "output")
        for t, what in ((m, "m"), (o, "o"), (y, "output")):
            if t.elements != x.elements:
                bad("%s has %d elements, the input %d", what, t.elements, x.elements)
    for t in (T[0], y):        # the runtimes read float32 / int32 in place
        if t.offset % 4:
            bad("arena tensor %d is not 4-byte aligned", t.index)


def check_tables(op, T, y, const_i32, bad):
    """The table rules that read CONST: SVM_VOTE's starts (0, non-decreasing, ending at N) and KNN_VOTE's labels
    (class indices < C)."""
    if op.name == "SVM_VOTE":
        starts = const_i32(T[3]).reshape(-1).astype(np.int64)
        n = T[0].elements
        if starts[0] != 0 or starts[-1] != n or np.any(np.diff(starts) < 0):
            bad("starts %s must rise from 0 to %d", list(starts[:8]), n)
    elif op.name == "KNN_VOTE":
        labels = const_i32(T[1]).reshape(-1)
        wrong = (labels < 0) | (labels >= y.elements)
        if np.any(wrong):
            i = int(np.argmax(wrong))
            bad("label %d of row %d is not a class index < %d", int(labels[i]), i, y.elements)
