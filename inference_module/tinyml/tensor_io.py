"""Values into and out of a model's arena: bytes, arrays, lists and ulab ndarrays (docs/runtime-micropython.md,
"Inputs and outputs").

An int8 input takes its raw bytes (bytes, bytearray, memoryview, array('b') or array('B'), an int8 or uint8
ndarray: two's complement, as in the arena), int values in [-128, 127], or float values, which are quantized
with the input's scale and zero point by the blob's QUANTIZE rule -- the rule `tinymlaas infer` applies on the
host, so a device and the service turn the same floats into the same bytes. A float32 input takes numbers.
Outputs are array('b') / array('f') / array('i'); when an input was an ndarray, ndarrays of the output's own
shape (int8 stays int8; float32 and int32 become ulab's float, its only dtype wider than 16 bits).
"""

import array
import struct

from .blob import elements, T_DTYPE, T_OFF, T_ZP, T_SCALE, T_SHAPE, INT32, FLOAT32


def f32(v):
    """v rounded to binary32 (a no-op on single-precision ports)."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def quantize(v, scale, zero_point):
    """QUANTIZE (blob-format.md): the binary32 quotient v / scale rounded half away from zero, plus the zero
    point, saturated to int8. A double-precision VM rounds the quotient of two binary32 values once to binary32,
    which is the binary32 division's result."""
    q = f32(f32(v) / scale)
    if not -1e9 < q < 1e9:  # inf/NaN/huge values saturate (C's float->int cast is undefined there)
        q = 1e9 if q > 0 else -1e9
    r = (int(q + 0.5) if q >= 0 else -int(-q + 0.5)) + zero_point
    return -128 if r < -128 else 127 if r > 127 else r


def write_input(model, i, t, data):
    """Put `data` into graph input i (tensor record t) by the rules above; ValueError says what does not fit."""
    n, off, a = elements(t), t[T_OFF], model.arena
    if t[T_DTYPE] == FLOAT32:
        vals = _flat(data)
        if len(vals) != n:
            raise ValueError("input %d takes %d floats, got %d" % (i, n, len(vals)))
        for k in range(n):
            struct.pack_into("<f", a, off + 4 * k, vals[k])
        return
    raw = _raw_bytes(data)
    if raw is not None:
        if len(raw) != n:
            raise ValueError("input %d takes %d bytes, got %d" % (i, n, len(raw)))
        model._amv[off:off + n] = raw
        return
    vals = _flat(data)
    if len(vals) != n:
        raise ValueError("input %d takes %d values, got %d" % (i, n, len(vals)))
    scale, zp = t[T_SCALE], t[T_ZP]
    for k in range(n):
        v = vals[k]
        if isinstance(v, float):
            v = quantize(v, scale, zp)
        elif not -128 <= v <= 127:
            raise ValueError("input %d is int8: value %d at index %d is outside [-128, 127] (give floats to have "
                             "them quantized with scale %g, zero point %d)" % (i, v, k, scale, zp))
        a[off + k] = v & 0xFF


def read_output(arena, t):
    """Graph output tensor t as a flat array: 'b', 'f', or 'i' (TREE_ENSEMBLE's fixed-point class scores)."""
    off, n = t[T_OFF], elements(t)
    if t[T_DTYPE] == FLOAT32:
        return array.array("f", struct.unpack_from("<%df" % n, arena, off))
    if t[T_DTYPE] == INT32:
        return array.array("i", struct.unpack_from("<%di" % n, arena, off))
    return array.array("b", arena[off:off + n])


def as_ndarray(np, out, j, t):
    """Output j (a flat array from read_output) as a ulab ndarray of the output's shape."""
    y = np.array(out, dtype=np.float if t[T_DTYPE] in (FLOAT32, INT32) else np.int8)
    try:
        return y.reshape(t[T_SHAPE])
    except ValueError as e:  # ulab is built for fewer dimensions (ULAB_MAX_DIMS, 2 by default)
        raise ValueError("output %d has shape %r, which this ulab cannot hold (%s): build ulab with "
                         "ULAB_MAX_DIMS=4 (docs/boards.md)" % (j, t[T_SHAPE], e))


def ndarray_module(x):
    """ulab's numpy if x is a ulab ndarray, else None."""
    if type(x).__name__ == "ndarray":
        try:
            from ulab import numpy as np
            return np
        except ImportError:
            return None
    return None


def _raw_bytes(data):
    """data as the tensor's raw bytes if it is a byte buffer (incl. an int8/uint8 ndarray), else None."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    if isinstance(data, array.array):
        # MicroPython arrays have no .typecode: one element's buffer size tells 'b'/'B' from wider types.
        return data if len(data) == 0 or len(bytes(data[:1])) == 1 else None
    np = ndarray_module(data)
    if np is not None and data.dtype in (np.int8, np.uint8):
        try:
            return data.tobytes()  # no copy for a dense array
        except ValueError:  # a strided view: tobytes takes dense arrays only
            return data.flatten().tobytes()
    return None


def _flat(data):
    """A list/tuple as it is (no copy: a VWW input is 27,648 values); ndarrays flattened (C order); else a list."""
    if isinstance(data, (list, tuple)):
        return data
    if ndarray_module(data) is not None:
        return list(data.flatten())
    return list(data)
