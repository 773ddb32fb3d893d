# The classic-model ops of docs/blob-format.md §11: KERNEL (17), SVM_VOTE (18), KNN_VOTE (19), GAUSSIAN_NB (20),
# AFFINE (21) -- SVMs, k nearest neighbours and Gaussian naive Bayes compiled from scikit-learn, in float.
#
# Hook-up (tinyml/opcheck.py and model.py import this module only when a blob has one of these ops, so models
# without them never pay its RAM):
#   opcheck: codes 17..21 -> classic.check_op(src, prog, i)    load time; raises BlobError
#   RUN:     17..21       -> classic.run_model_op(model, op)    per inference
#
# Arithmetic is the port's float: binary32 on MCUs, double on the unix port (MICROPY_FLOAT_IMPL_DOUBLE); every
# result is stored into the arena as binary32. The spec's statement is binary32 in its order, so on the unix port
# scores may differ from the C runtime's in their last bits; the shared vectors are built so that both give the
# same bytes (integer votes, exactly representable sums).
#
# Tensors are read in place through uctypes float32 / int32 views of the arena and of the const tables (a blob
# streamed from a file has its tables read into RAM once, at bind time). Nothing but float objects is allocated
# per inference.
import math
import micropython
import struct
import uctypes

from .errors import BlobError

KERNEL = 17
SVM_VOTE = 18
KNN_VOTE = 19
GAUSSIAN_NB = 20
AFFINE = 21
NAMES = {17: "KERNEL", 18: "SVM_VOTE", 19: "KNN_VOTE", 20: "GAUSSIAN_NB", 21: "AFFINE"}
_LIN, _POLY, _RBF, _SIG, _SQ, _L1 = 0, 1, 2, 3, 4, 5
MAX_DEGREE = 16
_INF = float("inf")


def _view(buf, off, n, kind):
    return uctypes.struct(uctypes.addressof(buf) + off, {"v": (uctypes.ARRAY | 0, kind | n)},
                          uctypes.LITTLE_ENDIAN).v


def _f32(buf, off, n):
    return _view(buf, off, n, uctypes.FLOAT32)


def _i32(buf, off, n):
    return _view(buf, off, n, uctypes.INT32)


def _bits_f32(bits):
    return struct.unpack("<f", struct.pack("<i", bits))[0]


# -- kernels --------------------------------------------------------------------------------------------------

@micropython.native
def kernel(x, rows, y, nf, nr, kind, gamma, coef0, degree):
    for n in range(nr):
        base = n * nf
        acc = 0.0
        if kind == _RBF or kind == _SQ:
            for f in range(nf):
                d = x[f] - rows[base + f]
                acc += d * d
        elif kind == _L1:
            for f in range(nf):
                acc += abs(x[f] - rows[base + f])
        else:
            for f in range(nf):
                acc += x[f] * rows[base + f]
        if kind == _POLY:
            base, acc, t = gamma * acc + coef0, 1.0, degree     # libsvm's powi: binary exponentiation
            while t > 0:
                if t & 1:
                    acc *= base
                base *= base
                t >>= 1
        elif kind == _RBF:
            acc = math.exp(-gamma * acc)
        elif kind == _SIG:
            acc = math.tanh(gamma * acc + coef0)
        y[n] = acc


@micropython.native
def svm_vote(k, coef, intercept, starts, votes, nc, nk):
    for c in range(nc):
        votes[c] = 0
    p = 0
    for i in range(nc):
        for j in range(i + 1, nc):
            dec = 0.0
            r = (j - 1) * nk
            for n in range(starts[i], starts[i + 1]):
                dec += coef[r + n] * k[n]
            r = i * nk
            for n in range(starts[j], starts[j + 1]):
                dec += coef[r + n] * k[n]
            dec += intercept[p]
            if dec > 0:
                votes[i] += 1
            else:
                votes[j] += 1
            p += 1


@micropython.native
def knn_vote(d, labels, y, nd, nc, k, weights, root):
    # k rounds, each picking the smallest (distance, index) after the previous pick: no scratch list, ties go to
    # the lower index, NaN counts as +inf. Zero distances come first, so "a neighbour at distance 0 takes all the
    # weight" is known from the first pick.
    for c in range(nc):
        y[c] = 0.0
    prev_d, prev_i = -_INF, -1
    zero = False
    for r in range(k):
        best_d, best_i = _INF, -1
        for n in range(nd):
            dn = d[n]
            if dn != dn:
                dn = _INF
            if dn < prev_d or (dn == prev_d and n <= prev_i):
                continue
            if best_i < 0 or dn < best_d:
                best_d, best_i = dn, n
        prev_d, prev_i = best_d, best_i
        dist = math.sqrt(best_d) if root else best_d
        if r == 0:
            zero = weights and dist == 0
        c = labels[best_i]
        if not weights:
            y[c] += 1.0
        elif zero:
            if dist == 0:
                y[c] += 1.0
        else:
            y[c] += 1.0 / dist


@micropython.native
def gaussian_nb(x, theta, w, bias, y, nf, nc):
    for c in range(nc):
        base = c * nf
        acc = 0.0
        for f in range(nf):
            d = x[f] - theta[base + f]
            acc += w[base + f] * d * d
        y[c] = bias[c] - acc


@micropython.native
def affine(x, m, o, y, n):
    for f in range(n):
        y[f] = x[f] * m[f] + o[f]


# -- load-time rules and binding to the runtime's parsed tuples (tinyml/blob.py) ------------------------------

def _bad(code, msg):
    raise BlobError("%s: %s" % (NAMES[code], msg))


