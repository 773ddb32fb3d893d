"""On-device learning of a model's last dense layer (TinyOL; docs/learning.md). The int8 model runs as ever; its
graph output `output` (the input of its last FULLY_CONNECTED op, the embedding) is dequantized into a float32
vector and a small float head answers on it:

    softmax  multinomial logistic regression W (K x D), b (K), initialised from the blob's last FULLY_CONNECTED op
             (so before any sample the head answers what the model answers), one SGD step per labelled sample
    ncm      nearest class mean: a running mean and count per class, ready once every class has a sample

The head is kept in the TMLH v1 format (docs/learning.md): persisted power-safe next to the active model (head.tmp
written and flushed, then renamed over head.bin), read back by the service, written by it.

RAM: the head's arrays, allocated once: 4*K*D (W or the means) + 4*K (bias or counts) + 4*D (the last embedding)
+ 8*K (scores, probabilities) + 50 bytes (the last 50 outcomes). A sample allocates only Python floats (boxed on
some ports), never anything of K*D size. Arrays are stored in the machine's byte order: little-endian on every
target (x86-64, Xtensa, Cortex-M, RISC-V), which TMLH is.
"""

import os
import struct
from array import array
from binascii import crc32
from math import exp

from micropython import const

MAGIC = b"TMLH"
VERSION = const(1)
SOFTMAX = const(1)
NCM = const(2)
KINDS = {"softmax": SOFTMAX, "ncm": NCM}
HEADER = "<4sBBHHHIffi"  # magic, version, kind, D, K, reserved, samples, lr, embedding scale, zero point
HEADER_BYTES = const(28)
MAX_D = const(4096)
MAX_K = const(256)
WINDOW = const(50)  # prequential accuracy over the last WINDOW labelled samples
CHUNK = const(256)
FILE = "/head.bin"  # in the installer's root, beside the active pointer (installer.py drops it on an install)
TMP = "/head.tmp"


class HeadError(ValueError):
    """A head that is not TMLH v1, is damaged, or does not fit this model: the message says which."""


def total_bytes(d, k):
    return HEADER_BYTES + 4 * k * d + 4 * k + 4


def _finite(v):
    return v == v and v - v == 0.0  # NaN != NaN; inf - inf is NaN


class Head:
    def __init__(self, kind, d, k, lr, scale, zero_point):
        self.kind, self.d, self.k = kind, d, k
        # the scale as TMLH holds it (float32), so a saved head matches the model it was saved for
        self.lr, self.scale, self.zp = lr, struct.unpack("<f", struct.pack("<f", scale))[0], zero_point
        self.samples = 0
        self.w = array("f", bytes(4 * k * d))  # softmax: weights, one row per class; ncm: the class means
        self.tail = array("f" if kind == SOFTMAX else "I", bytes(4 * k))  # softmax: bias; ncm: counts
        self.x = array("f", bytes(4 * d))  # the last embedding
        self.z = array("f", bytes(4 * k))  # its scores: logits (softmax) or -distance^2 (ncm)
        self.p = array("f", bytes(4 * k))  # softmax probabilities of an update
        self.hits = bytearray(WINDOW)  # 1 where the head predicted the label of that sample, before learning it
        self.seen = 0  # samples in the accuracy window since the head was loaded or reset

    # ----- inference -----

    def embed(self, buf):
        """Dequantize the int8 embedding `buf` (the graph output's arena bytes) into x and score it."""
        x, s, zp = self.x, self.scale, self.zp
        for i in range(self.d):
            v = buf[i]
            x[i] = s * ((v - 256 if v > 127 else v) - zp)
        self.score()

    def score(self):
        w, x, z, t, d = self.w, self.x, self.z, self.tail, self.d
        ncm = self.kind == NCM
        for k in range(self.k):
            r = k * d
            acc = 0.0
            if ncm:
                for i in range(d):
                    e = x[i] - w[r + i]
                    acc -= e * e
            else:
                acc = t[k]
                for i in range(d):
                    acc += w[r + i] * x[i]
            z[k] = acc

    def ready(self):
        """ncm answers once every class has a sample; softmax always."""
        return self.kind == SOFTMAX or min(self.tail) > 0

    def top(self):
        z = self.z
        best = 0
        for k in range(1, self.k):
            if z[k] > z[best]:
                best = k
        return best

    def accuracy(self):
        n = min(self.seen, WINDOW)
        return sum(self.hits[:n]) / n if n else -1.0

    # ----- learning -----

    def learn(self, label, fallback, update=True):
        """One labelled sample for the embedding in x (scored by embed()): count whether the head (or, ncm not
        ready, the model's answer `fallback`) predicted it, then update (unless frozen: update false). label < K
        (checked by the caller)."""
        pred = self.top() if self.ready() else fallback
        self.hits[self.seen % WINDOW] = 1 if pred == label else 0
        self.seen += 1
        if not update:
            return
        if self.kind == SOFTMAX:
            self._sgd(label)
        else:
            self._mean(label)
        self.samples += 1

    def _sgd(self, label):
        # cross-entropy gradient of softmax(W x + b): (p - onehot(label)) outer x, in place
        w, x, z, p, b, d = self.w, self.x, self.z, self.p, self.tail, self.d
        top = max(z)
        s = 0.0
        for k in range(self.k):
            e = exp(z[k] - top)
            p[k] = e
            s += e
        for k in range(self.k):
            g = self.lr * (p[k] / s - (1.0 if k == label else 0.0))
            b[k] -= g
            r = k * d
            for i in range(d):
                w[r + i] -= g * x[i]

    def _mean(self, label):
        w, x, d = self.w, self.x, self.d
        n = self.tail[label] + 1
        self.tail[label] = n
        inv = 1.0 / n
        r = label * d
        for i in range(d):
            w[r + i] += (x[i] - w[r + i]) * inv

    # ----- TMLH -----

    def header(self):
        return struct.pack(HEADER, MAGIC, VERSION, self.kind, self.d, self.k, 0, self.samples, self.lr, self.scale,
                           self.zp)

    def encode(self):
        """-> the head in TMLH v1 (for a read of it): one allocation of its size, filled from the arrays' own
        bytes (a read of /41 or of the whole TinyML instance needs no second copy of the weights)."""
        w, t = self.w, self.tail
        n = 4 * self.k * self.d
        out = bytearray(HEADER_BYTES + n + 4 * self.k + 4)
        out[:HEADER_BYTES] = self.header()
        out[HEADER_BYTES:HEADER_BYTES + n] = _raw(w)
        out[HEADER_BYTES + n:-4] = _raw(t)
        struct.pack_into("<I", out, len(out) - 4, crc32(memoryview(out)[:-4]))
        return out

    def save(self, root):
        """Power-safe: the new head is complete in head.tmp before the rename that makes it head.bin."""
        tmp, path = root + TMP, root + FILE
        crc = 0
        with open(tmp, "wb") as f:
            for part in (self.header(), self.w, self.tail):
                f.write(part)
                crc = crc32(part, crc)
            f.write(struct.pack("<I", crc))
            f.flush()
        if hasattr(os, "sync"):
            os.sync()
        replace(tmp, path)

    def read_file(self, path):
        """Load the TMLH file `path` into this head, which it must fit (kind, D, K, embedding quantization):
        checked whole (length, CRC, values) before anything changes, so a bad file raises HeadError and
        leaves the head as it was."""
        with open(path, "rb") as f:
            h = check(f, self)
            f.seek(HEADER_BYTES)
            f.readinto(self.w)
            f.readinto(self.tail)
        self.samples, self.lr = h[6], h[7]
        self.seen = 0


