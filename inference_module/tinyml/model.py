"""A loaded model: the activation arena, fixed scratch buffers, and the op-by-op executor.

RAM beyond the arena is fixed: two int32 accumulator chunks (ACC_N values each), two small config arrays and,
when the blob is streamed from a file, a weight buffer of max(WBUF, largest filter unit) bytes plus a block of
bias/multiplier/shift values. Apart from the parsed tensor and op tables nothing grows with the model.
"""

import array
import struct
import time

from micropython import const

from . import ops as O
from . import kernels as K
from . import requant as RQ
from . import conv as C
from .errors import BlobError, SelfTestError
from .blob import (parse, elements, io_info, T_DTYPE, T_STORAGE, T_DIMS, T_OFF, T_BYTES, T_ZP, T_SCALE, T_SHAPE,
                   CONST, DTYPE_NAME)
from .source import MemorySource, FileSource
from .fixedpoint import softmax_row
from .tensor_io import write_input, read_output, as_ndarray, ndarray_module, quantize

try:
    # The C runtime built into the firmware as a user C module (firmware/micropython/usermod): same blobs,
    # bit-exact with the viper kernels, several times faster. Absent on stock firmware and the PyPI unix port.
    import _tinyml
except ImportError:
    _tinyml = None

ACC_N = const(1024)  # int32 accumulators per chunk (4 KB each)
WBUF = const(4096)  # default streamed-weight buffer (bytes)
VB = const(256)  # per-channel values (bias, mult, shift) streamed per block


KERNELS = ("c-module", "viper", "reference")


def load(blob, kernels=None, wbuf=WBUF, offset=0, length=None):
    """Load a model from a file path (weights streamed) or bytes/bytearray/memoryview (weights used in place).

    kernels: None runs the blob through the C module `_tinyml` when the firmware has it and the blob is in
    memory, else on the viper kernels; "c-module", "viper" or "reference" (the plain-Python kernels) insist.
    offset/length select a blob embedded in a larger file (the installer's package files).
    """
    if kernels is not None and kernels not in KERNELS:
        raise ValueError("kernels must be one of %s, or None (the C module where it can run the blob, else "
                         "viper), not %r" % (", ".join(KERNELS), kernels))
    if isinstance(blob, str):
        src = _mapped(blob, offset, length)
        if src is None:
            try:
                src = FileSource(blob, offset, length)
            except OSError as e:
                raise BlobError("cannot open %s: %s" % (blob, e))
    else:
        _check_aligned(blob)
        src = MemorySource(blob)
    try:
        prog = parse(src)
    except (BlobError, MemoryError):
        # MemoryError is not a malformed blob: callers report it as "out of RAM" (LwM2M result 3), so it must
        # not be folded into BlobError below.
        src.close()
        raise
    except Exception as e:  # e.g. a short read from a file that changed under us
        src.close()
        raise BlobError("unreadable blob: %r" % (e,))
    try:
        return Model(src, prog, kernels, wbuf)
    except BaseException:  # MemoryError for the arena: do not leak the open file
        src.close()
        raise


def _mapped(path, offset, length):
    """A file on a memory-mapped filesystem (ROMFS, vfs.VfsRom) is a view of flash: use the blob in place from
    there, as from bytes (no weight streaming, no copy into RAM). None for ordinary files, which stream."""
    try:
        with open(path, "rb") as f:
            mv = memoryview(f)   # only VfsRom files offer the buffer protocol
    except (OSError, TypeError):
        return None
    mv = mv[offset:offset + length] if length is not None else mv[offset:]
    try:
        _check_aligned(mv)
    except BlobError:
        return None
    return MemorySource(mv)


def _c_model(src, arena, required):
    """The C runtime's Model of the blob on `arena`, or None where viper runs it instead (required: raise why)."""
    if _tinyml is None:
        why = "this firmware has no _tinyml module (docs/boards.md)"
    elif src.streaming:
        why = "the C module runs blobs held in memory (bytes, ROMFS); this one is streamed from a file"
    else:
        try:
            return _tinyml.Model(src.mv, arena)
        except ValueError as e:
            why = "the C runtime refuses this blob: %s" % e
    if required:
        raise ValueError("kernels='c-module': " + why)
    return None


