"""Blob loader: parses and validates a model blob (docs/blob-format.md) before anything executes.

Validation follows the spec's order (§9): header, section table, SHA-256, tensor records, GRAPH, op records.
Every offset, length, index, dtype and shape is checked against the bytes actually present, so a corrupted blob
raises BlobError and never makes a kernel read or write outside a buffer.
"""

import gc
import struct
import hashlib
from array import array

from micropython import const

from .errors import BlobError
from . import ops as O

FORMAT_VERSION = const(1)
ABI = const(1)
HEADER_BYTES = const(64)
SEC_TENSORS = const(1)
SEC_OPS = const(2)
SEC_CONST = const(3)
SEC_GRAPH = const(4)
SEC_META = const(5)
FLAG_FLOAT_IO = const(1)

INT8 = const(1)
UINT8 = const(2)
INT16 = const(3)
INT32 = const(4)
FLOAT32 = const(5)
DTYPE_SIZE = (0, 1, 1, 2, 4, 4)
DTYPE_NAME = ("?", "int8", "uint8", "int16", "int32", "float32")

# Tensor tuple fields.
T_DTYPE = const(0)
T_STORAGE = const(1)
T_DIMS = const(2)  # 4-D view, right-aligned (NHWC)
T_OFF = const(3)  # arena offset, or absolute blob offset for const tensors
T_BYTES = const(4)
T_ZP = const(5)
T_SCALE = const(6)
T_SHAPE = const(7)  # the tensor's own shape (rank entries)

ARENA = const(0)
CONST = const(1)
_LIMIT = const(0x7FFFFFFF)
HASH_CHUNK = const(512)


class TensorTable:
    """The tensor records, 9 int32 each (RAM: 36 bytes per tensor instead of ~300 for Python tuples).

    t = table[i] builds the tuple (dtype, storage, dims4, offset, bytes, zero_point, scale, shape) on demand;
    the T_* constants index it.
    """

    def __init__(self):
        self.a = array("i")

    def __len__(self):
        return len(self.a) // 9

    def append(self, dtype, rank, storage, dims, off, nbytes, zp, scale_bits):
        self.a.extend((dtype | rank << 8 | storage << 16, dims[0], dims[1], dims[2], dims[3], off, nbytes, zp,
                       scale_bits))

    def __getitem__(self, i):
        a = self.a
        k = 9 * i
        head = a[k]
        rank = (head >> 8) & 0xFF
        dims = (a[k + 1], a[k + 2], a[k + 3], a[k + 4])
        shape = dims[:rank]
        scale = struct.unpack("<f", struct.pack("<i", a[k + 8]))[0] if a[k + 8] else 0.0
        return (head & 0xFF, head >> 16, (1,) * (4 - rank) + shape, a[k + 5], a[k + 6], a[k + 7], scale, shape)


class Program:
    """What a validated blob describes: tensors, graph inputs/outputs, ops, memory plan."""

    def __init__(self):
        self.tensors = TensorTable()
        self.inputs = ()
        self.outputs = ()
        self.ops = []  # (opcode, input indices, output index, params tuple)
        self.arena_bytes = 0
        self.flags = 0
        self.total_bytes = 0
        self.sha256 = b""
        self.const_off = 0
        self.const_size = 0
        self.meta = None  # (offset, size) of the META section
        self.max_unit = 0  # largest weight unit (bytes) a streaming runtime must buffer at once


def elements(t):
    return t[T_BYTES] // DTYPE_SIZE[t[T_DTYPE]]


def io_info(t):
    """What a caller of a model needs to know of a graph input or output tensor."""
    return {"shape": t[T_SHAPE], "dtype": DTYPE_NAME[t[T_DTYPE]], "scale": t[T_SCALE], "zero_point": t[T_ZP]}


