"""Tree-ensemble back-end: scikit-learn decision trees and ensembles -> a TREE_ENSEMBLE blob (opcode 16).

The blob holds one op (docs/blob-format.md, section "TREE_ENSEMBLE") with four const tables:

    nodes  int32 [N, 4]  (feature, threshold key, left, right); a child < 0 is the leaf ~child
    leaves int32 [L, W]  fixed-point scores a leaf adds to W consecutive classes
    trees  int32 [T, 2]  (root, first class the tree's leaves add to); a root < 0 is a one-leaf tree
    init   int32 [C]     the scores before any tree is added

Decisions are integer comparisons of order-preserving keys of float32 (`float32_key`). scikit-learn casts X to
float32 and compares `x <= threshold` with the threshold in float64; for a float32 x that is the same as comparing
with the threshold rounded *down* to float32, so the device takes exactly scikit-learn's branch for every input.
Scores are sums of fixed-point int32 values; the predicted class is the first argmax, as numpy's argmax.

The source model is a pickled estimator (what `tinymlaas models add model.pkl` stores). Unpickling runs code from
the file, so only register models from people you trust -- as with any pickle.
"""

import io
import time

import numpy as np

from ..blob import format as F
from ..blob.writer import OpRecord, TensorRecord, write_blob
from .interface import Artifact, Backend, BackendError, UnsupportedModel, check_abi, step

TREE_ENSEMBLE = 16
OP_NAME = "TREE_ENSEMBLE"
OP_INPUTS = ("x", "nodes", "leaves", "trees", "init")
OP_PARAMS = ("frac_bits", "max_depth")
MAX_LEAVES = 1 << 24      # leaf indices are stored as ~leaf and the kernels mask them to 24 bits
INT32_MAX = (1 << 31) - 1
FLOAT32_INF_BITS = 0x7F800000

SUPPORTED = ("DecisionTreeClassifier", "RandomForestClassifier", "ExtraTreesClassifier",
             "GradientBoostingClassifier", "IsolationForest")


# -- keys and fixed point ---------------------------------------------------------------------------------------