def _raw(a):
    """The bytes of array `a`: a view of them where uctypes offers one (no copy), else a copy."""
    try:
        import uctypes

        return uctypes.bytearray_at(uctypes.addressof(a), len(a) * 4)
    except (ImportError, AttributeError, TypeError, ValueError):
        return bytes(a)


def replace(src, dst):
    try:
        os.rename(src, dst)  # atomic where the filesystem replaces (unix, littlefs)
    except OSError:
        remove(dst)  # FAT: load() takes a complete head.tmp when head.bin is missing
        os.rename(src, dst)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def check(f, head):
    """Read the TMLH file `f` through a small buffer: -> its header fields, or HeadError naming the first fault.
    `head`: the head it must fit."""
    raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise HeadError("head too short: %d bytes, the TMLH header alone is %d" % (len(raw), HEADER_BYTES))
    h = struct.unpack(HEADER, raw)
    magic, version, kind, d, k, reserved, samples, lr, scale, zp = h
    if magic != MAGIC:
        raise HeadError("not a TMLH head (magic %r)" % magic)
    if version != VERSION:
        raise HeadError("TMLH version %d, this device reads version 1" % version)
    if kind not in (SOFTMAX, NCM):
        raise HeadError("unknown head kind %d (1 softmax, 2 ncm)" % kind)
    if not (1 <= d <= MAX_D and 2 <= k <= MAX_K) or reserved:
        raise HeadError("head D=%d K=%d reserved=%d outside D 1..4096, K 2..256, reserved 0" % (d, k, reserved))
    if not (_finite(lr) and lr >= 0 and _finite(scale) and scale > 0):
        raise HeadError("head lr %r / embedding scale %r not finite, lr >= 0, scale > 0" % (lr, scale))
    if kind != head.kind or d != head.d or k != head.k:
        raise HeadError("head is %s D=%d K=%d, this model's is %s D=%d K=%d" % (
            _name(kind), d, k, _name(head.kind), head.d, head.k))
    if scale != head.scale or zp != head.zp:
        raise HeadError("head embedding quantization (%r, %d) is not this model's (%r, %d)" % (
            scale, zp, head.scale, head.zp))
    # the body: CRC, and every float finite (weights, means; softmax also its bias)
    crc = crc32(raw)
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    floats = 4 * k * d + (4 * k if kind == SOFTMAX else 0)
    left = 4 * k * d + 4 * k
    while left:
        n = min(CHUNK, left)
        if f.readinto(mv[:n]) != n:
            raise HeadError("head truncated: D=%d K=%d needs %d bytes" % (d, k, total_bytes(d, k)))
        crc = crc32(mv[:n], crc)
        m = min(n, floats) // 4
        if m > 0:
            for v in struct.unpack_from("<%df" % m, buf):
                if not _finite(v):
                    raise HeadError("head holds a value that is not finite")
            floats -= 4 * m
        left -= n
    tail = f.read(5)
    if len(tail) != 4:
        raise HeadError("head of D=%d K=%d must be %d bytes: %s" % (
            d, k, total_bytes(d, k), "CRC missing" if len(tail) < 4 else "bytes after its CRC"))
    if struct.unpack("<I", tail)[0] != crc:
        raise HeadError("head CRC mismatch")
    return h