def _bind(src, T, op, arena):
    """Check op `op` (code, inputs, output, params) and return (code, views, sizes) for run()."""
    from .blob import T_DTYPE, T_STORAGE, T_OFF, T_BYTES, T_SHAPE, FLOAT32, INT32, ARENA, CONST
    code, ins, out, par = op
    want = {KERNEL: 2, SVM_VOTE: 4, KNN_VOTE: 2, GAUSSIAN_NB: 4, AFFINE: 3}[code]
    if len(ins) != want:
        _bad(code, "%d inputs, needs %d" % (len(ins), want))
    x, y = T[ins[0]], T[out]
    y_dtype = INT32 if code == SVM_VOTE else FLOAT32
    if x[T_DTYPE] != FLOAT32 or x[T_STORAGE] != ARENA:
        _bad(code, "input must be a float32 arena tensor")
    if y[T_DTYPE] != y_dtype or y[T_STORAGE] != ARENA:
        _bad(code, "output must be a %s arena tensor" % ("int32" if y_dtype == INT32 else "float32"))
    if x[T_OFF] & 3 or y[T_OFF] & 3:
        _bad(code, "input and output must be 4-byte aligned in the arena")
    if x[T_OFF] < y[T_OFF] + y[T_BYTES] and y[T_OFF] < x[T_OFF] + x[T_BYTES]:
        _bad(code, "input overlaps output in the arena")
    tabs = [T[k] for k in ins[1:]]
    for t in tabs:
        if t[T_STORAGE] != CONST:
            _bad(code, "tables must be const tensors")
    nx, ny = x[T_BYTES] // 4, y[T_BYTES] // 4
    shapes = [t[T_SHAPE] for t in tabs]
    dts = [t[T_DTYPE] for t in tabs]
    if code == KERNEL:
        if dts != [FLOAT32] or len(shapes[0]) != 2 or shapes[0][1] != nx or shapes[0][0] != ny:
            _bad(code, "rows must be float32 [%d,%d]" % (ny, nx))
        if not 0 <= par[0] <= _L1 or not 0 <= par[3] <= MAX_DEGREE:
            _bad(code, "kernel %d / degree %d out of range" % (par[0], par[3]))
        for b in par[1:3]:
            if b & 0x7F800000 == 0x7F800000:
                _bad(code, "gamma and coef0 must be finite")
    elif code == SVM_VOTE:
        if dts != [FLOAT32, FLOAT32, INT32] or ny < 2 or shapes[0] != (ny - 1, nx) or \
                shapes[1] != (ny * (ny - 1) // 2,) or shapes[2] != (ny + 1,):
            _bad(code, "needs coef float32 [C-1,N], intercept float32 [C(C-1)/2], starts int32 [C+1], C >= 2")
    elif code == KNN_VOTE:
        if dts != [INT32] or shapes[0] != (nx,):
            _bad(code, "labels must be int32 [%d]" % nx)
        if not 1 <= par[0] <= nx or par[1] not in (0, 1) or par[2] not in (0, 1):
            _bad(code, "k=%d weights=%d root=%d out of range" % tuple(par))
    elif code == GAUSSIAN_NB:
        if dts != [FLOAT32] * 3 or shapes[0] != (ny, nx) or shapes[1] != (ny, nx) or shapes[2] != (ny,):
            _bad(code, "needs theta and w float32 [%d,%d], bias float32 [%d]" % (ny, nx, ny))
    elif code == AFFINE:
        if dts != [FLOAT32] * 2 or tabs[0][T_BYTES] != 4 * nx or tabs[1][T_BYTES] != 4 * nx or ny != nx:
            _bad(code, "m, o and the output must have the input's %d float32 values" % nx)
    raw = [src.read(t[T_OFF], t[T_BYTES]) for t in tabs]
    views = [(_i32 if dt == INT32 else _f32)(b, 0, len(b) // 4) for b, dt in zip(raw, dts)]
    if code == SVM_VOTE:
        s = views[2]
        if s[0] != 0 or s[ny] != nx:
            _bad(code, "starts must rise from 0 to %d" % nx)
        for c in range(ny):
            if s[c + 1] < s[c]:
                _bad(code, "starts must rise from 0 to %d" % nx)
    elif code == KNN_VOTE:
        lab = views[0]
        for n in range(nx):
            if not 0 <= lab[n] < ny:
                _bad(code, "label %d of row %d is not a class index < %d" % (lab[n], n, ny))
    if arena is None:
        return None
    xv = _f32(arena, x[T_OFF], nx)
    yv = (_i32 if y_dtype == INT32 else _f32)(arena, y[T_OFF], ny)
    return code, raw, [xv] + views + [yv], nx, ny, par


def check_op(src, prog, i):
    """Load-time check of op i of a parsed Program (raises BlobError)."""
    _bind(src, prog.tensors, prog.ops[i], None)


def run(bound):
    code, raw, v, nx, ny, par = bound
    if code == KERNEL:
        kernel(v[0], v[1], v[2], nx, ny, par[0], _bits_f32(par[1]), _bits_f32(par[2]), par[3])
    elif code == SVM_VOTE:
        svm_vote(v[0], v[1], v[2], v[3], v[4], ny, nx)
    elif code == KNN_VOTE:
        knn_vote(v[0], v[1], v[2], nx, ny, par[0], par[1], par[2])
    elif code == GAUSSIAN_NB:
        gaussian_nb(v[0], v[1], v[2], v[3], v[4], nx, ny)
    else:
        affine(v[0], v[1], v[2], v[3], nx)


def run_model_op(m, op):
    """RUN entry: one op of Model m (checked and bound to m's arena on first use, then cached per op)."""
    cache = getattr(m, "_classic_ops", None)
    if cache is None:
        cache = m._classic_ops = {}
    bound = cache.get(id(op))
    if bound is None:
        bound = cache[id(op)] = _bind(m._src, m.tensors, op, m.arena)
    run(bound)