def float32_key(values):
    """Order-preserving int32 keys of float32 values: key(a) <= key(b) iff a <= b, with -0.0 and +0.0 equal.

    Non-negative floats keep their bit pattern; a negative float becomes minus the bits of its magnitude. NaN has
    no key (raises ValueError)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.int64)
    magnitude = bits & 0x7FFFFFFF
    if np.any(magnitude > FLOAT32_INF_BITS):
        raise ValueError("NaN has no order key")
    return np.where(bits >> 31, -magnitude, magnitude).astype(np.int64)


def round_down_float32(thresholds):
    """Largest float32 <= each float64 threshold (so `x32 <= t64` iff `x32 <= result` for every float32 x)."""
    t64 = np.asarray(thresholds, dtype=np.float64)
    t32 = t64.astype(np.float32)
    above = t32.astype(np.float64) > t64
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _frac_bits(bound, n_terms):
    """Most fraction bits such that a sum bounded by `bound` (real units) of `n_terms` rounded terms fits int32."""
    bound = max(float(bound), 1e-30)
    for bits in range(30, -1, -1):
        if bound * (1 << bits) + n_terms <= INT32_MAX:
            return bits
    raise BackendError("scores of this model (|sum| up to %g) do not fit int32 fixed point" % bound)


# -- scikit-learn -> tables ---------------------------------------------------------------------------------------

class TreeTables:
    """The four const tables of one TREE_ENSEMBLE op plus what the report shows."""

    def __init__(self, nodes, leaves, trees, init, frac_bits, max_depth, n_features, classes, model_type):
        self.nodes = np.ascontiguousarray(nodes, dtype=np.int32).reshape(-1, 4)
        self.leaves = np.ascontiguousarray(leaves, dtype=np.int32)
        self.trees = np.ascontiguousarray(trees, dtype=np.int32).reshape(-1, 2)
        self.init = np.ascontiguousarray(init, dtype=np.int32).reshape(-1)
        self.frac_bits = int(frac_bits)
        self.max_depth = int(max_depth)
        self.n_features = int(n_features)
        self.classes = list(classes)
        self.model_type = model_type

    @property
    def n_classes(self):
        return len(self.init)


def _append_tree(tree, leaf_rows, nodes, leaves, features=None):
    """Append one sklearn tree_ to the node/leaf lists; return its root entry (node index or ~leaf). features: the
    model's feature index of each of the tree's (a bagging ensemble trained on a subset), else the same."""
    left, right = tree.children_left, tree.children_right
    base = len(nodes)
    internal = np.flatnonzero(left != -1)          # sklearn: -1 = no child (TREE_LEAF)
    leaf_ids = np.flatnonzero(left == -1)
    # Node order is sklearn's (depth-first pre-order), restricted to internal nodes: a child's index is then
    # always greater than its parent's, which the device checks to rule out cycles.
    node_index = np.full(tree.node_count, -1, dtype=np.int64)
    node_index[internal] = base + np.arange(len(internal))
    leaf_index = np.full(tree.node_count, -1, dtype=np.int64)
    leaf_index[leaf_ids] = len(leaves) + np.arange(len(leaf_ids))

    def ref(i):
        return int(node_index[i]) if left[i] != -1 else ~int(leaf_index[i])

    keys = float32_key(round_down_float32(tree.threshold[internal])) if len(internal) else []
    for k, i in enumerate(internal):
        f = int(tree.feature[i])
        nodes.append((f if features is None else int(features[f]), int(keys[k]), ref(left[i]), ref(right[i])))
    for i in leaf_ids:
        leaves.append(leaf_rows[i])
    return ref(0)


def _check_tree(tree):
    if tree.n_outputs != 1:
        raise BackendError("multi-output trees are not supported (n_outputs=%d)" % tree.n_outputs)


def _dedupe_leaves(leaves, nodes, trees, width):
    """Store each distinct leaf row once (pure leaves of a forest repeat the same few rows); remap references."""
    if not leaves:
        return leaves, nodes, trees
    rows = np.array(leaves, dtype=np.int64).reshape(-1, width)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)

    def remap(ref):
        return ref if ref >= 0 else ~int(inverse[~ref])

    nodes = [(f, k, remap(l), remap(r)) for f, k, l, r in nodes]
    trees = [(remap(root), first) for root, first in trees]
    return list(unique), nodes, trees


def tables_from_estimator(model):
    """TreeTables for a fitted scikit-learn classifier of one of the SUPPORTED types."""
    kind = type(model).__name__
    if kind not in SUPPORTED:
        raise UnsupportedModel("the trees back-end compiles tree ensembles (%s), not a %s: train one of those on the "
                           "same data" % (", ".join(SUPPORTED), kind))
    if kind == "IsolationForest":
        return _isolation_tables(model)
    if not hasattr(model, "classes_"):
        raise BackendError("the %s is not fitted" % kind)
    classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
    n_classes = len(classes)
    n_features = int(model.n_features_in_)
    nodes, leaves, trees = [], [], []
    max_depth = 0

    if kind == "GradientBoostingClassifier":
        from sklearn.dummy import DummyClassifier
        init = model.init_
        if not (init == "zero" or isinstance(init, DummyClassifier)):
            raise BackendError("GradientBoostingClassifier with a custom init estimator is not supported")
        raw_init = model._raw_predict_init(np.zeros((1, n_features), dtype=np.float32))[0]   # constant per class
        stages = model.estimators_                      # [n_stages, K]
        lr = float(model.learning_rate)
        k_per_stage = stages.shape[1]
        # Bound of |score| per class: |init| + sum over stages of the tree's largest |lr * leaf|.
        bound = [abs(float(raw_init[k])) for k in range(k_per_stage)]
        for row in stages:
            for k, est in enumerate(row):
                bound[k] += lr * float(np.max(np.abs(est.tree_.value)))
        frac = _frac_bits(max(bound), stages.size + 1)
        scale = float(1 << frac)
        for row in stages:
            for k, est in enumerate(row):
                tree = est.tree_
                _check_tree(tree)
                rows = np.rint(lr * tree.value[:, 0, 0] * scale).astype(np.int64).reshape(-1, 1)
                root = _append_tree(tree, rows, nodes, leaves)
                # Binary: one tree per stage scoring class 1; multiclass: stage tree k scores class k.
                trees.append((root, 1 if k_per_stage == 1 else k))
                max_depth = max(max_depth, tree.max_depth)
        if k_per_stage == 1:
            # sklearn predicts class 1 iff raw >= 0. Class 0 scores a constant -1 LSB so the first argmax of
            # (-1, raw) picks class 1 exactly when raw >= 0, including raw == 0.
            init_scores = [-1, int(np.rint(raw_init[0] * scale))]
        else:
            init_scores = [int(np.rint(raw_init[k] * scale)) for k in range(k_per_stage)]
        width = 1
    else:
        estimators = [model] if kind == "DecisionTreeClassifier" else list(model.estimators_)
        frac = _frac_bits(len(estimators), len(estimators))
        scale = float(1 << frac)
        for est in estimators:
            tree = est.tree_
            _check_tree(tree)
            value = tree.value[:, 0, :].astype(np.float64)
            # scikit-learn >= 1.4 stores class fractions; older versions store weighted counts. Normalise both.
            sums = value.sum(axis=1, keepdims=True)
            proba = np.divide(value, sums, out=np.zeros_like(value), where=sums > 0)
            rows = np.rint(proba * scale).astype(np.int64)
            trees.append((_append_tree(tree, rows, nodes, leaves), 0))
            max_depth = max(max_depth, tree.max_depth)
        init_scores = [0] * n_classes
        width = n_classes

    leaves, nodes, trees = _dedupe_leaves(leaves, nodes, trees, width)
    if len(leaves) >= MAX_LEAVES:
        raise BackendError("%d leaves: the blob allows at most %d" % (len(leaves), MAX_LEAVES - 1))
    leaf_table = np.array(leaves, dtype=np.int64).reshape(-1, width)
    nodes_arr = np.array(nodes, dtype=np.int64).reshape(-1, 4)
    return TreeTables(nodes_arr, leaf_table, np.array(trees, dtype=np.int64), np.array(init_scores), frac,
                      max_depth, n_features, classes, kind)


def _isolation_tables(model):
    """An IsolationForest as one score: minus the sum over its trees of the path length scikit-learn gives a sample
    (the nodes to its leaf plus the average path length of the samples the leaf held, less one). Higher is more
    anomalous, in the order of scikit-learn's `score_samples` (2 ** -(that sum / its normaliser), negated); an
    anomaly model's threshold is set on it (service/anomaly.py, score "output")."""
    from sklearn.ensemble._iforest import _average_path_length

    if not hasattr(model, "estimators_"):
        raise BackendError("the IsolationForest is not fitted")
    per_tree = []
    for est, features in zip(model.estimators_, model.estimators_features_):
        tree = est.tree_
        _check_tree(tree)
        depth = tree.compute_node_depths().astype(np.float64)      # root 1, as scikit-learn counts
        per_tree.append((tree, features, -(depth + _average_path_length(tree.n_node_samples) - 1.0)))
    frac = _frac_bits(sum(float(np.max(np.abs(v))) for _, _, v in per_tree), len(per_tree))
    nodes, leaves, trees = [], [], []
    for tree, features, value in per_tree:
        rows = np.rint(value * float(1 << frac)).astype(np.int64).reshape(-1, 1)
        trees.append((_append_tree(tree, rows, nodes, leaves, features), 0))
    leaves, nodes, trees = _dedupe_leaves(leaves, nodes, trees, 1)
    return TreeTables(np.array(nodes, dtype=np.int64).reshape(-1, 4), np.array(leaves, dtype=np.int64).reshape(-1, 1),
                      np.array(trees, dtype=np.int64), np.array([0]), frac,
                      max(t.max_depth for t, _, _ in per_tree), int(model.n_features_in_), ["score"], "IsolationForest")


