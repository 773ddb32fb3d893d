"""The compiler's intermediate representation: a flat list of tensors and an ordered list of ops.

Tensors are referred to by their index in `Graph.tensors`; passes may append tensors and replace ops, and leave
unused tensors behind (the backend emits only tensors some op or the graph still refers to).
"""

from dataclasses import dataclass, field

import numpy as np

DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4, "int64": 8, "bool": 1}


@dataclass
class Tensor:
    name: str
    dtype: str  # numpy-style name: int8, int32, float32, ...
    shape: tuple
    scale: tuple = ()  # float32 values as Python floats; () when not quantized
    zero_point: tuple = ()
    quant_dim: int = 0
    data: np.ndarray = None  # constant contents (shape == self.shape), None for activations

    @property
    def is_const(self):
        return self.data is not None

    @property
    def quantized(self):
        return len(self.scale) > 0

    @property
    def per_channel(self):
        return len(self.scale) > 1

    @property
    def elements(self):
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def nbytes(self):
        return self.elements * DTYPE_BYTES[self.dtype]

    @property
    def zp(self):
        """The per-tensor zero point (0 when not quantized)."""
        return int(self.zero_point[0]) if self.zero_point else 0

    @property
    def s(self):
        """The per-tensor scale as the float32 value TFLite stores."""
        return float(self.scale[0]) if self.scale else 0.0

    def same_quant(self, other):
        return self.dtype == other.dtype and tuple(self.scale) == tuple(other.scale) and \
            tuple(self.zero_point) == tuple(other.zero_point)


@dataclass
class Op:
    kind: str  # TFLite builtin name (CONV_2D, ...) or a compiler op (LUT, VIEW, COPY)
    inputs: list  # tensor indices; -1 for an omitted optional input
    outputs: list
    options: dict = field(default_factory=dict)
    index: int = -1  # position in the source model, for error messages
    params: list = field(default_factory=list)  # filled by lowering: the blob op's int32 params
    macs: int = 0


@dataclass
class Graph:
    tensors: list
    ops: list
    inputs: list
    outputs: list
    name: str = ""

    def add_tensor(self, t):
        self.tensors.append(t)
        return len(self.tensors) - 1

    def add_const(self, name, data, dtype=None, scale=(), zero_point=()):
        data = np.ascontiguousarray(data, dtype=dtype or data.dtype)
        return self.add_tensor(Tensor(name, str(data.dtype), tuple(data.shape), tuple(scale), tuple(zero_point),
                                      0, data))

    def consumers(self, t):
        return [op for op in self.ops if t in op.inputs]

    def producer(self, t):
        for op in self.ops:
            if t in op.outputs:
                return op
        return None

    def live_tensors(self):
        """Indices of tensors referred to by an op or the graph's inputs/outputs."""
        used = set(self.inputs) | set(self.outputs)
        for op in self.ops:
            used.update(i for i in op.inputs if i >= 0)
            used.update(op.outputs)
        return used
