"""Parse and fully validate a model blob (docs/blob-format.md §9) before anything executes.

`parse(data)` returns a `Blob` or raises `BlobFormatError` with one clear sentence. Checks run in the spec's order
(header, section table, SHA-256, tensors, graph, ops), every length is checked before it is read, and the first
violation found is reported. The constants and struct layouts come from `blob.format`, the single Python statement
of the spec shared with the writer.
"""

import hashlib
import json
import math

from . import classic
from . import format as F
from . import patch


# Bounds shared with the C loader (inference_module/c/tml_load.c). Strides, dilations and pool filters above 65535
# occur in no real model and would let a corrupt blob request absurd work. ADD's left shift: (x + off) spans
# [-255, 255], so shifting by more than 22 can leave int32 (TFLite uses 20).
MAX_WINDOW_PARAM = 65535
MAX_ADD_LEFT_SHIFT = 22


class BlobFormatError(ValueError):
    """The bytes are not a valid format-version-1 blob; the message says which rule failed."""


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


def _fail(msg, *args):
    raise BlobFormatError(msg % args if args else msg)


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
        _check_op(op, tensors)
        ops.append(op)
        pos += rec
    if pos != end:
        _fail("OPS section has %d bytes after its %d records", end - pos, count)
    if header["max_op_params"] != largest_params:
        _fail("header max_op_params=%d but the largest op has %d params", header["max_op_params"], largest_params)
    const_off = sections[F.SECTION_CONST][0]
    for op in ops:
        if op.name == "TREE_ENSEMBLE":
            _check_tree_tables(op, tensors, data, const_off)
        elif op.name in classic.OP_NAMES:
            classic.check_tables(op, [tensors[i] for i in op.inputs], tensors[op.outputs[0]],
                                 lambda t: _const_i32(data, const_off, t),
                                 lambda msg, *a: _fail("op %d (%s): " % (op.index, op.name) + msg, *a))
        elif op.name == "SOFTMAX":
            _check_exp_table(op, tensors, _const_i32(data, const_off, tensors[op.inputs[1]]).reshape(-1))
        elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            mult = _const_i32(data, const_off, tensors[op.inputs[3]]).reshape(-1)
            shift = _const_i32(data, const_off, tensors[op.inputs[4]]).reshape(-1)
            _check_multipliers(op, mult, shift)
    for op in ops:
        if op.name == "PATCH":
            patch.check_stage(ops, op.index, tensors, _const_i32(data, const_off, tensors[op.inputs[1]]),
                              lambda msg, *a, op=op: _fail("op %d (PATCH): " % op.index + msg, *a))
    return ops


