"""Builds small model blobs by hand (docs/blob-format.md v1) for runtime tests, independent of the compiler.

    b = BlobBuilder()
    x = b.arena(INT8, (1, 4, 4, 2))
    w = b.const(INT8, (3, 1, 1, 2), weights)
    ...
    b.op(CONV_2D, [x, w, bias, mult, shift], y, params)
    b.graph([x], [y])
    blob = b.build()
"""

import hashlib
import json
import struct

INT8, UINT8, INT16, INT32, FLOAT32 = 1, 2, 3, 4, 5
SIZE = {INT8: 1, UINT8: 1, INT16: 2, INT32: 4, FLOAT32: 4}
PACK = {INT8: "b", UINT8: "B", INT16: "h", INT32: "i", FLOAT32: "f"}
(CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D, MAX_POOL_2D, ADD, MUL, SOFTMAX, LUT, PAD, MEAN,
 CONCATENATION, QUANTIZE, DEQUANTIZE, COPY) = range(1, 16)


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


class BlobBuilder:
    def __init__(self):
        self.tensors = []  # [dtype, shape, storage, offset, zp, scale]
        self.const = bytearray()
        self.arena_top = 0
        self.ops = []
        self.inputs = []
        self.outputs = []
        self.meta = None

    def arena(self, dtype, shape, zp=0, scale=0.0, offset=None):
        n = _prod(shape) * SIZE[dtype]
        if offset is None:
            offset = self.arena_top
        self.arena_top = max(self.arena_top, offset + n)
        self.arena_top += (-self.arena_top) % 4
        self.tensors.append([dtype, tuple(shape), 0, offset, zp, scale])
        return len(self.tensors) - 1

    def const_tensor(self, dtype, shape, values, zp=0, scale=0.0):
        self.const += bytes((-len(self.const)) % 16)
        off = len(self.const)
        assert len(values) == _prod(shape)
        self.const += struct.pack("<%d%s" % (len(values), PACK[dtype]), *values)
        self.tensors.append([dtype, tuple(shape), 1, off, zp, scale])
        return len(self.tensors) - 1

    def op(self, code, ins, out, params=()):
        self.ops.append((code, list(ins), out, list(params)))

    def graph(self, inputs, outputs):
        self.inputs, self.outputs = list(inputs), list(outputs)

    def op_record(self, code, ins, out, params):
        rec = struct.pack("<BBBB", code, len(ins), 1, len(params))
        rec += struct.pack("<%dH" % (len(ins) + 1), *(list(ins) + [out]))
        rec += bytes((-len(rec)) % 4)
        return rec + struct.pack("<%di" % len(params), *params)

    def build(self, version=1, abi=1, arena_bytes=None, flags=None, extra_sections=()):
        tens = b""
        for dtype, shape, storage, off, zp, scale in self.tensors:
            dims = list(shape) + [1] * (4 - len(shape))
            tens += struct.pack("<BBBB4IIIif", dtype, len(shape), storage, 0, *dims, off,
                                _prod(shape) * SIZE[dtype], zp, scale)
        ops = b"".join(self.op_record(*o) for o in self.ops)
        graph = struct.pack("<HH", len(self.inputs), len(self.outputs))
        graph += struct.pack("<%dH" % (len(self.inputs) + len(self.outputs)), *(self.inputs + self.outputs))
        meta = json.dumps(self.meta).encode() if self.meta else b""
        secs = [(1, tens, len(self.tensors)), (2, ops, len(self.ops)), (4, graph, 0)]
        if meta:
            secs.append((5, meta, 0))
        secs += list(extra_sections)
        nsec = len(secs) + 1
        pos = 64 + 16 * nsec
        body = b""
        table = b""
        for kind, data, count in secs:
            table += struct.pack("<4I", kind, pos + len(body), len(data), count)
            body += data
        pad = (-(pos + len(body))) % 16
        body += bytes(pad)
        table += struct.pack("<4I", 3, pos + len(body), len(self.const), 0)
        body += bytes(self.const)
        payload = table + body
        total = 64 + len(payload)
        if flags is None:
            flags = int(any(self.tensors[t][0] == FLOAT32 for t in self.inputs + self.outputs))
        max_params = max(len(o[3]) for o in self.ops)
        header = struct.pack("<4sHHIHHII", b"TMLB", version, 64, flags, abi, nsec, total,
                             self.arena_top if arena_bytes is None else arena_bytes)
        header += hashlib.sha256(payload).digest() + struct.pack("<II", max_params, 0)
        return header + payload


def rehash(blob):
    """Recompute the header's SHA-256 after a deliberate edit (to reach checks behind the hash)."""
    b = bytearray(blob)
    b[24:56] = hashlib.sha256(bytes(b[64:])).digest()
    return bytes(b)


def quant_multiplier(real):
    """TFLite QuantizeMultiplier: real > 0 -> (m in [2^30, 2^31), shift)."""
    import math
    if real == 0:
        return 0, 0
    q, e = math.frexp(real)
    m = round(q * (1 << 31))
    if m == 1 << 31:
        m //= 2
        e += 1
    return m, e
