"""IR (lowered and planned) -> blob records -> bytes (blob/writer.py)."""

import hashlib

import numpy as np

from ..blob import format as F
from ..blob.writer import OpRecord, TensorRecord, write_blob
from .errors import CompileError


def _dims(t):
    if len(t.shape) > F.MAX_RANK:
        raise CompileError("tensor %r has rank %d; at most %d is supported" % (t.name, len(t.shape), F.MAX_RANK))
    return tuple(int(d) for d in t.shape)


def _dtype(t):
    code = F.DTYPE_BY_NAME.get(t.dtype)
    if code is None:
        raise CompileError("tensor %r has dtype %s, which blobs do not support" % (t.name, t.dtype))
    return code


def emit(graph, plan, meta):
    """Return (blob bytes, const bytes count). `plan` maps every arena tensor to an offset."""
    order = {}
    records = []
    const_chunks = []
    const_pos = 0
    dedup = {}

    def index(t_idx):
        nonlocal const_pos
        if t_idx in order:
            return order[t_idx]
        t = graph.tensors[t_idx]
        if t.is_const:
            raw = np.ascontiguousarray(t.data).tobytes()
            key = (t.dtype, raw)
            if key in dedup:
                offset = dedup[key]
            else:
                pad = (-const_pos) % F.CONST_ALIGN
                const_chunks.append(b"\0" * pad)
                const_pos += pad
                offset = const_pos
                const_chunks.append(raw)
                const_pos += len(raw)
                dedup[key] = offset
            storage = F.STORAGE_CONST
        else:
            offset = plan.offsets[t_idx]
            storage = F.STORAGE_ARENA
        per_tensor = t.quantized and not t.per_channel
        records.append(TensorRecord(_dtype(t), _dims(t), storage, offset, t.zp if per_tensor else 0,
                                    t.s if per_tensor else 0.0))
        order[t_idx] = len(records) - 1
        return order[t_idx]

    inputs = [index(t) for t in graph.inputs]
    outputs = [index(t) for t in graph.outputs]
    ops = []
    for op in graph.ops:
        if op.kind == "VIEW":
            continue
        spec = F.OPS_BY_NAME[op.kind]
        ops.append(OpRecord(spec.code, [index(i) for i in op.inputs], [index(o) for o in op.outputs],
                            list(op.params)))
    const = b"".join(const_chunks)
    blob = write_blob(records, inputs, outputs, ops, const, plan.arena_bytes, meta)
    return blob, len(const)


def source_sha256(data):
    return hashlib.sha256(data).hexdigest()
