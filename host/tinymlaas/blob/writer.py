"""Serialize a compiled program into a blob exactly as docs/blob-format.md states it.

The writer takes already-planned records (tensor table with arena/const offsets, op records with integer params,
the CONST bytes) and only lays them out: header, section table, TENSORS, GRAPH, OPS, META, CONST (16-aligned), and
the SHA-256 over everything after the header. It checks what it writes against the format, so a compiler bug
produces an exception here rather than a blob a device would reject (or worse, accept).
"""

import hashlib
import json
import struct
from dataclasses import dataclass, field

from . import format as F


@dataclass
class TensorRecord:
    dtype: int  # F.DTYPE_*
    dims: tuple  # rank 0..4
    storage: int  # F.STORAGE_ARENA or F.STORAGE_CONST
    offset: int  # arena offset, or offset inside the CONST section
    zero_point: int = 0
    scale: float = 0.0

    @property
    def nbytes(self):
        n = F.DTYPE_SIZE[self.dtype]
        for d in self.dims:
            n *= d
        return n


@dataclass
class OpRecord:
    opcode: int
    inputs: list
    outputs: list
    params: list = field(default_factory=list)


class BlobWriteError(ValueError):
    """The records handed to the writer break the blob format (a compiler bug, not a user error)."""


def _check_tensor(i, t, arena_bytes, const_size):
    if t.dtype not in F.DTYPE_SIZE:
        raise BlobWriteError("tensor %d: unknown dtype %r" % (i, t.dtype))
    if len(t.dims) > F.MAX_RANK:
        raise BlobWriteError("tensor %d: rank %d > %d" % (i, len(t.dims), F.MAX_RANK))
    if any(int(d) < 1 for d in t.dims):
        raise BlobWriteError("tensor %d: dims %r has a dim < 1" % (i, tuple(t.dims)))
    if t.nbytes >= F.MAX_TENSOR_BYTES:
        raise BlobWriteError("tensor %d: %d bytes is too large" % (i, t.nbytes))
    if t.storage == F.STORAGE_ARENA:
        if t.offset + t.nbytes > arena_bytes:
            raise BlobWriteError("tensor %d ends at %d, past the arena (%d B)" % (i, t.offset + t.nbytes, arena_bytes))
    elif t.storage == F.STORAGE_CONST:
        if t.offset % F.CONST_ALIGN:
            raise BlobWriteError("const tensor %d at offset %d is not %d-aligned" % (i, t.offset, F.CONST_ALIGN))
        if t.offset + t.nbytes > const_size:
            raise BlobWriteError("const tensor %d ends past the CONST section" % i)
    else:
        raise BlobWriteError("tensor %d: unknown storage %r" % (i, t.storage))


def _pack_op(k, op, n_tensors):
    spec = F.OPS_BY_CODE.get(op.opcode)
    if spec is None:
        raise BlobWriteError("op %d: unknown opcode %d" % (k, op.opcode))
    if spec.inputs is not None and len(op.inputs) != len(spec.inputs):
        raise BlobWriteError("op %d (%s): %d inputs, the format requires %d" % (k, spec.name, len(op.inputs),
                                                                                 len(spec.inputs)))
    if spec.inputs is None and not 1 <= len(op.inputs) <= 255:
        raise BlobWriteError("op %d (%s): %d inputs" % (k, spec.name, len(op.inputs)))
    if len(op.outputs) != F.N_OUTPUTS:
        raise BlobWriteError("op %d (%s): %d outputs" % (k, spec.name, len(op.outputs)))
    if len(op.params) != spec.n_params:
        raise BlobWriteError("op %d (%s): %d params, the format requires %d" % (k, spec.name, len(op.params),
                                                                                 spec.n_params))
    for t in list(op.inputs) + list(op.outputs):
        if not 0 <= t < n_tensors:
            raise BlobWriteError("op %d (%s): tensor index %d out of range" % (k, spec.name, t))
    for p in op.params:
        if not -(1 << 31) <= int(p) < (1 << 31):
            raise BlobWriteError("op %d (%s): param %d does not fit int32" % (k, spec.name, p))
    idx = list(op.inputs) + list(op.outputs)
    head = F.OP_HEADER.pack(op.opcode, len(op.inputs), len(op.outputs), len(op.params))
    head += struct.pack("<%dH" % len(idx), *idx)
    head += b"\0" * ((-len(head)) % F.OP_PARAMS_ALIGN)
    rec = head + struct.pack("<%di" % len(op.params), *[int(p) for p in op.params])
    assert len(rec) == F.op_record_size(len(op.inputs), len(op.outputs), len(op.params))
    return rec