def _check_aligned(buf):
    """Kernels read int32 constants in place through ptr32; cores such as ESP32's Xtensa fault on unaligned
    32-bit loads, so an in-RAM blob must start 4-byte aligned (any bytes/bytearray does; a memoryview slice may
    not)."""
    try:
        from uctypes import addressof
    except ImportError:
        return
    try:
        misaligned = addressof(buf) % 4
    except (TypeError, ValueError):
        return
    if misaligned:
        raise BlobError("in-RAM blob starts at an address that is not 4-byte aligned; pass bytes(...) of it")


class Model:
    def __init__(self, src, prog, kernels=None, wbuf=WBUF):
        self._src = src
        self._p = prog
        self.tensors = prog.tensors
        self.arena_bytes = prog.arena_bytes
        self.arena = bytearray(prog.arena_bytes)
        self._amv = memoryview(self.arena)  # slice copies through it move bytes without allocating copies
        # With the C module, a blob held in memory runs in C on this same arena (inputs and outputs stay where
        # the viper path has them). Streamed blobs and blobs the C runtime refuses stay on viper.
        self._cm = _c_model(src, self.arena, kernels == "c-module") if kernels in (None, "c-module") else None
        self.kernels = "c-module" if self._cm is not None else (kernels or "viper")
        # A tree model (TREE_ENSEMBLE ops only) uses none of the accumulator or weight buffers: ~15 KB saved on
        # the small devices tree models are meant for; nor does a model the C module runs.
        kernels_used = self._cm is None and any(op[0] < O.TREE_ENSEMBLE or op[0] == O.PATCH for op in prog.ops)
        n_acc, n_rows = _scratch_words(prog) if kernels_used else (0, 0)
        self._acc = bytearray(4 * n_acc)  # int32 accumulators, read and written through viper ptr32
        self._acc2 = bytearray(4 * n_rows)
        self._c = array.array("i", [0] * 24)  # kernel configs
        if src.streaming and kernels_used:
            self._wbuf = bytearray(max(wbuf, prog.max_unit))
            self._vbuf = bytearray(12 * VB)
        else:
            self._wbuf = self._vbuf = None
        self.scratch_bytes = 4 * (n_acc + n_rows + 24) + (len(self._wbuf) + len(self._vbuf) if self._wbuf else 0)
        self.inputs = [io_info(self.tensors[t]) for t in prog.inputs]
        self.outputs = [io_info(self.tensors[t]) for t in prog.outputs]
        self.ops = [O.name(op[0]) for op in prog.ops]
        self.sha256 = prog.sha256
        self.blob_bytes = prog.total_bytes
        self.last_us = 0
        self.op_us = None
        self._vkey = None  # which op's per-channel vectors _vbuf holds (streaming): channels _vwin.._vend,
        self._vwin = self._vend = 0  # their bias/mult/shift starting at the int32 indices _vidx
        self._vidx = (0, VB, 2 * VB)
        self._plans = [] if self._cm is not None else [PLANS[op[0]](self, op) if op[0] in PLANS else None
                                                       for op in prog.ops]

    # ----- I/O -----

    def set_input(self, i, data):
        """Write graph input i from bytes, an array, a list or a ulab ndarray (tensor_io's rules: floats given to
        an int8 input are quantized with its scale and zero point)."""
        write_input(self, i, self.tensors[self._p.inputs[i]], data)

    def input_buffer(self, i):
        """The arena bytes of graph input i (a memoryview: write raw int8/float32 data into it, zero copy)."""
        t = self.tensors[self._p.inputs[i]]
        return self._amv[t[T_OFF]:t[T_OFF] + t[T_BYTES]]

    def output_buffer(self, i):
        """The arena bytes of graph output i, valid until the next inference (zero copy)."""
        t = self.tensors[self._p.outputs[i]]
        return self._amv[t[T_OFF]:t[T_OFF] + t[T_BYTES]]

    def get_output(self, i):
        return read_output(self.arena, self.tensors[self._p.outputs[i]])

    def predict(self, *data):
        """predict(x) or predict(x0, x1, ...) -> output (one output) or list of outputs."""
        if len(data) != len(self.inputs):
            raise ValueError("model has %d inputs, got %d" % (len(self.inputs), len(data)))
        np = None
        for i, d in enumerate(data):
            np = np or ndarray_module(d)
            self.set_input(i, d)
        self.invoke()
        outs = [self.get_output(j) for j in range(len(self.outputs))]
        if np is not None:  # ndarrays in, ndarrays of the outputs' shapes out
            outs = [as_ndarray(np, o, j, self.tensors[t]) for j, (o, t) in enumerate(zip(outs, self._p.outputs))]
        return outs[0] if len(outs) == 1 else outs

    def invoke(self):
        """Run every op once on the inputs already in the arena; time it in last_us."""
        t0 = time.ticks_us()
        if self._cm is not None:
            self._cm.invoke()
        elif self.kernels == "reference":
            from .kernels_ref import run_op
            for op in self._p.ops:
                run_op(self, op)
        elif self.op_us is not None:
            ticks, diff = time.ticks_us, time.ticks_diff
            plans = self._plans
            for i, op in enumerate(self._p.ops):
                t = ticks()
                RUN[op[0]](self, op, plans[i])
                self.op_us[i] = diff(ticks(), t)
        else:
            plans = self._plans
            i = 0
            for op in self._p.ops:
                RUN[op[0]](self, op, plans[i])
                i += 1
        self.last_us = time.ticks_diff(time.ticks_us(), t0)

    def profile(self, on=True):
        """Record each op's microseconds of the following inferences in m.op_us (inspect() shows them)."""
        self.op_us = [0] * len(self._p.ops) if on else None

    def self_test(self, vectors):
        """vectors: [(inputs, expected), ...]; inputs is one value per graph input (a single input may be given
        bare), expected one value per output. Returns the count checked; raises SelfTestError on a mismatch."""
        ni, no = len(self.inputs), len(self.outputs)
        for k, (ins, exp) in enumerate(vectors):
            if ni == 1 and not _is_list_of_values(ins):
                ins = [ins]
            if no == 1 and not _is_list_of_values(exp):
                exp = [exp]
            got = self.predict(*ins)
            if no == 1:
                got = [got]
            for j in range(no):
                g, e = list(got[j]), _values(exp[j], self.outputs[j]["dtype"])
                if g != e:
                    raise SelfTestError("self-test vector %d output %d: got %r..., expected %r..." % (k, j, g[:6], e[:6]))
        return len(vectors)

    def meta(self):
        """The blob's META JSON as a dict (read from the blob on demand), or None."""
        if not self._p.meta:
            return None
        import json
        off, size = self._p.meta
        try:
            return json.loads(bytes(self._src.read(off, size)))
        except (ValueError, OSError):
            return None

    def inspect(self):
        """Print a readable summary: sizes, I/O, and the op list."""
        p = self._p
        meta = self.meta() or {}
        print("tinyml model %s: blob %d bytes, sha256 %s..." % (meta.get("name", "?"), p.total_bytes, _hex(p.sha256)[:16]))
        print("  arena %d bytes, runtime scratch %d bytes, %s" % (self.arena_bytes, self.scratch_bytes,
              "weights streamed from file" if self._src.streaming else "weights used in place"))
        for nm, lst in (("input", self.inputs), ("output", self.outputs)):
            for i, d in enumerate(lst):
                print("  %s %d: %s %r scale %g zero_point %d" % (nm, i, d["dtype"], d["shape"], d["scale"], d["zero_point"]))
        for i, op in enumerate(p.ops):
            y = self.tensors[op[2]]
            us = "  %7d us" % self.op_us[i] if self.op_us else ""
            print("  %3d %-18s -> %r %s%s" % (i, O.name(op[0]), y[T_SHAPE], DTYPE_NAME[y[T_DTYPE]], us))
        if "macs" in meta:
            print("  %d MACs" % meta["macs"])

    def close(self):
        self._src.close()

    # ----- const access -----

    def _wview(self, off, n):
        """(buffer, offset) holding blob bytes [off, off+n): the blob itself, or the streamed weight buffer."""
        if self._wbuf is None:
            return self._src.mv, off
        return self._src.view(off, n, self._wbuf), 0

    def _vectors(self, b_off, mu_off, sh_off, step, co, oc0, nb):
        """(int32 buffer, bias index, mult index, shift index) for output channels oc0..oc0+nb of an op whose
        bias/multiplier/shift vectors start at the given blob offsets (step 0: per-tensor multiplier and shift).

        Streaming: the buffer holds the op's three vectors whole when they fit (one read per op), else channels
        [v0, v0 + VB) of each, refilled only when oc0 leaves that window."""
        if self._vbuf is None:
            return self._src.mv, b_off // 4 + oc0, mu_off // 4 + oc0 * step, sh_off // 4 + oc0 * step
        if self._vkey != b_off or oc0 < self._vwin or oc0 + nb > self._vend:
            src, vbuf = self._src, self._vbuf
            k = co if step else 1
            lo = min(b_off, mu_off, sh_off)
            hi = max(b_off + 4 * co, mu_off + 4 * k, sh_off + 4 * k)
            if hi - lo <= len(vbuf):  # the compiler writes bias, multiplier and shift one after another
                src.fill(lo, hi - lo, vbuf)
                self._vwin, self._vend = 0, co
                self._vidx = ((b_off - lo) // 4, (mu_off - lo) // 4, (sh_off - lo) // 4)
            else:
                n = min(VB, co - oc0)
                k = n if step else 1
                mv = memoryview(vbuf)
                src.view(b_off + 4 * oc0, 4 * n, mv[0:])
                src.view(mu_off + 4 * oc0 * step, 4 * k, mv[4 * VB:])
                src.view(sh_off + 4 * oc0 * step, 4 * k, mv[8 * VB:])
                self._vwin, self._vend = oc0, oc0 + n
                self._vidx = (0, VB, 2 * VB)
            self._vkey = b_off  # a bias tensor's offset identifies its op's vectors
        d = oc0 - self._vwin
        bb, mb, sb = self._vidx
        return self._vbuf, bb + d, mb + d * step, sb + d * step


def _hex(b):
    return "".join("%02x" % v for v in b)


def _is_list_of_values(v):
    """True if v is a list/tuple whose items are themselves sequences (one per graph input/output)."""
    return isinstance(v, (list, tuple)) and len(v) > 0 and not isinstance(v[0], (int, float))


def _values(v, dtype="int8"):
    if isinstance(v, (bytes, bytearray)):
        if dtype == "int32":  # raw little-endian bytes, as the output buffer holds them
            return list(struct.unpack("<%di" % (len(v) // 4), v))
        return [b - 256 if b > 127 else b for b in v]
    return list(v)


def _set(c, *vals):
    i = 0
    for v in vals:
        c[i] = v
        i += 1


# ----- op runners (viper path) -----

GEMM_K = const(1024)  # receptive field the fused kernel takes at once (its int32 row is _acc2); longer: segments
P_W = const(43)  # conv.conv's config, then (from P_W on) what _conv needs: weight, bias, multiplier, shift
P_B = const(44)  # offsets, output pixels, depthwise filter bytes
P_MU = const(45)
P_SH = const(46)
P_NPIX = const(47)
P_WBYTES = const(48)


def _scratch_words(prog):
    # int32 words of (_acc, _acc2) the model's ops use: ADD/MUL take both in chunks of ACC_N values, MEAN the
    # first; the conv kernel one receptive field in _acc2 (its longest, at most GEMM_K, + 1), and _acc for the
    # partial sums of longer ones. A model without ADD, MUL or MEAN needs far less than two chunks (KWS: 260 B).
    acc = rows = 0
    T = prog.tensors
    for op in prog.ops:
        for code, ins, out, par in op[4] if op[0] == O.PATCH else (op[:4],):
            if code in (O.ADD, O.MUL):
                acc = rows = ACC_N
            elif code == O.MEAN:
                acc = max(acc, ACC_N)
            elif code == O.CONV_2D or code == O.FULLY_CONNECTED:
                wd = T[ins[1]][T_DIMS]
                k = wd[3] if code == O.FULLY_CONNECTED else wd[1] * wd[2] * wd[3]
                if k > GEMM_K:
                    acc = max(acc, ACC_N)
                rows = max(rows, min(k, GEMM_K) + 1)
    return acc, rows


def _conv_plan(m, op):
    # conv.conv's config for a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED, decoded once at load (decoding five
    # tensor records per inference dominated small layers): an int32 array (~200 B per op) _conv fills in per call.
    code, ins, out, par = op
    T = m.tensors
    x, w, b, mu, sh = [T[k] for k in ins]
    y = T[out]
    yd = y[T_DIMS]
    if code == O.FULLY_CONNECTED:
        # rows x filters: a 1 x rows "image" of Ci channels, 1x1 filters
        ci = w[T_DIMS][3]
        rows = elements(x) // ci
        geo, in_off, w_off, act, dm = (1, rows, ci, rows, 1, 1, 1, 1, 1, 1, 1, 0, 0), par[0], par[1], par[2:5], 1
    else:
        xd, wd = x[T_DIMS], w[T_DIMS]
        dm = par[10] if code == O.DEPTHWISE_CONV_2D else 1
        geo = (xd[1], xd[2], xd[3], yd[2], yd[1], wd[1], wd[2]) + tuple(par[0:6])
        in_off, w_off, act = par[6], 0, par[7:10]
    dwm = 1 if code == O.DEPTHWISE_CONV_2D else 0
    co = yd[3]
    c = array.array("i", [0] * (P_WBYTES + 1))
    _set(c, 0, dwm, geo[2] * geo[5] * geo[6], 0, 0, 0, 0, 0, 0, 0, 0, x[T_OFF], in_off, w_off - 128, 0, y[T_OFF], co,
         0, 0, 0, 1 if elements(mu) > 1 else 0, act[0], act[1], act[2], 0, *geo, dm)
    C.put_address(c, 39, m._src.mv if m._vbuf is None else m._vbuf)  # where conv finds the per-channel vectors
    C.put_address(c, 41, m._acc)  # and the partial sums of a segmented receptive field
    c[P_W], c[P_B], c[P_MU], c[P_SH] = w[T_OFF], b[T_OFF], mu[T_OFF], sh[T_OFF]
    c[P_NPIX], c[P_WBYTES] = elements(y) // co, w[T_BYTES]
    return c


def _conv(m, op, c):
    # conv.conv over the op's output-channel blocks: all channels at once for a blob in RAM; streamed, as many
    # filters as the weight buffer holds (depthwise: the whole filter, its channels interleave).
    src, buf = m._src, m._wbuf
    K, co, step, npix, w_off = c[2], c[16], c[20], c[P_NPIX], c[P_W]
    c[24] = RQ.wide
    kseg, pb, keep = K, npix, 0
    if c[1]:
        ocb = co if buf is None else min(co, VB)
        if buf is not None:
            src.fill(w_off, c[P_WBYTES], buf)
            w_off = 0
    else:
        ocb = co if buf is None else min(co, VB, len(buf) // K)
        if K > GEMM_K:  # segments of the receptive field, the partial sums of pb pixels x ocb channels in _acc
            kseg, ocb = GEMM_K, min(ocb, ACC_N)
            pb = ACC_N // ocb
        elif ocb < co and npix * (K + 1) <= len(m._acc2) // 4:
            keep = 1  # several blocks: prepare the rows once, keep them for the next blocks
    wbuf, rows, arena, conv, vectors = src.mv if buf is None else buf, m._acc2, m.arena, C.conv, m._vectors
    whole = pb >= npix and kseg >= K  # one call per block (the rest of this loop is per-block overhead, which
    if whole:                         # streaming pays once per weight buffer)
        c[5], c[6], c[8], c[9], c[10] = 0, npix, 0, K, 3
    b_off, mu_off, sh_off = c[P_B], c[P_MU], c[P_SH]
    for oc0 in range(0, co, ocb):
        nb = min(ocb, co - oc0)
        wo = w_off + oc0 if c[1] else w_off + oc0 * K
        if buf is not None and not c[1]:
            src.fill(wo, nb * K, buf)
            wo = 0
        if buf is None or m._vkey != b_off or oc0 < m._vwin or oc0 + nb > m._vend:
            v = vectors(b_off, mu_off, sh_off, step, co, oc0, nb)
            c[17], c[18], c[19] = v[1], v[2], v[3]
        else:  # streamed, the vectors already in _vbuf (inline: this runs once per weight block)
            d = oc0 - m._vwin
            v = m._vidx
            c[17], c[18], c[19] = v[0] + d, v[1] + d * step, v[2] + d * step
        c[3], c[4], c[7], c[14] = nb, oc0, keep, wo
        if whole:
            conv(wbuf, rows, arena, c)
        else:
            for p0 in range(0, npix, pb):
                c[5], c[6] = p0, min(pb, npix - p0)
                for k0 in range(0, K, kseg):
                    c[8], c[9] = k0, min(kseg, K - k0)
                    c[10] = (1 if k0 == 0 else 0) | (2 if k0 + kseg >= K else 0)
                    conv(wbuf, rows, arena, c)
        if keep:
            keep = 2


def _pool(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    xd, yd = x[T_DIMS], y[T_DIMS]
    _set(m._c, x[T_OFF], y[T_OFF], xd[0], xd[1], xd[2], xd[3], yd[1], yd[2], par[0], par[1], par[2], par[3],
         par[4], par[5], par[6], par[7], 1 if code == O.AVERAGE_POOL_2D else 0)
    K.pool(m.arena, m.arena, m._c)


def _strides(d):
    """Element strides of a 4-D shape, 0 along axes of extent 1 (numpy broadcasting)."""
    s2 = d[3]
    s1 = d[2] * s2
    s0 = d[1] * s1
    return (s0 if d[0] > 1 else 0, s1 if d[1] > 1 else 0, s2 if d[2] > 1 else 0, 1 if d[3] > 1 else 0)


def _operand(m, t):
    """(buffer, offset) of an ADD/MUL operand's bytes: in the arena, or a const tensor read whole (§5 allows
    const operands; the loader sized the weight buffer for the largest)."""
    if t[T_STORAGE] == CONST:
        return m._wview(t[T_OFF], t[T_BYTES])
    return m.arena, t[T_OFF]


def _add_mul(m, op, plan=None):
    code, ins, out, par = op
    T = m.tensors
    a, b, y = T[ins[0]], T[ins[1]], T[out]
    yd = y[T_DIMS]
    sa, sb = _strides(a[T_DIMS]), _strides(b[T_DIMS])
    if code == O.ADD:
        a_off, a_m, a_s, b_off, b_m, b_s, ls, o_m, o_s, o_off, lo, hi = par
    else:
        a_off, b_off, o_m, o_s, o_off, lo, hi = par
        ls = 0
    c, acc, acc2, arena = m._c, m._acc, m._acc2, m.arena
    # Each operand is read from (buffer, offset): the arena, or for a const operand the blob in RAM or the
    # streamed weight buffer. Two streamed const operands share that buffer, so they are re-read per chunk.
    both = m._wbuf is not None and a[T_STORAGE] == CONST and b[T_STORAGE] == CONST
    abuf, ao = _operand(m, a)
    bbuf, bo = (None, 0) if both else _operand(m, b)
    total = elements(y)
    for e0 in range(0, total, ACC_N):
        n = min(ACC_N, total - e0)
        if both and e0:
            abuf, ao = _operand(m, a)
        _set(c, ao, n, e0, yd[1], yd[2], yd[3], sa[0], sa[1], sa[2], sa[3], a_off, ls)
        K.gather(abuf, acc, c)
        if both:
            bbuf, bo = _operand(m, b)
        _set(c, bo, n, e0, yd[1], yd[2], yd[3], sb[0], sb[1], sb[2], sb[3], b_off, ls)
        K.gather(bbuf, acc2, c)
        if code == O.ADD:
            RQ.mbqm_vec(acc, n, a_m, a_s)
            RQ.mbqm_vec(acc2, n, b_m, b_s)
            K.add_vec(acc, acc2, n)
        else:
            K.mul_vec(acc, acc2, n)
        RQ.mbqm_vec(acc, n, o_m, o_s)
        _set(c, n, y[T_OFF] + e0, o_off, lo, hi)
        K.store_vec(acc, arena, c)


class _Table:
    """Indexable view of SOFTMAX's 256 int32 exp values (no copy)."""

    def __init__(self, buf, off):
        self.buf, self.off = buf, off

    def __getitem__(self, d):
        return struct.unpack_from("<i", self.buf, self.off + 4 * d)[0]


def _softmax(m, op, plan=None):
    code, ins, out, par = op
    x, tab, y = m.tensors[ins[0]], m.tensors[ins[1]], m.tensors[out]
    depth = x[T_DIMS][3]
    tb, to = m._wview(tab[T_OFF], 1024)
    table = _Table(tb, to)
    arena = m.arena
    for r in range(0, elements(x), depth):
        xs = struct.unpack_from("<%db" % depth, arena, x[T_OFF] + r)
        struct.pack_into("<%db" % depth, arena, y[T_OFF] + r, *softmax_row(xs, table))


def _lut(m, op, plan=None):
    code, ins, out, par = op
    x, tab, y = m.tensors[ins[0]], m.tensors[ins[1]], m.tensors[out]
    tb, to = m._wview(tab[T_OFF], 256)
    _set(m._c, x[T_OFF], y[T_OFF], elements(x), to)
    K.lut(m.arena, m.arena, tb, m._c)


def _pad(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    xd, yd = x[T_DIMS], y[T_DIMS]
    a = m._amv
    K.fill(m.arena, y[T_OFF], y[T_BYTES], par[8])
    if par[4] == par[5] == par[6] == par[7] == 0:
        run = xd[2] * xd[3]  # whole rows are contiguous in both
        ws = (0,)
    else:
        run = xd[3]
        ws = range(xd[2])
    for n in range(xd[0]):
        for h in range(xd[1]):
            for w in ws:
                xo = x[T_OFF] + ((n * xd[1] + h) * xd[2] + w) * xd[3]
                yo = y[T_OFF] + (((n + par[0]) * yd[1] + h + par[2]) * yd[2] + w + par[4]) * yd[3] + par[6]
                a[yo:yo + run] = a[xo:xo + run]


def _mean(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    xd = x[T_DIMS]
    mask, in_zp, out_zp, mu, sh = par
    total = elements(y)
    c, acc = m._c, m._acc
    for o0 in range(0, total, ACC_N):
        n = min(ACC_N, total - o0)
        _set(c, x[T_OFF], o0, n, xd[0], xd[1], xd[2], xd[3], mask, in_zp)
        K.mean_acc(m.arena, acc, c)
        RQ.mbqm_vec(acc, n, mu, sh)
        _set(c, n, y[T_OFF] + o0, out_zp, -128, 127)
        K.store_vec(acc, m.arena, c)


def _concat(m, op, plan=None):
    code, ins, out, par = op
    T = m.tensors
    y = T[out]
    yd = y[T_DIMS]
    outer = 1
    for k in range(par[0]):
        outer *= yd[k]
    row = y[T_BYTES] // outer
    a = m._amv
    src = m._src
    pos = 0
    for k in ins:
        x = T[k]
        inner = x[T_BYTES] // outer
        from_blob = x[T_STORAGE] == CONST
        for o in range(outer):
            xo, yo = x[T_OFF] + o * inner, y[T_OFF] + o * row + pos
            if not from_blob:
                a[yo:yo + inner] = a[xo:xo + inner]
            elif src.streaming:
                src.view(xo, inner, a[yo:yo + inner])  # read from the file straight into the output, no buffer
            else:
                a[yo:yo + inner] = src.mv[xo:xo + inner]
        pos += inner


def _quantize(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    scale, zp = y[T_SCALE], y[T_ZP]
    a = m.arena
    for i in range(elements(x)):
        a[y[T_OFF] + i] = quantize(struct.unpack_from("<f", a, x[T_OFF] + 4 * i)[0], scale, zp) & 0xFF


def _dequantize(m, op, plan=None):
    code, ins, out, par = op
    x, y = m.tensors[ins[0]], m.tensors[out]
    scale, zp = x[T_SCALE], x[T_ZP]
    a = m.arena
    for i in range(elements(x)):
        v = a[x[T_OFF] + i]
        struct.pack_into("<f", a, y[T_OFF] + 4 * i, scale * ((v - 256 if v > 127 else v) - zp))


def _copy(m, op, plan=None):
    x, y = m.tensors[op[1][0]], m.tensors[op[2]]
    m._amv[y[T_OFF]:y[T_OFF] + y[T_BYTES]] = m._amv[x[T_OFF]:x[T_OFF] + x[T_BYTES]]


def _trees(m, op, plan=None):
    # Imported on first use: the module (viper code) costs RAM that models without trees should not pay.
    from .trees import run_model_op
    run_model_op(m, op)


def _classic(m, op, plan=None):
    # §11 (SVMs, k-NN, naive Bayes): imported on first use, as _trees.
    from .classic import run_model_op
    run_model_op(m, op)


def _run(m, op, plan):
    RUN[op[0]](m, op, plan)


def _patch(m, op, plan):
    # Imported on first use, like trees: models without a PATCH stage do not pay for the module.
    from .patch import run
    run(m, op, _run, plan)


def _patch_plan(m, op):
    # One conv config per stage op, built once (rebuilding them per tile cost VWW's first stage ~3x its
    # layer-by-layer time); patch.run sets each tile's shapes and padding in them.
    return [_conv_plan(m, sop) for sop in op[4]]


PLANS = {O.CONV_2D: _conv_plan, O.DEPTHWISE_CONV_2D: _conv_plan, O.FULLY_CONNECTED: _conv_plan,
         O.PATCH: _patch_plan}

RUN = {
    O.CONV_2D: _conv, O.DEPTHWISE_CONV_2D: _conv, O.FULLY_CONNECTED: _conv, O.AVERAGE_POOL_2D: _pool,
    O.MAX_POOL_2D: _pool, O.ADD: _add_mul, O.MUL: _add_mul, O.SOFTMAX: _softmax, O.LUT: _lut, O.PAD: _pad,
    O.MEAN: _mean, O.CONCATENATION: _concat, O.QUANTIZE: _quantize, O.DEQUANTIZE: _dequantize, O.COPY: _copy,
    O.TREE_ENSEMBLE: _trees, O.PATCH: _patch, O.KERNEL: _classic, O.SVM_VOTE: _classic, O.KNN_VOTE: _classic,
    O.GAUSSIAN_NB: _classic, O.AFFINE: _classic,
}