# -- the blob -------------------------------------------------------------------------------------------------------

def _align(n, a):
    return (n + a - 1) // a * a


def write_tree_blob(tables, name=""):
    """Blob bytes for `tables` (a TreeTables)."""
    f, c = tables.n_features, tables.n_classes
    x_off = 0
    y_off = _align(4 * f, 16)
    arena = y_off + 4 * c
    const = bytearray()
    records = [TensorRecord(F.DTYPE_FLOAT32, (1, f), F.STORAGE_ARENA, x_off),
               TensorRecord(F.DTYPE_INT32, (1, c), F.STORAGE_ARENA, y_off)]
    for arr in (tables.nodes, tables.leaves, tables.trees, tables.init):
        const += b"\0" * ((-len(const)) % F.CONST_ALIGN)
        records.append(TensorRecord(F.DTYPE_INT32, tuple(arr.shape), F.STORAGE_CONST, len(const)))
        const += arr.astype("<i4").tobytes()
    if len(tables.nodes) == 0:
        # Every tree is a single leaf; a tensor needs dims >= 1, so keep one unreachable node.
        raise BackendError("model has no split at all; a constant predictor needs no tree blob")
    op = OpRecord(TREE_ENSEMBLE, [0, 2, 3, 4, 5], [1], [tables.frac_bits, tables.max_depth])
    meta = {
        "name": name,
        "model": tables.model_type,
        "classes": [str(c) for c in tables.classes],
        "ops": [OP_NAME],
        "macs": 0,
        "frac_bits": tables.frac_bits,
        "n_trees": int(len(tables.trees)),
        "n_nodes": int(len(tables.nodes)),
        "n_leaves": int(len(tables.leaves)),
        "max_depth": tables.max_depth,
        "inputs": [{"name": "features", "shape": [1, f], "dtype": "float32"}],
        "outputs": [{"name": "scores", "shape": [1, c], "dtype": "int32", "frac_bits": tables.frac_bits}],
    }
    return write_blob(records, [0], [1], [op], bytes(const), arena, meta=meta)