def parse(src):
    """Validate the blob in `src` (a source.*Source); return a Program or raise BlobError."""
    size = src.size
    if size < HEADER_BYTES:
        raise BlobError("blob too short: %d bytes, the header alone is 64" % size)
    h = src.read(0, HEADER_BYTES)
    if bytes(h[0:4]) != b"TMLB":
        raise BlobError("not a tinymlaas blob (magic %r, expected b'TMLB')" % bytes(h[0:4]))
    version, header_bytes, flags, abi, nsec, total, arena, sha = struct.unpack_from("<HHIHHII32s", h, 4)
    max_params, reserved = struct.unpack_from("<II", h, 56)
    if version != FORMAT_VERSION:
        raise BlobError("unsupported blob format version %d (this runtime reads version %d)" % (version, FORMAT_VERSION))
    if header_bytes != HEADER_BYTES:
        raise BlobError("header_bytes is %d, expected 64" % header_bytes)
    if abi != ABI:
        raise BlobError("unsupported kernel ABI %d (this runtime implements ABI %d)" % (abi, ABI))
    if total != size:
        raise BlobError("total_bytes says %d but the blob has %d bytes (truncated or padded)" % (total, size))
    if flags & ~FLAG_FLOAT_IO:
        raise BlobError("unknown header flags 0x%x" % flags)
    if reserved != 0:
        raise BlobError("header reserved field is not 0")
    if not 1 <= nsec <= 16:
        raise BlobError("section_count %d outside 1..16" % nsec)
    p = Program()
    p.flags, p.total_bytes, p.arena_bytes, p.sha256 = flags, total, arena, bytes(sha)
    if arena > _LIMIT:
        raise BlobError("arena_bytes %d too large" % arena)

    # Section table.
    table_end = HEADER_BYTES + 16 * nsec
    if table_end > size:
        raise BlobError("section table (%d entries) runs past the end of the blob" % nsec)
    raw = src.read(HEADER_BYTES, 16 * nsec)
    secs = {}
    spans = []
    for i in range(nsec):
        kind, off, sz, count = struct.unpack_from("<IIII", raw, 16 * i)
        if off < table_end or off + sz > size:
            raise BlobError("section %d (kind %d) at [%d, %d) lies outside [%d, %d)" % (i, kind, off, off + sz, table_end, size))
        for a, b in spans:
            if off < b and a < off + sz:
                raise BlobError("section %d (kind %d) overlaps another section" % (i, kind))
        spans.append((off, off + sz))
        if kind >= 0x100:
            continue  # optional extension section: skipped
        if not 1 <= kind <= 5:
            raise BlobError("unknown section kind %d" % kind)
        if kind in secs:
            raise BlobError("section kind %d appears twice" % kind)
        secs[kind] = (off, sz, count)
    for kind, nm in ((SEC_TENSORS, "TENSORS"), (SEC_OPS, "OPS"), (SEC_CONST, "CONST"), (SEC_GRAPH, "GRAPH")):
        if kind not in secs:
            raise BlobError("required section %s (kind %d) is missing" % (nm, kind))
    p.const_off, p.const_size = secs[SEC_CONST][0], secs[SEC_CONST][1]
    if p.const_off % 16:
        raise BlobError("CONST section starts at %d, not a multiple of 16" % p.const_off)
    if SEC_META in secs:
        p.meta = secs[SEC_META][:2]

    # Integrity before interpretation.
    hasher = hashlib.sha256()
    src.hash_range(hasher, HEADER_BYTES, size, bytearray(HASH_CHUNK))
    if hasher.digest() != p.sha256:
        raise BlobError("SHA-256 mismatch: the blob is corrupted")

    _parse_tensors(src, p, secs[SEC_TENSORS])
    _parse_graph(src, p, secs[SEC_GRAPH])
    _parse_ops(src, p, secs[SEC_OPS], max_params)
    from .opcheck import check_op

    for i in range(len(p.ops)):
        check_op(src, p, i)
    if any(op[0] == O.PATCH for op in p.ops):
        # The checks' garbage (and, from .py, patch.py's compile) collected first: the folded ops then take low
        # holes instead of splitting the large ones an input read needs next (VWW's 4-row bands, blob in RAM, 488 KB
        # heap, without this and fold's collect: 119 KB free after the load, its largest hole 22 KB, 27 KB needed)
        gc.collect()
        from .patch import fold
        fold(src, p)  # each PATCH op takes its stage's ops: (PATCH, ins, out, par, stage)
    # Checking a streamed blob leaves garbage (~100 KB of small reads for KWS): collected now, the model's arena
    # and buffers, allocated next, take the lowest holes that fit instead of the heap past that garbage
    # (emulated esp32, largest free block after an update to KWS: 64.2 KB without, 66.5 KB with; 69.5 after boot)
    gc.collect()
    return p


