"""A loaded model: the activation arena, fixed scratch buffers, and the op-by-op executor.

RAM beyond the arena is fixed: two int32 accumulator chunks (ACC_N values each), two small config arrays and,
when the blob is streamed from a file, a weight buffer of max(WBUF, largest filter unit) bytes plus a block of
bias/multiplier/shift values. Apart from the parsed tensor and op tables nothing grows with the model.
"""

import array
import gc
import struct
import time

from micropython import const

from . import ops as O
from . import opcheck  # noqa: F401 -- compiled now (.py), before a blob is read: its compile peak then meets no tables
from .kernels import RUN, PLANS
from . import conv as C
from .conv import ACC_N, VB, GEMM_K
from .errors import BlobError, SelfTestError
from .blob import parse, io_info, T_DIMS, T_OFF, T_BYTES
from .source import MemorySource, FileSource
from .tensor_io import write_input, read_output, as_ndarray, ndarray_module

try:
    # The C runtime built into the firmware as a user C module (firmware/micropython/usermod): same blobs,
    # bit-exact with the viper kernels, several times faster. Absent on stock firmware and the PyPI unix port.
    import _tinyml
except ImportError:
    _tinyml = None

WBUF = const(4096)  # default streamed-weight buffer (bytes); left at the default it grows to 4 x WBUF when the heap
# has 8 times the growth free (roomy.py). (Few names: compiled from source, every new identifier is a qstr, and a
# few more moved the 7 KB allocation of the next qstr pool earlier in the load.)


KERNELS = ("c-module", "viper", "reference")


