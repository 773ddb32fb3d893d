# TREE_ENSEMBLE (opcode 16, docs/blob-format.md): decision trees, random forests, extra trees and gradient
# boosting, executed with integer comparisons only.
#
# Hook-up in the runtime (tinyml/model.py, opcheck.py use the same tuples):
#   opcheck: code 16 -> trees.check_op(src, prog, i)         load time; raises BlobError
#   RUN:     16      -> trees.run_model_op(model, op)         per inference
# Lower level, used by both and by tests:
#   check(nodes, leaves, trees, init, n_features, width)   table rules (raises BlobError)
#   run_op(ar, p, nodes, leaves, trees, init)                one inference
# `nodes`, `leaves`, `trees`, `init` are the op's const tensors as buffers (bytes / memoryview, 4-byte aligned),
# `ar` the arena, `p` an array('i'): x_off y_off n_nodes n_trees width n_classes (x_off, y_off in bytes, multiples
# of 4), built by params().
#
# Portability (the same bits on 32-bit MCUs and the 64-bit unix port): ptr32 loads are zero-extended on 64-bit
# words, so every comparison below is made on unsigned 32-bit quantities: threshold keys are biased by 2^31
# (`key ^ 2^31`), leaf references (~leaf, negative int32) are recognised as "not a node index" with an unsigned
# compare, and scores are summed modulo 2^32, exact because the compiler bounds every sum inside int32.
#
# RAM: nothing is allocated per inference. A blob given as bytes has its tables used in place (they may live in
# flash); a blob streamed from a file has its four tables read into RAM once (the walk jumps between nodes, so
# streaming them in chunks would cost a seek per node); the report of the back-end lists their bytes.
import micropython
import struct

from .errors import BlobError

TREE_ENSEMBLE = 16
MAX_LEAVES = 1 << 24
_INF_BITS = 0x7F800000


@micropython.viper
def _walk(ar: ptr32, p: ptr32, nodes: ptr32, leaves: ptr32, trees: ptr32) -> int:
    # Returns 0, or 1 when an input feature is NaN (which has no order key).
    xi = int(p[0]) >> 2
    yi = int(p[1]) >> 2
    n_nodes = int(p[2])
    n_trees = int(p[3])
    width = int(p[4])
    sign = uint(1) << 31
    low31 = sign - uint(1)
    inf = uint(0xFF) << 23
    mask24 = (int(1) << 24) - 1
    t = 0
    while t < n_trees:
        at = int(trees[2 * t])
        first = int(trees[2 * t + 1])
        while uint(at) < uint(n_nodes):          # a leaf reference (~leaf) is >= 2^31 as unsigned
            base = at << 2
            b = uint(ar[xi + int(nodes[base])])
            mag = b & low31
            if mag > inf:
                return 1
            kx = uint(0)
            if b & sign:
                kx = sign - mag                  # negative: -magnitude, biased by 2^31
            else:
                kx = b + sign                    # non-negative (+0.0 and -0.0 meet at 2^31)
            kt = uint(nodes[base + 1]) ^ sign
            if kx <= kt:
                at = int(nodes[base + 2])
            else:
                at = int(nodes[base + 3])
        leaf = ((~at) & mask24) * width
        j = 0
        while j < width:
            ar[yi + first + j] = ar[yi + first + j] + leaves[leaf + j]
            j += 1
        t += 1
    return 0


def _int32s(buf, count, first=0, step=1):
    for k in range(count):
        yield struct.unpack_from("<i", buf, 4 * (first + k * step))[0]