def write_blob(tensors, inputs, outputs, ops, const, arena_bytes, meta=None, float_io=None):
    """Return the blob bytes. `tensors`: list of TensorRecord; `inputs`/`outputs`: tensor indices; `ops`: list of
    OpRecord in execution order; `const`: bytes of the CONST section; `meta`: dict written as the META JSON."""
    const = bytes(const)
    if len(tensors) > 0xFFFF:
        raise BlobWriteError("%d tensors: indices are u16" % len(tensors))
    for i, t in enumerate(tensors):
        _check_tensor(i, t, arena_bytes, len(const))
    for t in list(inputs) + list(outputs):
        if not 0 <= t < len(tensors) or tensors[t].storage != F.STORAGE_ARENA:
            raise BlobWriteError("graph input/output %d is not an arena tensor" % t)
    if float_io is None:
        float_io = any(tensors[t].dtype == F.DTYPE_FLOAT32 for t in list(inputs) + list(outputs))

    tensor_bytes = b"".join(
        F.TENSOR.pack(t.dtype, len(t.dims), t.storage, 0, *(list(t.dims) + [1] * (4 - len(t.dims))), t.offset,
                      t.nbytes, int(t.zero_point), float(t.scale))
        for t in tensors)
    graph_bytes = F.GRAPH_COUNTS.pack(len(inputs), len(outputs)) + struct.pack(
        "<%dH" % (len(inputs) + len(outputs)), *(list(inputs) + list(outputs)))
    op_bytes = b"".join(_pack_op(k, op, len(tensors)) for k, op in enumerate(ops))
    meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode() if meta is not None else None

    body = [(F.SECTION_TENSORS, tensor_bytes, len(tensors)), (F.SECTION_GRAPH, graph_bytes, 0),
            (F.SECTION_OPS, op_bytes, len(ops))]
    if meta_bytes is not None:
        body.append((F.SECTION_META, meta_bytes, 0))
    n_sections = len(body) + 1
    pos = F.HEADER_BYTES + F.SECTION.size * n_sections
    table, chunks = [], []
    for kind, data, count in body:
        # Keep every section 4-aligned so a C reader may cast record pointers.
        pad = (-pos) % 4
        chunks.append(b"\0" * pad)
        pos += pad
        table.append(F.SECTION.pack(kind, pos, len(data), count))
        chunks.append(data)
        pos += len(data)
    pad = (-pos) % F.CONST_ALIGN
    chunks.append(b"\0" * pad)
    pos += pad
    table.append(F.SECTION.pack(F.SECTION_CONST, pos, len(const), 0))
    chunks.append(const)
    pos += len(const)

    rest = b"".join(table) + b"".join(chunks)
    total = F.HEADER_BYTES + len(rest)
    assert total == pos
    max_params = max((len(op.params) for op in ops), default=0)
    digest = hashlib.sha256(rest).digest()
    header = F.HEADER.pack(F.MAGIC, F.FORMAT_VERSION, F.HEADER_BYTES, F.FLAG_FLOAT_IO if float_io else 0, F.ABI,
                           n_sections, total, arena_bytes, digest, max_params, 0)
    return header + rest