def load(blob, kernels=None, wbuf=None, offset=0, length=None):
    """Load a model from a file path (weights streamed) or bytes/bytearray/memoryview (weights used in place).

    kernels: None runs the blob through the C module `_tinyml` when the firmware has it and the blob is in
    memory, else on the viper kernels; "c-module", "viper" or "reference" (the plain-Python kernels) insist.
    offset/length select a blob embedded in a larger file (the installer's package files).
    wbuf: bytes of the streamed-weight buffer; None: WBUF, grown to 4 x WBUF after the load when the heap has
    8 times the growth free (fewer, larger reads; a heap that is tight keeps WBUF).
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
    arena, wb = _early_buffers(src, wbuf or WBUF)
    try:
        try:
            prog = parse(src)
        except MemoryError:
            if arena is None and wb is None:
                raise
            arena = wb = None  # the early buffers took what the checks needed (a tree model uses no weight
            gc.collect()       # buffer): parse without them
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
        return Model(src, prog, kernels, wbuf, arena, wb)
    except BaseException:  # MemoryError for the arena: do not leak the open file
        src.close()
        raise


def _early_buffers(src, wbuf):
    """The arena and, streamed, the weight buffer, allocated before the blob's tables are parsed: the largest
    blocks then find their holes before the parse splits the free heap (IC's 48 KB arena, SWW's 7 KB buffer).
    None for one the header does not size or that does not fit now: Model allocates it after the checks then,
    and a bad blob is refused as such."""
    arena = wb = None
    try:
        h = src.read(0, 24)
        if bytes(h[0:4]) == b"TMLB":
            arena = bytearray(struct.unpack_from("<I", h, 20)[0])
            if src.streaming:
                wb = bytearray(((wbuf + 3) & ~3) + 12 * VB)
    except (MemoryError, OSError, ValueError):
        pass
    return arena, wb


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
    def __init__(self, src, prog, kernels=None, wbuf=WBUF, arena=None, wb=None):
        self._src = src
        self._p = prog
        self.tensors = prog.tensors
        self.arena_bytes = prog.arena_bytes
        streamed = src.streaming and any(op[0] < O.TREE_ENSEMBLE or op[0] == O.PATCH for op in prog.ops)
        # Streamed: one block, weights in front (_wlen bytes), an op's bias/multiplier/shift behind (_vbuf). When
        # they take less than 12 * VB bytes they sit at its end, and a weight block may use the bytes before them.
        self._wlen = (max(wbuf or WBUF, prog.max_unit) + 3) & ~3 if streamed else 0
        if wb is not None and len(wb) != self._wlen + 12 * VB:
            wb = None
        self.arena = arena if arena is not None and len(arena) == prog.arena_bytes else bytearray(prog.arena_bytes)
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
        if streamed:
            self._wbuf = wb if wb is not None else bytearray(self._wlen + 12 * VB)
            if wbuf is None and gc.mem_free() >= 8 * (4 * WBUF - self._wlen):  # left at the default, room to spare
                from .roomy import grow
                buf = grow(prog, self._wlen, 4 * WBUF)
                if buf is not None:
                    self._wbuf, self._wlen = buf, len(buf) - 12 * VB
            self._vbuf = memoryview(self._wbuf)[self._wlen:]
        else:
            self._wbuf = self._vbuf = None
        self.scratch_bytes = 4 * (n_acc + n_rows + 24) + (len(self._wbuf) if self._wbuf else 0)
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
        self._vfree = self._wlen  # bytes of _wbuf a weight block may fill beside the vectors of op _vkey
        self._plans = [None] * len(prog.ops)  # (sized first: a list grown op by op leaves its old copies behind)
        if self._cm is None:
            gc.collect()  # the tensor tuples decoded since the parse: the configs and plans then fill their holes
            pool = C.configs(prog.ops)
            for i, op in enumerate(prog.ops):
                if op[0] in PLANS:
                    self._plans[i] = PLANS[op[0]](self, op, pool)

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
        from .summary import meta
        return meta(self)

    def inspect(self):
        """Print a readable summary: sizes, I/O, and the op list (with each op's microseconds after profile())."""
        from .summary import inspect
        inspect(self)

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
                base = (len(vbuf) - (hi - lo)) & ~3
                src.view(lo, hi - lo, vbuf[base:])
                self._vwin, self._vend = 0, co
                self._vidx = ((b_off - lo + base) // 4, (mu_off - lo + base) // 4, (sh_off - lo + base) // 4)
                self._vfree = self._wlen + base
            else:
                n = min(VB, co - oc0)
                k = n if step else 1
                mv = memoryview(vbuf)
                src.view(b_off + 4 * oc0, 4 * n, mv[0:])
                src.view(mu_off + 4 * oc0 * step, 4 * k, mv[4 * VB:])
                src.view(sh_off + 4 * oc0 * step, 4 * k, mv[8 * VB:])
                self._vwin, self._vend = oc0, oc0 + n
                self._vidx = (0, VB, 2 * VB)
                self._vfree = self._wlen
            self._vkey = b_off  # a bias tensor's offset identifies its op's vectors
        d = oc0 - self._vwin
        bb, mb, sb = self._vidx
        return self._vbuf, bb + d, mb + d * step, sb + d * step


def _is_list_of_values(v):
    """True if v is a list/tuple whose items are themselves sequences (one per graph input/output)."""
    return isinstance(v, (list, tuple)) and len(v) > 0 and not isinstance(v[0], (int, float))


def _values(v, dtype="int8"):
    if isinstance(v, (bytes, bytearray)):
        if dtype == "int32":  # raw little-endian bytes, as the output buffer holds them
            return list(struct.unpack("<%di" % (len(v) // 4), v))
        return [b - 256 if b > 127 else b for b in v]
    return list(v)


def _scratch_words(prog):
    # int32 words of (_acc, _acc2) the model's ops use: ADD/MUL take both in chunks of ACC_N values, MEAN the
    # first; the conv kernel one receptive field in _acc2 (its longest, at most GEMM_K, + 1; a depthwise filter
    # not 3x3 its taps), and _acc for the partial sums of longer ones. A model without ADD, MUL or MEAN needs far
    # less than two chunks (KWS: 260 B).
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
            elif code == O.DEPTHWISE_CONV_2D:  # a filter's taps (conv.plan; not 3x3, at most GEMM_K)
                wd = T[ins[1]][T_DIMS]
                if wd[1] != 3 or wd[2] != 3:
                    rows = max(rows, min(wd[1] * wd[2], GEMM_K))
    return acc, rows
