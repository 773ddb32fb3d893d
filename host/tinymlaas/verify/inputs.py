"""Seeded test inputs for a model, described by the .tflite itself (shapes, dtypes, calibrated float ranges)."""

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@dataclass
class InputSpec:
    shape: tuple
    dtype: type  # np.int8 or np.float32
    low: float  # range random values are drawn from (inclusive)
    high: float


def _litert(model_bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=bytes(model_bytes))


def input_specs(model_bytes):
    """One InputSpec per model input, in the model's input order.

    int8 inputs take every int8 value. A float input is drawn from the range its QUANTIZE op can represent --
    the range the converter calibrated -- so float inputs exercise the model, not just saturation.
    """
    it = _litert(model_bytes)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    specs = []
    for d in it.get_input_details():
        shape = tuple(int(s) for s in d["shape"])
        if d["dtype"] == np.int8:
            specs.append(InputSpec(shape, np.int8, -128, 127))
            continue
        if d["dtype"] != np.float32:
            raise ValueError("input %r has dtype %s; tinymlaas handles int8 and float32 inputs"
                             % (d["name"], np.dtype(d["dtype"]).name))
        low, high = -1.0, 1.0
        for op in ops:
            if op["op_name"] == "QUANTIZE" and d["index"] in list(op["inputs"]):
                q = tensors[int(op["outputs"][0])]["quantization"]
                scale, zp = float(q[0]), int(q[1])
                if scale > 0:
                    low, high = scale * (-128 - zp), scale * (127 - zp)
                break
        specs.append(InputSpec(shape, np.float32, low, high))
    return specs


def random_inputs(specs, count, seed=0):
    """`count` input sets (each a list with one array per model input), reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        one = []
        for s in specs:
            if s.dtype == np.int8:
                one.append(rng.integers(s.low, s.high, s.shape, endpoint=True).astype(np.int8))
            else:
                one.append(rng.uniform(s.low, s.high, s.shape).astype(np.float32))
        sets.append(one)
    return sets
