"""Parse and fully validate a model blob (docs/blob-format.md §9) before anything executes.

`parse(data)` returns a `Blob` or raises `BlobFormatError` with one clear sentence. Checks run in the spec's order
(header, section table, SHA-256, tensors, graph, ops), every length is checked before it is read, and the first
violation found is reported. The constants and struct layouts come from `blob.format`, the single Python statement
of the spec shared with the writer; the per-op rules are in `blob.opcheck`.
"""

import hashlib
import json

from . import classic
from . import format as F
from . import patch
from .format import BlobFormatError, fail as _fail  # noqa: F401 (BlobFormatError: its users import it from here)
from .opcheck import check_exp_table, check_multipliers, check_op, check_tree_tables, const_i32


class Tensor:
    __slots__ = ("index", "dtype", "shape", "storage", "offset", "nbytes", "zero_point", "scale")

    def __init__(self, index, dtype, shape, storage, offset, nbytes, zero_point, scale):
        self.index = index
        self.dtype = dtype  # format.DTYPE_* code
        self.shape = shape  # tuple of `rank` dims
        self.storage = storage
        self.offset = offset
        self.nbytes = nbytes
        self.zero_point = zero_point
        self.scale = scale

    @property
    def dims4(self):
        """The right-aligned 4-D view used by 4-D ops (§3)."""
        return (1,) * (4 - len(self.shape)) + tuple(self.shape)

    @property
    def elements(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def is_const(self):
        return self.storage == F.STORAGE_CONST

    def __repr__(self):
        return "Tensor(%d, %s%s, %s@%d)" % (self.index, F.DTYPE_NAMES[self.dtype], list(self.shape),
                                           "const" if self.is_const else "arena", self.offset)


class Op:
    __slots__ = ("index", "spec", "inputs", "outputs", "params")

    def __init__(self, index, spec, inputs, outputs, params):
        self.index = index
        self.spec = spec
        self.inputs = inputs  # tensor indices
        self.outputs = outputs
        self.params = params  # tuple of ints, in the op table's order

    @property
    def name(self):
        return self.spec.name

    def param(self, name):
        return self.params[self.spec.params.index(name)]

    def __repr__(self):
        return "Op(%d, %s, in=%s, out=%s)" % (self.index, self.name, list(self.inputs), list(self.outputs))


class Blob:
    """A validated blob. `const` is a memoryview of the CONST section."""

    def __init__(self, data, header, tensors, ops, inputs, outputs, const, meta):
        self.data = data
        self.flags = header["flags"]
        self.arena_bytes = header["arena_bytes"]
        self.max_op_params = header["max_op_params"]
        self.sha256 = header["sha256"]
        self.tensors = tensors
        self.ops = ops
        self.inputs = inputs  # graph input tensor indices
        self.outputs = outputs
        self.const = const
        self.meta = meta

    @property
    def float_io(self):
        return bool(self.flags & F.FLAG_FLOAT_IO)


# ---------------------------------------------------------------------------------------------------------------
# §1 header


def _parse_header(data):
    if len(data) < F.HEADER_BYTES:
        _fail("blob is %d bytes, shorter than the %d-byte header", len(data), F.HEADER_BYTES)
    (magic, version, header_bytes, flags, abi, section_count, total_bytes, arena_bytes, sha, max_op_params,
     reserved) = F.HEADER.unpack_from(data, 0)
    if magic != F.MAGIC:
        _fail("bad magic %r: not a tinymlaas model blob (expected %r)", bytes(magic), F.MAGIC)
    if version != F.FORMAT_VERSION:
        _fail("blob format version %d is not supported: this reader implements format version %d",
              version, F.FORMAT_VERSION)
    if header_bytes != F.HEADER_BYTES:
        _fail("header_bytes is %d, format version 1 requires %d", header_bytes, F.HEADER_BYTES)
    if abi != F.ABI:
        _fail("kernel ABI %d is not implemented: this reader implements ABI %d", abi, F.ABI)
    if total_bytes != len(data):
        _fail("blob is truncated or padded: header says total_bytes=%d but %d bytes were given",
              total_bytes, len(data))
    if flags & ~F.FLAG_FLOAT_IO:
        _fail("unknown header flag bits 0x%x", flags & ~F.FLAG_FLOAT_IO)
    if not 1 <= section_count <= F.MAX_SECTIONS:
        _fail("section_count %d outside 1..%d", section_count, F.MAX_SECTIONS)
    if reserved != 0:
        _fail("header reserved field is %d, must be 0", reserved)
    return dict(flags=flags, section_count=section_count, total_bytes=total_bytes, arena_bytes=arena_bytes,
                sha256=bytes(sha), max_op_params=max_op_params)


# §2 section table


def _parse_sections(data, header):
    n = header["section_count"]
    table_end = F.HEADER_BYTES + F.SECTION.size * n
    if table_end > len(data):
        _fail("section table (%d entries) runs past the end of the blob", n)
    sections = {}
    spans = []
    for i in range(n):
        kind, offset, size, count = F.SECTION.unpack_from(data, F.HEADER_BYTES + F.SECTION.size * i)
        if offset < table_end or offset + size > len(data):
            _fail("section %d (kind %d) at [%d, %d) lies outside [%d, %d)", i, kind, offset, offset + size,
                  table_end, len(data))
        spans.append((offset, offset + size, kind))
        if kind in F.KNOWN_SECTIONS:
            if kind in sections:
                _fail("section kind %d appears twice", kind)
            sections[kind] = (offset, size, count)
        elif kind < F.FIRST_OPTIONAL_SECTION_KIND:
            _fail("unknown required section kind %d (kinds below 0x%x must be known)", kind,
                  F.FIRST_OPTIONAL_SECTION_KIND)
    spans.sort()
    for (a0, a1, ka), (b0, b1, kb) in zip(spans, spans[1:]):
        if b0 < a1:
            _fail("sections of kind %d and %d overlap", ka, kb)
    for kind in F.REQUIRED_SECTIONS:
        if kind not in sections:
            _fail("required section kind %d is missing", kind)
    for kind in (F.SECTION_CONST, F.SECTION_GRAPH, F.SECTION_META):
        if kind in sections and sections[kind][2] != 0:
            _fail("raw section kind %d has count %d, must be 0", kind, sections[kind][2])
    if sections[F.SECTION_CONST][0] % F.CONST_ALIGN:
        _fail("CONST section offset %d is not a multiple of %d", sections[F.SECTION_CONST][0], F.CONST_ALIGN)
    return sections


# §3 tensors


def _parse_tensors(data, header, sections):
    offset, size, count = sections[F.SECTION_TENSORS]
    if size != count * F.TENSOR.size:
        _fail("TENSORS section is %d bytes for %d records of %d bytes", size, count, F.TENSOR.size)
    const_off, const_size, _ = sections[F.SECTION_CONST]
    tensors = []
    for i in range(count):
        (dtype, rank, storage, reserved, d0, d1, d2, d3, toff, nbytes, zp,
         scale) = F.TENSOR.unpack_from(data, offset + i * F.TENSOR.size)
        dims = (d0, d1, d2, d3)
        if dtype not in F.DTYPE_SIZE:
            _fail("tensor %d: unknown dtype %d", i, dtype)
        if rank > F.MAX_RANK:
            _fail("tensor %d: rank %d > %d", i, rank, F.MAX_RANK)
        if storage not in (F.STORAGE_ARENA, F.STORAGE_CONST):
            _fail("tensor %d: unknown storage %d", i, storage)
        if reserved:
            _fail("tensor %d: reserved byte is %d, must be 0", i, reserved)
        if any(d < 1 for d in dims):
            _fail("tensor %d: dims %s contain 0", i, list(dims))
        if any(d != 1 for d in dims[rank:]):
            _fail("tensor %d: dims past rank %d must be 1, got %s", i, rank, list(dims))
        want = F.DTYPE_SIZE[dtype]
        for d in dims:
            want *= d
            if want > F.MAX_TENSOR_BYTES:
                _fail("tensor %d: size overflows 2^31 bytes", i)
        if nbytes != want:
            _fail("tensor %d: bytes=%d but dims %s of %s need %d", i, nbytes, list(dims[:rank]),
                  F.DTYPE_NAMES[dtype], want)
        if storage == F.STORAGE_ARENA:
            if toff + nbytes > header["arena_bytes"]:
                _fail("tensor %d: arena range [%d, %d) ends past arena_bytes=%d", i, toff, toff + nbytes,
                      header["arena_bytes"])
        else:
            if toff + nbytes > const_size:
                _fail("tensor %d: const range [%d, %d) ends past the CONST section (%d bytes)", i, toff,
                      toff + nbytes, const_size)
            if dtype == F.DTYPE_INT32 and (const_off + toff) % 4:
                _fail("tensor %d: int32 const data at file offset %d is not 4-aligned", i, const_off + toff)
        tensors.append(Tensor(i, dtype, dims[:rank], storage, toff, nbytes, zp, scale))
    return tensors


# §4 graph


def _parse_graph(data, sections, tensors, header_flags):
    offset, size, _ = sections[F.SECTION_GRAPH]
    if size < F.GRAPH_COUNTS.size:
        _fail("GRAPH section is %d bytes, shorter than its counts", size)
    n_in, n_out = F.GRAPH_COUNTS.unpack_from(data, offset)
    if size != F.GRAPH_COUNTS.size + 2 * (n_in + n_out):
        _fail("GRAPH section is %d bytes for %d inputs and %d outputs", size, n_in, n_out)
    if n_in < 1 or n_out < 1:
        _fail("graph needs at least one input and one output (has %d and %d)", n_in, n_out)
    idx = [int.from_bytes(data[offset + 4 + 2 * k:offset + 6 + 2 * k], "little") for k in range(n_in + n_out)]
    for t in idx:
        if t >= len(tensors):
            _fail("graph tensor index %d >= tensor count %d", t, len(tensors))
        if tensors[t].is_const:
            _fail("graph input/output tensor %d is a const tensor", t)
    float_io = any(tensors[t].dtype == F.DTYPE_FLOAT32 for t in idx)
    if float_io != bool(header_flags & F.FLAG_FLOAT_IO):
        _fail("FLOAT_IO flag is %d but the graph %s float32 inputs/outputs", header_flags & F.FLAG_FLOAT_IO,
              "has" if float_io else "has no")
    return tuple(idx[:n_in]), tuple(idx[n_in:])


# §5 ops


def _parse_ops(data, header, sections, tensors):
    offset, size, count = sections[F.SECTION_OPS]
    end = offset + size
    pos = offset
    ops = []
    largest_params = 0
    for i in range(count):
        if pos + F.OP_HEADER.size > end:
            _fail("op %d: record header runs past the OPS section", i)
        code, n_in, n_out, n_params = F.OP_HEADER.unpack_from(data, pos)
        spec = F.OPS_BY_CODE.get(code)
        if spec is None:
            _fail("op %d: unknown opcode %d for kernel ABI %d", i, code, F.ABI)
        rec = F.op_record_size(n_in, n_out, n_params)
        if pos + rec > end:
            _fail("op %d (%s): record of %d bytes runs past the OPS section", i, spec.name, rec)
        want_in = len(spec.inputs) if spec.inputs is not None else None
        if (want_in is not None and n_in != want_in) or (want_in is None and n_in < 1):
            _fail("op %d (%s): has %d inputs, needs %s", i, spec.name, n_in,
                  want_in if want_in is not None else "at least 1")
        if n_out != F.N_OUTPUTS:
            _fail("op %d (%s): has %d outputs, needs %d", i, spec.name, n_out, F.N_OUTPUTS)
        if n_params != spec.n_params:
            _fail("op %d (%s): has %d params, needs %d", i, spec.name, n_params, spec.n_params)
        if n_params > header["max_op_params"]:
            _fail("op %d (%s): %d params exceed the header's max_op_params=%d", i, spec.name, n_params,
                  header["max_op_params"])
        largest_params = max(largest_params, n_params)
        p = pos + F.OP_HEADER.size
        idx = [int.from_bytes(data[p + 2 * k:p + 2 * k + 2], "little") for k in range(n_in + n_out)]
        for t in idx:
            if t >= len(tensors):
                _fail("op %d (%s): tensor index %d >= tensor count %d", i, spec.name, t, len(tensors))
        pstart = pos + rec - 4 * n_params
        params = tuple(int.from_bytes(data[pstart + 4 * k:pstart + 4 * k + 4], "little", signed=True)
                       for k in range(n_params))
        op = Op(i, spec, tuple(idx[:n_in]), tuple(idx[n_in:]), params)
        check_op(op, tensors)
        ops.append(op)
        pos += rec
    if pos != end:
        _fail("OPS section has %d bytes after its %d records", end - pos, count)
    if header["max_op_params"] != largest_params:
        _fail("header max_op_params=%d but the largest op has %d params", header["max_op_params"], largest_params)
    const_off = sections[F.SECTION_CONST][0]
    for op in ops:
        if op.name == "TREE_ENSEMBLE":
            check_tree_tables(op, tensors, data, const_off)
        elif op.name in classic.OP_NAMES:
            classic.check_tables(op, [tensors[i] for i in op.inputs], tensors[op.outputs[0]],
                                 lambda t: const_i32(data, const_off, t),
                                 lambda msg, *a: _fail("op %d (%s): " % (op.index, op.name) + msg, *a))
        elif op.name == "SOFTMAX":
            check_exp_table(op, tensors, const_i32(data, const_off, tensors[op.inputs[1]]).reshape(-1))
        elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            mult = const_i32(data, const_off, tensors[op.inputs[3]]).reshape(-1)
            shift = const_i32(data, const_off, tensors[op.inputs[4]]).reshape(-1)
            check_multipliers(op, mult, shift)
    for op in ops:
        if op.name == "PATCH":
            patch.check_stage(ops, op.index, tensors, const_i32(data, const_off, tensors[op.inputs[1]]),
                              lambda msg, *a, op=op: _fail("op %d (PATCH): " % op.index + msg, *a))
    return ops


# ---------------------------------------------------------------------------------------------------------------


def parse(data):
    """Validate `data` (bytes-like) completely and return a Blob. Raises BlobFormatError."""
    data = memoryview(bytes(data)) if not isinstance(data, (bytes, bytearray)) else data
    header = _parse_header(data)
    sections = _parse_sections(data, header)
    digest = hashlib.sha256(data[F.HEADER_BYTES:]).digest()
    if digest != header["sha256"]:
        _fail("SHA-256 mismatch: the blob is corrupted (content hash %s..., header says %s...)",
              digest.hex()[:12], header["sha256"].hex()[:12])
    tensors = _parse_tensors(data, header, sections)
    inputs, outputs = _parse_graph(data, sections, tensors, header["flags"])
    ops = _parse_ops(data, header, sections, tensors)
    const_off, const_size, _ = sections[F.SECTION_CONST]
    const = memoryview(data)[const_off:const_off + const_size]
    meta = {}
    if F.SECTION_META in sections:
        moff, msize, _ = sections[F.SECTION_META]
        try:
            meta = json.loads(bytes(data[moff:moff + msize]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            _fail("META section is not UTF-8 JSON: %s", e)
        if not isinstance(meta, dict):
            _fail("META section is not a JSON object")
    return Blob(data, header, tensors, ops, inputs, outputs, const, meta)


def read(path):
    with open(path, "rb") as f:
        return parse(f.read())