def _name(kind):
    return "softmax" if kind == SOFTMAX else "ncm" if kind == NCM else str(kind)


def load(root, head):
    """At boot: the saved head into `head` if head.bin (or, after a cut between remove and rename on a filesystem
    without atomic replace, a complete head.tmp) fits; -> True, else False with `head` untouched."""
    for name in (FILE, TMP):
        try:
            head.read_file(root + name)
        except (OSError, HeadError) as e:
            if not isinstance(e, OSError):
                print("saved head %s refused: %s" % (name, e))
            continue
        if name == TMP:
            replace(root + TMP, root + FILE)
        remove(root + TMP)
        return True
    remove(root + TMP)
    return False


# ----- the initial head, from the model -----

def initial(kind, lr, model, output, prog, src, head=None):
    """A new head for `model` whose graph output `output` is the input of its last FULLY_CONNECTED op; prog,
    src: the model's parsed blob (tinyml.blob.Program) and its byte source. softmax: that op's weights and bias,
    dequantized; ncm: empty. head: a head of this model to set back to that (a reset: no new arrays)."""
    from .blob import T_SCALE, T_SHAPE, T_ZP, T_DTYPE, INT8
    from .ops import FULLY_CONNECTED

    if not 0 <= output < len(prog.outputs):
        raise HeadError("the model has no graph output %d for the embedding" % output)
    fc = None
    for op in prog.ops:
        if op[0] == FULLY_CONNECTED:
            fc = op
    if fc is None:
        raise HeadError("the model has no FULLY_CONNECTED layer to learn")
    T = prog.tensors
    x = T[fc[1][0]]
    if prog.outputs[output] != fc[1][0]:
        raise HeadError("graph output %d is not the input of the last FULLY_CONNECTED layer" % output)
    if x[T_DTYPE] != INT8:
        raise HeadError("the embedding must be int8")
    k, d = T[fc[1][1]][T_SHAPE][0], T[fc[1][1]][T_SHAPE][-1]
    if not (1 <= d <= MAX_D and 2 <= k <= MAX_K) or d != len(model.output_buffer(output)):
        raise HeadError("a %d x %d last layer cannot be learned (D 1..4096, K 2..256, one row)" % (k, d))
    if head is None or (head.kind, head.d, head.k) != (kind, d, k):
        head = Head(kind, d, k, lr, x[T_SCALE], x[T_ZP])
    elif kind == NCM:  # a reset (softmax overwrites every value below)
        for i in range(k * d):
            head.w[i] = 0.0
        for i in range(k):
            head.tail[i] = 0
    head.lr, head.samples, head.seen = lr, 0, 0
    if kind == SOFTMAX:
        _from_fc(head, fc, T, src, x[T_SCALE], T[fc[2]][T_SCALE])
    return head


def _from_fc(head, fc, T, src, in_scale, out_scale):
    # y = MBQM(b + sum (x + in_off)(w + w_off)) with real multiplier in_scale * w_scale[j] / out_scale, so
    # w_scale[j] = mult[j] 2^(shift[j] - 31) out_scale / in_scale; W = (w + w_off) w_scale, b = bias w_scale in_scale
    from .blob import T_OFF, elements

    if not (in_scale > 0 and out_scale > 0):
        raise HeadError("the last FULLY_CONNECTED layer has no quantization scales")
    w_t, b_t, mu_t, sh_t = (T[i] for i in fc[1][1:5])
    d, k, w, b = head.d, head.k, head.w, head.tail
    w_off = fc[3][1]
    per = elements(mu_t) > 1
    for j in range(k):
        c = j if per else 0
        mu = struct.unpack_from("<i", src.read(mu_t[T_OFF] + 4 * c, 4))[0]
        sh = struct.unpack_from("<i", src.read(sh_t[T_OFF] + 4 * c, 4))[0]
        ws = mu * 2.0 ** (sh - 31) * out_scale / in_scale
        b[j] = struct.unpack_from("<i", src.read(b_t[T_OFF] + 4 * j, 4))[0] * ws * in_scale
        row = src.read(w_t[T_OFF] + j * d, d)
        r = j * d
        for i in range(d):
            v = row[i]
            w[r + i] = ((v - 256 if v > 127 else v) + w_off) * ws
