"""TFLite pass-through back-end: for devices whose runtime is TensorFlow Lite Micro (runtime "tflm").

The artifact is the .tflite flatbuffer unchanged. What the service needs to place it on a device is measured, not
guessed:

* ops: the builtin op names of the flatbuffer (the op resolver the firmware must register);
* ram_bytes: the smallest tensor arena with which tflite-micro's own interpreter allocates *and* invokes the model,
  found by bisection between the RecordingMicroAllocator's total (a lower bound) and a size that works;
* macs: multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED from the tensor shapes.

The arena is measured with the Python build of tflite-micro on the 64-bit host. TFLM's per-tensor and per-node
structs hold pointers, so the same model needs somewhat less arena on a 32-bit MCU: the figure is an upper bound
there (see docs/backends.md for measured numbers).
"""

import os
import re
import tempfile

import numpy as np

from .interface import Artifact, Backend, BackendError, step

_RECORDING_TOTAL = re.compile(rb"Arena allocation total (\d+) bytes")


class _StderrCapture:
    """Collect what native code writes to file descriptor 2 (TFLM logs there, bypassing sys.stderr)."""

    def __enter__(self):
        self.file = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read()
        self.file.close()
        return False


def _builtin_ops(data):
    """(op names in first-use order, flatbuffer graph) of a .tflite file; BackendError if it is not one."""
    from ..compiler.errors import CompileError
    from ..compiler.frontend import parse_tflite
    try:
        graph = parse_tflite(data)
    except CompileError as e:
        raise BackendError(str(e)) from None
    names = []
    for op in graph.ops:
        if op.kind not in names:
            names.append(op.kind)
    return names, graph


def _macs(graph):
    total = 0
    for op in graph.ops:
        if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out = graph.tensors[op.outputs[0]]
        w = graph.tensors[op.inputs[1]]
        n_out = int(np.prod(out.shape)) if out.shape else 1
        if op.kind == "CONV_2D":                          # w [Co, Kh, Kw, Ci]
            total += n_out * int(np.prod(w.shape[1:]))
        elif op.kind == "DEPTHWISE_CONV_2D":              # w [1, Kh, Kw, Co]
            total += n_out * int(w.shape[1] * w.shape[2])
        else:                                            # w [Co, Ci]
            total += n_out * int(w.shape[-1])
    return total


def _runs_with(data, arena):
    """True when tflite-micro allocates and invokes the model (zero inputs) with an arena of `arena` bytes."""
    from tflite_micro.python.tflite_micro import runtime
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=arena)
        k = 0
        while True:
            try:
                d = interp.get_input_details(k)
            except Exception:  # the binding signals "no such input" with an exception
                break
            interp.set_input(np.zeros(d["shape"], dtype=d["dtype"]), k)
            k += 1
        interp.invoke()
        return True
    except RuntimeError:
        return False


def measure_arena(data, limit=64 << 20):
    """(smallest working arena bytes, RecordingMicroAllocator total) measured with tflite-micro's interpreter."""
    from tflite_micro.python.tflite_micro import runtime
    with _StderrCapture() as cap:
        hi = max(4096, len(data) * 4)
        while not _runs_with(data, hi):
            if hi >= limit:
                raise BackendError("tflite-micro cannot run this model with a %d-byte arena" % limit)
            hi *= 2
        interp = runtime.Interpreter.from_bytes(data, arena_size=hi)
        interp.print_allocations()
    found = _RECORDING_TOTAL.search(cap.text)
    recorded = int(found.group(1)) if found else 0
    lo = recorded  # fails or works; the answer is in (lo - 1, hi]
    with _StderrCapture():
        if lo and _runs_with(data, lo):
            return lo, recorded
        while hi - lo > 16:
            mid = (lo + hi) // 2 // 16 * 16
            if mid <= lo:
                break
            if _runs_with(data, mid):
                hi = mid
            else:
                lo = mid
    return hi, recorded


class TFLitePassthroughBackend(Backend):
    name = "tflite"
    accepts = frozenset({"tflite"})
    runtimes = frozenset({"tflm"})
    optimizations = frozenset()

    def compile(self, source, target, options):
        self.check(source, target, options)
        data = bytes(source.data)
        ops, graph = _builtin_ops(data)
        if target.ops:
            missing = [op for op in ops if op not in target.ops]
            if missing:
                raise BackendError("the target's TFLite Micro build does not register %s" % ", ".join(missing))
        step("measure its arena with TFLite Micro")
        arena, recorded = measure_arena(data)
        io = [graph.tensors[i].dtype for i in list(graph.inputs) + list(graph.outputs)]
        return Artifact(
            kind="tflite",
            data=data,
            flash_bytes=len(data),
            ram_bytes=arena,
            macs=_macs(graph),
            ops=ops,
            features={"float_io": "float32" in io, "tflm_ops": ops},
            report={"arena_bytes": arena, "arena_recorded_bytes": recorded,
                    "arena_measured_on": "tflite-micro Python interpreter, 64-bit host",
                    "io_dtypes": io},
        )