def _parse_tensors(src, p, sec):
    off, sz, count = sec
    if count == 0 or sz != 36 * count:
        raise BlobError("TENSORS section: size %d does not hold %d records of 36 bytes" % (sz, count))
    for i in range(count):
        rec = src.read(off + 36 * i, 36)
        dtype, rank, storage, res = rec[0], rec[1], rec[2], rec[3]
        dims = struct.unpack_from("<IIII", rec, 4)
        toff, nbytes, zp, scale_bits = struct.unpack_from("<IIii", rec, 20)
        where = "tensor %d: " % i
        if not 1 <= dtype <= 5:
            raise BlobError(where + "unknown dtype %d" % dtype)
        if rank > 4:
            raise BlobError(where + "rank %d > 4" % rank)
        if storage > 1 or res != 0:
            raise BlobError(where + "bad storage %d / reserved byte %d" % (storage, res))
        n = DTYPE_SIZE[dtype]
        for k in range(4):
            d = dims[k]
            if d < 1 or (k >= rank and d != 1):
                raise BlobError(where + "dim %d is %d" % (k, d))
            n *= d
            if n > _LIMIT:
                raise BlobError(where + "size overflows 2^31")
        if nbytes != n:
            raise BlobError(where + "bytes %d != product(dims) x element size %d" % (nbytes, n))
        if storage == ARENA:
            if toff + nbytes > p.arena_bytes:
                raise BlobError(where + "[%d, %d) ends outside the %d-byte arena" % (toff, toff + nbytes, p.arena_bytes))
        else:
            if toff + nbytes > p.const_size:
                raise BlobError(where + "const data [%d, %d) ends outside CONST (%d bytes)" % (toff, toff + nbytes, p.const_size))
            toff += p.const_off
            if dtype == INT32 and toff % 4:
                raise BlobError(where + "int32 constant not 4-aligned")
        p.tensors.append(dtype, rank, storage, dims, toff, nbytes, zp, scale_bits)


def _parse_graph(src, p, sec):
    off, sz, count = sec
    if sz < 4:
        raise BlobError("GRAPH section too short")
    raw = src.read(off, sz)
    ni, no = struct.unpack_from("<HH", raw, 0)
    if ni < 1 or no < 1 or sz != 4 + 2 * (ni + no):
        raise BlobError("GRAPH section: %d inputs + %d outputs do not match its %d bytes" % (ni, no, sz))
    idx = struct.unpack_from("<%dH" % (ni + no), raw, 4)
    has_float = False
    for k, t in enumerate(idx):
        if t >= len(p.tensors):
            raise BlobError("GRAPH: tensor index %d out of range (%d tensors)" % (t, len(p.tensors)))
        if p.tensors[t][T_STORAGE] != ARENA:
            raise BlobError("GRAPH: tensor %d is not an arena tensor" % t)
        dt = p.tensors[t][T_DTYPE]
        # Outputs may also be int32: TREE_ENSEMBLE's class scores (§10).
        if dt not in (INT8, FLOAT32) and not (dt == INT32 and k >= ni):
            raise BlobError("GRAPH: tensor %d has dtype %s; graph inputs are int8 or float32, outputs also int32"
                            % (t, DTYPE_NAME[dt]))
        has_float = has_float or dt == FLOAT32
    if has_float != bool(p.flags & FLAG_FLOAT_IO):
        raise BlobError("FLOAT_IO flag does not match the graph's input/output dtypes")
    p.inputs, p.outputs = idx[:ni], idx[ni:]


def _parse_ops(src, p, sec, max_params):
    off, sz, count = sec
    end = off + sz
    pos = off
    largest = 0
    nt = len(p.tensors)
    for i in range(count):
        if pos + 4 > end:
            raise BlobError("op %d: record header runs past the OPS section" % i)
        code, ni, no, npar = src.read(pos, 4)
        if code not in O.OPS:
            raise BlobError("op %d: unknown opcode %d" % (i, code))
        nm, want_in, want_par = O.OPS[code]
        if (ni != want_in if want_in else ni < 1) or no != 1 or npar != want_par:
            raise BlobError("op %d (%s): has %d inputs, %d outputs, %d params" % (i, nm, ni, no, npar))
        nidx = ni + no
        head = 4 + 2 * nidx
        head += (4 - head % 4) % 4
        rlen = head + 4 * npar
        if pos + rlen > end:
            raise BlobError("op %d (%s): record runs past the OPS section" % (i, nm))
        rec = src.read(pos, rlen)
        idx = struct.unpack_from("<%dH" % nidx, rec, 4)
        for t in idx:
            if t >= nt:
                raise BlobError("op %d (%s): tensor index %d out of range (%d tensors)" % (i, nm, t, nt))
        params = struct.unpack_from("<%di" % npar, rec, head) if npar else ()
        largest = max(largest, npar)
        p.ops.append((code, idx[:ni], idx[ni], params))
        pos += rlen
    if pos != end:
        raise BlobError("OPS section has %d bytes after its %d records" % (end - pos, count))
    if count == 0:
        raise BlobError("OPS section has no ops")
    if largest != max_params:
        raise BlobError("header max_op_params %d but the largest op has %d" % (max_params, largest))