def check(nodes, leaves, trees, init, n_features, width):
    """Load-time rules of TREE_ENSEMBLE. Sizes in int32 values come from the buffers; one pass, no allocation
    beyond small ints. Child node indices must grow (a child is after its parent), so every walk ends."""
    if width < 1 or len(leaves) % (4 * width) or len(nodes) % 16 or len(trees) % 8 or len(init) % 4:
        raise BlobError("TREE_ENSEMBLE: table sizes do not match their shapes")
    n_nodes = len(nodes) // 16
    n_leaves = len(leaves) // (4 * width)
    n_classes = len(init) // 4
    if n_leaves >= MAX_LEAVES:
        raise BlobError("TREE_ENSEMBLE: %d leaves, at most %d" % (n_leaves, MAX_LEAVES - 1))
    for i in range(n_nodes):
        feat, key, left, right = struct.unpack_from("<iiii", nodes, 16 * i)
        if not 0 <= feat < n_features:
            raise BlobError("TREE_ENSEMBLE: node %d reads feature %d of %d" % (i, feat, n_features))
        if key > _INF_BITS or key < -_INF_BITS:
            raise BlobError("TREE_ENSEMBLE: node %d threshold is NaN" % i)
        for child in (left, right):
            if child >= 0:
                if not i < child < n_nodes:
                    raise BlobError("TREE_ENSEMBLE: node %d child %d is not after it" % (i, child))
            elif ~child >= n_leaves:
                raise BlobError("TREE_ENSEMBLE: node %d leaf %d of %d" % (i, ~child, n_leaves))
    for t in range(len(trees) // 8):
        root, first = struct.unpack_from("<ii", trees, 8 * t)
        if root >= n_nodes or (root < 0 and ~root >= n_leaves):
            raise BlobError("TREE_ENSEMBLE: tree %d root %d outside the tables" % (t, root))
        if not 0 <= first <= n_classes - width:
            raise BlobError("TREE_ENSEMBLE: tree %d adds to classes %d..%d of %d" % (t, first, first + width - 1,
                                                                                   n_classes))
    return n_nodes, len(trees) // 8, n_classes


def run_op(ar, p, nodes, leaves, trees, init):
    """One inference: y = init, then every tree adds its leaf. x (float32) and y (int32) are in the arena `ar`."""
    y = p[1]
    ar[y:y + len(init)] = init
    if _walk(ar, p, nodes, leaves, trees):
        raise ValueError("input feature is NaN")


def params(x_off, y_off, n_nodes, n_trees, width, n_classes):
    """The `p` array run_op() takes: arena byte offsets of x and y, and the tables' record counts."""
    import array
    if x_off & 3 or y_off & 3:
        raise BlobError("TREE_ENSEMBLE: x and y must be 4-byte aligned in the arena")
    return array.array("i", [x_off, y_off, n_nodes, n_trees, width, n_classes])


def argmax(ar, y_off, n_classes):
    """First index of the largest int32 score (numpy's argmax rule)."""
    best = 0
    top = struct.unpack_from("<i", ar, y_off)[0]
    for c in range(1, n_classes):
        v = struct.unpack_from("<i", ar, y_off + 4 * c)[0]
        if v > top:
            best, top = c, v
    return best


# -- adapters to the runtime's parsed-blob tuples (tinyml/blob.py: tensor = (dtype, storage, dims4, offset, bytes,
#    zero_point, scale, shape), op = (code, inputs, output, params)). Imported lazily: blob.py imports the op
#    checkers, so importing it at the top of this module would be circular.

def _tensor_rules(T, ins, out):
    from .blob import T_DTYPE, T_STORAGE, T_OFF, T_BYTES, T_SHAPE, FLOAT32, INT32, ARENA, CONST
    if len(ins) != 5:
        raise BlobError("TREE_ENSEMBLE: %d inputs, needs 5" % len(ins))
    x, y = T[ins[0]], T[out]
    if x[T_DTYPE] != FLOAT32 or x[T_STORAGE] != ARENA:
        raise BlobError("TREE_ENSEMBLE: x must be a float32 arena tensor")
    if y[T_DTYPE] != INT32 or y[T_STORAGE] != ARENA:
        raise BlobError("TREE_ENSEMBLE: y must be an int32 arena tensor")
    if x[T_OFF] & 3 or y[T_OFF] & 3:
        raise BlobError("TREE_ENSEMBLE: x and y must be 4-byte aligned in the arena")
    if x[T_OFF] < y[T_OFF] + y[T_BYTES] and y[T_OFF] < x[T_OFF] + x[T_BYTES]:
        raise BlobError("TREE_ENSEMBLE: x overlaps y in the arena")
    tabs = [T[k] for k in ins[1:]]
    for t, name, rank in zip(tabs, ("nodes", "leaves", "trees", "init"), (2, 2, 2, 1)):
        if t[T_DTYPE] != INT32 or t[T_STORAGE] != CONST or len(t[T_SHAPE]) != rank:
            raise BlobError("TREE_ENSEMBLE: %s must be a rank-%d const int32 tensor" % (name, rank))
    nodes, leaves, trees, init = tabs
    if nodes[T_SHAPE][1] != 4 or trees[T_SHAPE][1] != 2:
        raise BlobError("TREE_ENSEMBLE: nodes must be [N,4] and trees [T,2]")
    if init[T_BYTES] != y[T_BYTES]:
        raise BlobError("TREE_ENSEMBLE: init has %d classes, y %d" % (init[T_BYTES] // 4, y[T_BYTES] // 4))
    return x, y, tabs, leaves[T_SHAPE][1]


def _bind(src, T, op):
    from .blob import T_OFF, T_BYTES
    code, ins, out, par = op
    x, y, tabs, width = _tensor_rules(T, ins, out)
    nodes, leaves, trees, init = [src.read(t[T_OFF], t[T_BYTES]) for t in tabs]
    n_nodes, n_trees, n_classes = check(nodes, leaves, trees, init, x[T_BYTES] // 4, width)
    return params(x[T_OFF], y[T_OFF], n_nodes, n_trees, width, n_classes), nodes, leaves, trees, init


def check_op(src, prog, i):
    """Load-time check of op i of a parsed Program (raises BlobError)."""
    _bind(src, prog.tensors, prog.ops[i])


def run_model_op(m, op):
    """RUN entry: one inference of a TREE_ENSEMBLE op of Model m (tables bound on first use, then cached)."""
    bound = getattr(m, "_tree_op", None)
    if bound is None or bound[0] is not op:
        bound = (op, _bind(m._src, m.tensors, op))
        m._tree_op = bound
    p, nodes, leaves, trees, init = bound[1]
    run_op(m.arena, p, nodes, leaves, trees, init)