def _check_exp_table(op, tensors, table):
    """exp_table holds Q0.31 values in [0, 2^31). The row sum (Q12.19) must stay below 2^28 so that SOFTMAX's final
    RDBPOT exponent (12 - headroom) + 23 stays <= 31 -- TFLite's own kernel has undefined behaviour beyond that
    (e.g. 512 or more equal values in a row); a device must not be asked to compute it."""
    if int(table.min()) < 0:
        _fail("op %d (SOFTMAX): exp_table has a negative entry", op.index)
    depth = tensors[op.inputs[0]].dims4[3]
    per = (int(table.max()) + (1 << 11)) >> 12  # the largest RDBPOT(entry, 12)
    if depth * per >= 1 << 28:
        _fail("op %d (SOFTMAX): %d classes can overflow the Q12.19 sum of exponentials (limit %d)", op.index, depth,
              ((1 << 28) - 1) // max(per, 1))


def _check_multipliers(op, mult, shift):
    """MBQM's preconditions (§5): m in [2^30, 2^31) or 0, s in [-31, 30]. Outside them a C runtime would shift by
    32 or more -- undefined behaviour -- so the reader refuses instead of trusting the compiler."""
    import numpy as np

    m = np.asarray(mult, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    bad_m = (m != 0) & (m < (1 << 30))
    bad_s = (s < -31) | (s > 30)
    if np.any(bad_m):
        i = int(np.argmax(bad_m))
        _fail("op %d (%s): multiplier %d at channel %d is not 0 or in [2^30, 2^31)", op.index, op.name, m[i], i)
    if np.any(bad_s):
        i = int(np.argmax(bad_s))
        _fail("op %d (%s): shift %d at channel %d is outside -31..30", op.index, op.name, s[i], i)


def _const_i32(data, const_off, t):
    import numpy as np

    return np.frombuffer(data, dtype="<i4", count=t.elements, offset=const_off + t.offset).reshape(t.shape)


def _check_tree_tables(op, tensors, data, const_off):
    """The table rules of spec §10, in one pass over the node and tree tables (vectorized)."""
    import numpy as np

    x, nodes_t, leaves_t, trees_t, init_t = (tensors[i] for i in op.inputs)
    n_features = x.shape[1]
    n_leaves, width = leaves_t.shape
    n_classes = init_t.elements
    nodes = _const_i32(data, const_off, nodes_t).astype(np.int64)
    trees = _const_i32(data, const_off, trees_t).astype(np.int64)

    def bad(msg, *args):
        _fail("op %d (TREE_ENSEMBLE): " % op.index + msg, *args)

    idx = np.arange(len(nodes))
    feat, key, children = nodes[:, 0], nodes[:, 1], nodes[:, 2:]
    if np.any((feat < 0) | (feat >= n_features)):
        i = int(np.argmax((feat < 0) | (feat >= n_features)))
        bad("node %d reads feature %d of %d", i, feat[i], n_features)
    if np.any(np.abs(key) > 0x7F800000):
        bad("node %d threshold key is beyond +-inf", int(np.argmax(np.abs(key) > 0x7F800000)))
    node_child = children >= 0
    wrong = (node_child & ((children <= idx[:, None]) | (children >= len(nodes)))) | (
        ~node_child & ((-1 - children) >= n_leaves))
    if np.any(wrong):
        i = int(np.argmax(wrong.any(axis=1)))
        bad("node %d has an invalid child %s (children must come after their parent; leaves < %d)", i,
            list(children[i]), n_leaves)
    root, first = trees[:, 0], trees[:, 1]
    wrong = ((root >= 0) & (root >= len(nodes))) | ((root < 0) & ((-1 - root) >= n_leaves))
    if np.any(wrong):
        bad("tree %d has an invalid root %d", int(np.argmax(wrong)), root[int(np.argmax(wrong))])
    wrong = (first < 0) | (first > n_classes - width)
    if np.any(wrong):
        bad("tree %d adds to classes %d.. beyond the %d classes", int(np.argmax(wrong)),
            first[int(np.argmax(wrong))], n_classes)


def _broadcastable(a, y):
    return all(da == dy or da == 1 for da, dy in zip(a, y))


CONST_OPERAND_OPS = ("ADD", "MUL", "CONCATENATION")


def _check_op(op, tensors):
    """Dtype, shape and aliasing rules of §5 for one op."""
    name = op.name
    T = [tensors[i] for i in op.inputs]
    y = tensors[op.outputs[0]]

    def bad(msg, *args):
        _fail("op %d (%s): " % (op.index, name) + msg, *args)

    def need(t, dtype, what, const=None):
        if t.dtype != dtype:
            bad("%s must be %s, is %s", what, F.DTYPE_NAMES[dtype], F.DTYPE_NAMES[t.dtype])
        if const is not None and t.is_const != const:
            bad("%s must be %s", what, "const" if const else "an arena tensor")

    if y.is_const:
        bad("output tensor %d is const", y.index)
    if name not in CONST_OPERAND_OPS and T and T[0].is_const:
        # Only ADD, MUL and CONCATENATION may take constant data operands (§5); elsewhere "x" is an activation.
        bad("data input tensor %d is not in the arena", T[0].index)
    P = dict(zip(op.spec.params, op.params))
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x, w, b, mult, shift = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        need(w, F.DTYPE_INT8, "filter", const=True)
        need(b, F.DTYPE_INT32, "bias", const=True)
        need(mult, F.DTYPE_INT32, "mult", const=True)
        need(shift, F.DTYPE_INT32, "shift", const=True)
        if len(w.shape) != 4:
            bad("filter must be rank 4, is %s", list(w.shape))
        xn, xh, xw, xc = x.dims4
        yn, yh, yw, yc = y.dims4
        if name == "CONV_2D":
            co = w.shape[0]
            if w.shape[3] != xc:
                bad("filter Ci=%d differs from input C=%d", w.shape[3], xc)
        else:
            co = w.shape[3]
            if w.shape[0] != 1:
                bad("depthwise filter must be [1,Kh,Kw,Co], is %s", list(w.shape))
            if P["depth_multiplier"] < 1 or xc * P["depth_multiplier"] != co:
                bad("input C=%d x depth_multiplier=%d != Co=%d", xc, P["depth_multiplier"], co)
        if yc != co or yn != xn:
            bad("output %s does not match N=%d, Co=%d", list(y.dims4), xn, co)
        for t, what in ((b, "bias"), (mult, "mult"), (shift, "shift")):
            if t.elements != co:
                bad("%s has %d elements, needs Co=%d", what, t.elements, co)
        for k in ("stride_h", "stride_w", "dil_h", "dil_w"):
            if not 1 <= P[k] <= MAX_WINDOW_PARAM:
                bad("%s=%d outside 1..%d", k, P[k], MAX_WINDOW_PARAM)
        if P["pad_top"] < 0 or P["pad_left"] < 0:
            bad("negative padding")
        _check_offsets(bad, P, ("in_off",), ("out_off",))
        # TFLite padding never exceeds the dilated filter extent minus one; more would create output positions
        # that read no input at all (and lets a corrupt blob ask for absurd output sizes).
        kh, kw = w.shape[1], w.shape[2]
        if P["pad_top"] > (kh - 1) * P["dil_h"] or P["pad_left"] > (kw - 1) * P["dil_w"]:
            bad("padding (%d, %d) exceeds the filter extent", P["pad_top"], P["pad_left"])
        # The last output row/column's window must start inside the input.
        if (yh - 1) * P["stride_h"] - P["pad_top"] >= xh or (yw - 1) * P["stride_w"] - P["pad_left"] >= xw:
            bad("output %dx%d does not fit input %dx%d with these strides and padding", yh, yw, xh, xw)
        _check_act(bad, P)
    elif name == "FULLY_CONNECTED":
        x, w, b, mult, shift = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        need(w, F.DTYPE_INT8, "weights", const=True)
        need(b, F.DTYPE_INT32, "bias", const=True)
        need(mult, F.DTYPE_INT32, "mult", const=True)
        need(shift, F.DTYPE_INT32, "shift", const=True)
        if len(w.shape) != 2:
            bad("weights must be [Co,Ci], are %s", list(w.shape))
        co, ci = w.shape
        if x.elements % ci:
            bad("input has %d elements, not a multiple of Ci=%d", x.elements, ci)
        if y.elements != (x.elements // ci) * co:
            bad("output has %d elements, needs rows x Co = %d", y.elements, (x.elements // ci) * co)
        if b.elements != co:
            bad("bias has %d elements, needs %d", b.elements, co)
        if mult.elements not in (1, co) or shift.elements != mult.elements:
            bad("mult/shift have %d/%d elements, need 1 or %d", mult.elements, shift.elements, co)
        _check_offsets(bad, P, ("in_off", "w_off"), ("out_off",))
        _check_act(bad, P)
    elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        (x,) = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        if x.dims4[0] != y.dims4[0] or x.dims4[3] != y.dims4[3]:
            bad("output %s must keep N and C of input %s", list(y.dims4), list(x.dims4))
        for k in ("stride_h", "stride_w", "filter_h", "filter_w"):
            if not 1 <= P[k] <= MAX_WINDOW_PARAM:
                bad("%s=%d outside 1..%d", k, P[k], MAX_WINDOW_PARAM)
        if P["pad_top"] < 0 or P["pad_left"] < 0:
            bad("negative padding")
        if P["pad_top"] >= P["filter_h"] or P["pad_left"] >= P["filter_w"]:
            bad("padding (%d, %d) is not smaller than the filter", P["pad_top"], P["pad_left"])
        yh, yw = y.dims4[1], y.dims4[2]
        if (yh - 1) * P["stride_h"] - P["pad_top"] >= x.dims4[1] or \
                (yw - 1) * P["stride_w"] - P["pad_left"] >= x.dims4[2]:
            bad("output %dx%d does not fit input %dx%d with these strides and padding", yh, yw, x.dims4[1],
                x.dims4[2])
        _check_act(bad, P)
    elif name in ("ADD", "MUL"):
        a, b = T
        for t, what in ((a, "a"), (b, "b"), (y, "output")):
            need(t, F.DTYPE_INT8, what)
        if not (_broadcastable(a.dims4, y.dims4) and _broadcastable(b.dims4, y.dims4)):
            bad("inputs %s and %s do not broadcast to %s", list(a.dims4), list(b.dims4), list(y.dims4))
        for k in ("a_shift", "b_shift", "out_shift"):
            lo_s, hi_s = (-31, 0) if name == "ADD" else (-31, 30)
            if k in P and not lo_s <= P[k] <= hi_s:
                bad("%s=%d outside %d..%d", k, P[k], lo_s, hi_s)
        _check_offsets(bad, P, ("a_off", "b_off"), ("out_off",))
        for k in ("a_mult", "b_mult", "out_mult"):
            if k in P and P[k] != 0 and P[k] < (1 << 30):
                bad("%s=%d is not 0 or in [2^30, 2^31)", k, P[k])
        if "left_shift" in P and not 0 <= P["left_shift"] <= MAX_ADD_LEFT_SHIFT:
            bad("left_shift=%d outside 0..%d", P["left_shift"], MAX_ADD_LEFT_SHIFT)
        _check_act(bad, P)
    elif name in ("SOFTMAX", "LUT"):
        x, table = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        if name == "SOFTMAX":
            need(table, F.DTYPE_INT32, "exp_table", const=True)
            if x.shape != y.shape:
                bad("output shape %s differs from input %s", list(y.shape), list(x.shape))
        else:
            need(table, F.DTYPE_INT8, "table", const=True)
            if x.elements != y.elements:
                bad("output has %d elements, input %d", y.elements, x.elements)
        if table.elements != 256:
            bad("table has %d entries, needs 256", table.elements)
    elif name == "PAD":
        (x,) = T
        if x.dtype != y.dtype:
            bad("input and output dtypes differ")
        for k in range(4):
            lo, hi = P["before_%d" % k], P["after_%d" % k]
            if lo < 0 or hi < 0 or x.dims4[k] + lo + hi != y.dims4[k]:
                bad("axis %d: %d + %d + %d != output %d", k, lo, x.dims4[k], hi, y.dims4[k])
        if x.dtype == F.DTYPE_INT8 and not -128 <= P["pad_value"] <= 127:
            bad("pad_value %d outside int8", P["pad_value"])
    elif name == "MEAN":
        (x,) = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_INT8, "output")
        mask = P["axis_mask"]
        if not 1 <= mask <= 15:
            bad("axis_mask %d outside 1..15", mask)
        kept = 1
        for k in range(4):
            if not mask >> k & 1:
                kept *= x.dims4[k]
        if y.elements != kept:
            bad("output has %d elements, reducing axes 0x%x of %s leaves %d", y.elements, mask, list(x.dims4),
                kept)
        if not -31 <= P["shift"] <= 30:
            bad("shift %d outside -31..30", P["shift"])
        if P["mult"] < 0:
            # MEAN's multiplier is not normalised (spec §5 MEAN): any value in [0, 2^31).
            bad("mult %d is negative", P["mult"])
        _check_offsets(bad, P, (), ("in_zp", "out_zp"))
    elif name == "CONCATENATION":
        axis = P["axis"]
        if not 0 <= axis <= 3:
            bad("axis %d outside 0..3", axis)
        total = 0
        for t in T:
            if t.dtype != y.dtype:
                bad("input %d dtype differs from output", t.index)
            for k in range(4):
                if k != axis and t.dims4[k] != y.dims4[k]:
                    bad("input %d shape %s does not match output %s off axis %d", t.index, list(t.dims4),
                        list(y.dims4), axis)
            total += t.dims4[axis]
        if total != y.dims4[axis]:
            bad("inputs sum to %d along axis %d, output has %d", total, axis, y.dims4[axis])
    elif name == "QUANTIZE":
        (x,) = T
        need(x, F.DTYPE_FLOAT32, "input")
        need(y, F.DTYPE_INT8, "output")
        if x.elements != y.elements:
            bad("element counts differ")
        if not (y.scale > 0 and math.isfinite(y.scale)) or not -128 <= y.zero_point <= 127:
            bad("output scale %r / zero point %d invalid", y.scale, y.zero_point)
    elif name == "DEQUANTIZE":
        (x,) = T
        need(x, F.DTYPE_INT8, "input")
        need(y, F.DTYPE_FLOAT32, "output")
        if x.elements != y.elements:
            bad("element counts differ")
        if not math.isfinite(x.scale) or not -128 <= x.zero_point <= 127:
            bad("input scale %r / zero point %d invalid", x.scale, x.zero_point)
    elif name == "COPY":
        (x,) = T
        if x.nbytes != y.nbytes:
            bad("input is %d bytes, output %d", x.nbytes, y.nbytes)
    elif name in classic.OP_NAMES:
        classic.check_op(op, T, y, P, bad, need, F.DTYPE_FLOAT32, F.DTYPE_INT32)
    elif name == "PATCH":
        patch.check_op(T, y, P, bad, need, F.DTYPE_INT8, F.DTYPE_INT32)
    elif name == "TREE_ENSEMBLE":
        x, nodes, leaves, trees, init = T
        need(x, F.DTYPE_FLOAT32, "input", const=False)
        need(y, F.DTYPE_INT32, "output")
        for t, what in ((nodes, "nodes"), (leaves, "leaves"), (trees, "trees"), (init, "init")):
            need(t, F.DTYPE_INT32, what, const=True)
        if len(x.shape) != 2 or x.shape[0] != 1:
            bad("input must be [1,F], is %s", list(x.shape))
        if len(nodes.shape) != 2 or nodes.shape[1] != 4:
            bad("nodes must be [N,4], are %s", list(nodes.shape))
        if len(leaves.shape) != 2:
            bad("leaves must be [L,W], are %s", list(leaves.shape))
        if len(trees.shape) != 2 or trees.shape[1] != 2:
            bad("trees must be [T,2], are %s", list(trees.shape))
        if len(init.shape) != 1 or init.elements != y.elements:
            bad("init must be [C] with C = output elements %d, is %s", y.elements, list(init.shape))
        if leaves.shape[0] >= 1 << 24:
            bad("%d leaves, must be < 2^24", leaves.shape[0])
        if leaves.shape[1] > y.elements:
            bad("leaf width %d exceeds the %d classes", leaves.shape[1], y.elements)
        if x.offset % 4 or y.offset % 4:
            bad("input and output arena offsets must be multiples of 4")

    if name not in F.INPLACE_OPS:
        for t in T[1:] if name == "PATCH" else T:  # PATCH's output may lie over its input (§12)
            if not t.is_const and t.offset < y.offset + y.nbytes and y.offset < t.offset + t.nbytes:
                bad("input tensor %d overlaps output tensor %d in the arena", t.index, y.index)


def _check_offsets(bad, P, input_offsets, output_offsets):
    """Input offsets are -zero_point (so -127..128, and -128 is tolerated), output offsets are zero points."""
    for k in input_offsets:
        if not -128 <= P[k] <= 128:
            bad("%s=%d outside the int8 zero-point range", k, P[k])
    for k in output_offsets:
        if not -128 <= P[k] <= 127:
            bad("%s=%d outside the int8 zero-point range", k, P[k])


def _check_act(bad, P):
    lo, hi = P["act_min"], P["act_max"]
    if not -128 <= lo <= hi <= 127:
        bad("activation range [%d, %d] is not inside int8", lo, hi)


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