def read_tree_blob(blob):
    """Validate a TREE_ENSEMBLE blob; return (parsed Blob from blob/reader.py, TreeTables-like dict of arrays, op)."""
    from ..blob.reader import parse
    parsed = parse(blob)
    if len(parsed.ops) != 1 or parsed.ops[0].spec.code != TREE_ENSEMBLE:
        raise ValueError("not a tree-ensemble blob (ops: %s)" % [op.name for op in parsed.ops])
    op = parsed.ops[0]
    x_t = parsed.tensors[op.inputs[0]]
    arrays = {}
    for name, index in zip(OP_INPUTS[1:], op.inputs[1:]):
        t = parsed.tensors[index]
        if not t.is_const or t.dtype != F.DTYPE_INT32:
            raise ValueError("TREE_ENSEMBLE %s must be a const int32 tensor" % name)
        arrays[name] = np.frombuffer(parsed.const, dtype="<i4", count=t.nbytes // 4, offset=t.offset).reshape(t.shape)
    check_tables(arrays["nodes"], arrays["leaves"], arrays["trees"], arrays["init"], x_t.elements)
    return parsed, arrays, op


# -- NumPy statement of the op (host reference) ---------------------------------------------------------------------

def reference_scores(tables_or_args, x):
    """Scores int64 [n, C] for float32 rows x [n, F], walking the tables exactly as the device does."""
    if isinstance(tables_or_args, TreeTables):
        t = tables_or_args
        nodes, leaves, trees, init = t.nodes, t.leaves, t.trees, t.init
    else:
        nodes, leaves, trees, init = tables_or_args
    nodes = np.asarray(nodes, dtype=np.int64).reshape(-1, 4)
    leaves = np.asarray(leaves, dtype=np.int64)
    leaves = leaves.reshape(len(leaves), -1)
    trees = np.asarray(trees, dtype=np.int64).reshape(-1, 2)
    keys = float32_key(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    n = len(keys)
    scores = np.tile(np.asarray(init, dtype=np.int64).reshape(1, -1), (n, 1))
    rows = np.arange(n)
    width = leaves.shape[1]
    for root, first in trees:
        at = np.full(n, root, dtype=np.int64)
        live = at >= 0
        while live.any():
            r = rows[live]
            node = nodes[at[live]]
            go_left = keys[r, node[:, 0]] <= node[:, 1]
            at[live] = np.where(go_left, node[:, 2], node[:, 3])
            live = at >= 0
        scores[:, first:first + width] += leaves[~at]
    return scores


def reference_kernel(args, params, input_tensors, output_tensor):
    """TREE_ENSEMBLE in the signature of blob/reference.py's KERNELS: args = [x, nodes, leaves, trees, init]."""
    x, nodes, leaves, trees, init = args
    return reference_scores((nodes, leaves, trees, init), x.reshape(1, -1)).astype(np.int32)


def check_tables(nodes, leaves, trees, init, n_features):
    """The load-time rules of TREE_ENSEMBLE (docs/blob-format.md); raises ValueError naming the first broken one."""
    nodes = np.asarray(nodes, dtype=np.int64).reshape(-1, 4)
    n, n_leaves = len(nodes), len(leaves)
    width = int(np.asarray(leaves).reshape(n_leaves, -1).shape[1]) if n_leaves else 0
    c = len(np.asarray(init).reshape(-1))
    if n_leaves >= MAX_LEAVES:
        raise ValueError("%d leaves, at most %d allowed" % (n_leaves, MAX_LEAVES - 1))
    for i, (feat, key, left, right) in enumerate(nodes):
        if not 0 <= feat < n_features:
            raise ValueError("node %d: feature %d outside [0, %d)" % (i, feat, n_features))
        if abs(key) > FLOAT32_INF_BITS:
            raise ValueError("node %d: threshold key %d is a NaN" % (i, key))
        for child in (left, right):
            if child >= 0 and not i < child < n:
                raise ValueError("node %d: child node %d is not in (%d, %d)" % (i, child, i, n))
            if child < 0 and ~child >= n_leaves:
                raise ValueError("node %d: leaf %d outside [0, %d)" % (i, ~child, n_leaves))
    for t, (root, first) in enumerate(np.asarray(trees, dtype=np.int64).reshape(-1, 2)):
        if root >= n or (root < 0 and ~root >= n_leaves):
            raise ValueError("tree %d: root %d outside the tables" % (t, root))
        if not 0 <= first <= c - width:
            raise ValueError("tree %d: classes [%d, %d) outside [0, %d)" % (t, first, first + width, c))


# -- the back-end ---------------------------------------------------------------------------------------------------

def load_estimator(data):
    """A scikit-learn estimator from pickle / joblib bytes."""
    import joblib
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as e:  # a corrupt pickle raises anything from UnpicklingError to AttributeError
        raise BackendError("cannot unpickle the scikit-learn model: %s: %s" % (type(e).__name__, e)) from None


def estimator(source):
    """The fitted scikit-learn estimator of a source: the object itself, or unpickled from its bytes."""
    return source.data if not isinstance(source.data, (bytes, bytearray)) else load_estimator(source.data)


def compile_estimator(model, name=""):
    """(blob bytes, TreeTables) for a fitted estimator."""
    tables = tables_from_estimator(model)
    return write_tree_blob(tables, name), tables


class TreeBackend(Backend):
    name = "trees"
    accepts = frozenset({"sklearn"})
    runtimes = frozenset({"tinyml-mpy", "tinyml-c"})
    optimizations = frozenset()

    def compile(self, source, target, options):
        self.check(source, target, options)
        check_abi(target, self.name)
        if target.ops and OP_NAME not in target.ops:
            raise BackendError("the target runtime does not implement %s" % OP_NAME)
        started = time.perf_counter()
        step("load the scikit-learn model")
        model = estimator(source)
        step("compile its trees")
        blob, tables = compile_estimator(model, options.get("name") or source.name)
        n_trees = len(tables.trees)
        return Artifact(
            kind="tmlb",
            data=blob,
            flash_bytes=len(blob),
            # The op writes only its input and output; the kernels keep no per-model state (see docs/backends.md).
            ram_bytes=_align(4 * tables.n_features, 16) + 4 * tables.n_classes,
            macs=0,
            ops=[OP_NAME],
            features={"abi": F.ABI, "float_io": True},
            report={
                "model": tables.model_type,
                "classes": [str(c) for c in tables.classes],
                "trees": n_trees,
                "nodes": int(len(tables.nodes)),
                "leaves": int(len(tables.leaves)),
                "max_depth": tables.max_depth,
                "frac_bits": tables.frac_bits,
                "comparisons_worst_case": n_trees * tables.max_depth,
                "table_bytes": {"nodes": tables.nodes.nbytes, "leaves": tables.leaves.nbytes,
                                "trees": tables.trees.nbytes, "init": tables.init.nbytes},
                "compile_seconds": round(time.perf_counter() - started, 3),
            },
        )


# -- running a tree blob in the MicroPython unix port ----------------------------------------------------------------

_DEVICE_SCRIPT = """
import sys, time, array, struct
from tinyml import trees
blob_path, x_path, offs = sys.argv[1], sys.argv[2], sys.argv[9]
n_rows, x_off, y_off, F, C, W = [int(a) for a in sys.argv[3:9]]
with open(blob_path, 'rb') as f:
    blob = f.read()
mv = memoryview(blob)
o = [int(v) for v in offs.split(',')]
nodes, leaves, tr, init = mv[o[0]:o[1]], mv[o[2]:o[3]], mv[o[4]:o[5]], mv[o[6]:o[7]]
trees.check(nodes, leaves, tr, init, F, W)
p = trees.params(x_off, y_off, len(nodes) // 16, len(tr) // 8, W, C)
ar = bytearray(y_off + 4 * C)
out = []
spent = 0
with open(x_path, 'rb') as fx:
    for r in range(n_rows):
        fx.readinto(memoryview(ar)[x_off:x_off + 4 * F])
        t0 = time.ticks_us()
        trees.run_op(ar, p, nodes, leaves, tr, init)
        spent += time.ticks_diff(time.ticks_us(), t0)
        out.append(trees.argmax(ar, y_off, C))
print('classes', ' '.join(str(c) for c in out))
print('scores', ' '.join(str(v) for v in struct.unpack_from('<%di' % C, ar, y_off)))
print('us_per_inference', spent / max(n_rows, 1))
"""


def predict_on_unixport(blob, x, heap="256k"):
    """Run a tree blob on the rows of x in the real `micropython` process (tinyml/trees.py kernels).

    Returns (class indices, the last row's int32 scores, microseconds per inference measured on the device)."""
    import os
    import tempfile

    from ..devices import unixport

    parsed, arrays, op = read_tree_blob(blob)
    x32 = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    const_base = next(off for kind, (off, size, count) in _sections(blob).items() if kind == F.SECTION_CONST)
    spans = []
    for index in op.inputs[1:]:
        t = parsed.tensors[index]
        spans += [const_base + t.offset, const_base + t.offset + t.nbytes]
    x_t, y_t = parsed.tensors[op.inputs[0]], parsed.tensors[op.outputs[0]]
    with tempfile.TemporaryDirectory() as tmp:
        bp, xp = os.path.join(tmp, "model.tmlb"), os.path.join(tmp, "x.f32")
        with open(bp, "wb") as f:
            f.write(blob)
        with open(xp, "wb") as f:
            f.write(x32.tobytes())
        args = [bp, xp, len(x32), x_t.offset, y_t.offset, x_t.elements, y_t.elements,
                arrays["leaves"].shape[1], ",".join(str(v) for v in spans)]
        out = unixport.run(code=_DEVICE_SCRIPT, heap=heap, args=args).stdout.decode()
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    classes = np.array([int(v) for v in lines["classes"].split()], dtype=np.int64)
    scores = np.array([int(v) for v in lines["scores"].split()], dtype=np.int64)
    return classes, scores, float(lines["us_per_inference"])


def _sections(blob):
    header = F.HEADER.unpack_from(blob, 0)
    n = header[5]
    return {kind: (off, size, count) for kind, off, size, count in
            (F.SECTION.unpack_from(blob, F.HEADER_BYTES + F.SECTION.size * i) for i in range(n))}
