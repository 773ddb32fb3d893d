"""The C runtime (inference_module/c) on the host, through ctypes: adapter `c` for `tinymlaas verify`.

The shared library is built by the project itself (`make -C inference_module/c`, into build/c/); nothing prebuilt
is shipped. `CRuntime.run(blob_bytes, inputs)` follows the adapter interface of tinymlaas.verify.runtimes.
"""

import ctypes
import fcntl
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..paths import REPO

SOURCE = REPO / "inference_module" / "c"
BUILD = REPO / "build" / "c"
LIBRARY = BUILD / "libtml.so"

DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.int32, 5: np.float32}


class CRuntimeError(RuntimeError):
    """Building or loading the C runtime failed."""


class _Tensor(ctypes.Structure):
    _fields_ = [
        ("dtype", ctypes.c_uint8),
        ("rank", ctypes.c_uint8),
        ("storage", ctypes.c_uint8),
        ("dims", ctypes.c_uint32 * 4),
        ("offset", ctypes.c_uint32),
        ("bytes", ctypes.c_uint32),
        ("zero_point", ctypes.c_int32),
        ("scale", ctypes.c_float),
    ]


@contextmanager
def _build_lock():
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # parallel test workers must not link the same file at once
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(target=LIBRARY):
    """Build (or reuse, when up to date) one artifact of inference_module/c/Makefile; return its path."""
    with _build_lock():
        proc = subprocess.run(["make", "-s", "-C", str(SOURCE), str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CRuntimeError("building %s failed:\n%s%s" % (Path(target).name, proc.stdout, proc.stderr[-3000:]))
    return Path(target)


_lib = None


def library():
    """The ctypes handle of libtml.so (built on first use)."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(str(build()))
        lib.tml_model_size.restype = ctypes.c_size_t
        lib.tml_load.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32]
        lib.tml_invoke.argtypes = [ctypes.c_void_p]
        lib.tml_reason.argtypes = [ctypes.c_void_p]
        lib.tml_reason.restype = ctypes.c_char_p
        lib.tml_status_name.restype = ctypes.c_char_p
        lib.tml_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(_Tensor)]
        lib.tml_input_index.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.tml_output_index.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.tml_kernel_set.restype = ctypes.c_char_p
        _lib = lib
    return _lib


class LoadError(ValueError):
    """tml_load rejected the blob; `status` is the error code, str() the runtime's reason."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status


class Model:
    """One blob loaded into the C runtime, with its own arena. Keeps the blob bytes alive (weights used in place)."""

    def __init__(self, blob_bytes, arena_size=None):
        lib = self.lib = library()
        blob_bytes = bytes(blob_bytes)
        self._blob = ctypes.create_string_buffer(blob_bytes, len(blob_bytes) or 1)
        arena_need = int.from_bytes(blob_bytes[20:24], "little") if len(blob_bytes) >= 64 else 0
        self.arena_size = arena_need if arena_size is None else arena_size
        self._arena = ctypes.create_string_buffer(max(self.arena_size, 1))
        self._model = ctypes.create_string_buffer(lib.tml_model_size())
        status = lib.tml_load(self._model, self._blob, len(blob_bytes), self._arena, self.arena_size)
        if status:
            raise LoadError(status, "%s: %s" % (lib.tml_status_name(status).decode(),
                                                lib.tml_reason(self._model).decode(errors="replace")))
        self.inputs = self._io(lib.tml_input_index)
        self.outputs = self._io(lib.tml_output_index)

    def _io(self, fn):
        out = []
        k = 0
        while True:
            idx = fn(self._model, k)
            if idx < 0:
                return out
            t = _Tensor()
            self.lib.tml_tensor_get(self._model, idx, ctypes.byref(t))
            out.append(t)
            k += 1

    def invoke(self, inputs):
        """inputs: one array per graph input (graph order) -> list of output arrays (copies)."""
        if len(inputs) != len(self.inputs):
            raise ValueError("model has %d inputs, %d given" % (len(self.inputs), len(inputs)))
        for t, x in zip(self.inputs, inputs):
            data = np.ascontiguousarray(x, dtype=DTYPES[t.dtype]).tobytes()
            if len(data) != t.bytes:
                raise ValueError("input needs %d bytes, got %d" % (t.bytes, len(data)))
            ctypes.memmove(ctypes.addressof(self._arena) + t.offset, data, len(data))
        status = self.lib.tml_invoke(self._model)
        if status:
            raise CRuntimeError("tml_invoke failed: %s" % self.lib.tml_reason(self._model).decode())
        outs = []
        for t in self.outputs:
            raw = ctypes.string_at(ctypes.addressof(self._arena) + t.offset, t.bytes)
            shape = tuple(t.dims[: t.rank])
            outs.append(np.frombuffer(raw, dtype=DTYPES[t.dtype]).reshape(shape).copy())
        return outs

    def time_invoke(self, inputs, repeat=10):
        """Median wall-clock seconds of one tml_invoke (inputs written once)."""
        self.invoke(inputs)
        return float(np.median([self.time_again() for _ in range(repeat)]))

    def time_again(self):
        """Wall-clock seconds of one more tml_invoke on the inputs the last invoke wrote (for timing loops that
        interleave this runtime with another)."""
        t0 = time.perf_counter()
        self.lib.tml_invoke(self._model)
        return time.perf_counter() - t0


class CRuntime:
    """Adapter `c` for tinymlaas verify: the C runtime built for this host."""

    name = "c"
    latency_basis = "host wall clock of tml_invoke (this host's build)"

    def __init__(self):
        from ..verify.runtimes import RuntimeUnavailable

        try:
            library()
        except (CRuntimeError, OSError) as e:
            raise RuntimeUnavailable(str(e)) from e
        self.last_latency_us = []  # per input set

    def run(self, blob_bytes, inputs):
        from ..verify.runtimes import BlobRejected

        try:
            model = Model(blob_bytes)
        except LoadError as e:
            raise BlobRejected(str(e)) from e
        outs = [model.invoke(one) for one in inputs]
        self.last_latency_us = [model.time_invoke(one, repeat=1) * 1e6 for one in inputs]
        return outs
