"""The runtimes under test, behind one interface:

    runtime.run(blob_bytes, inputs) -> outputs

`inputs` is a list of input sets (each a list with one array per graph input, in graph order); `outputs` is one
list of arrays per input set. A runtime that cannot start raises `RuntimeUnavailable`; one that rejects the blob
raises `BlobRejected` carrying the loader's own message (this is how `tinymlaas verify` reports a corrupted blob).

Runtimes are looked up by name in RUNTIMES as "module:Class" and imported only when asked for: the C runtime through
ctypes (tinymlaas.devices.cruntime) and the Cortex-M4 firmware in QEMU (tinymlaas.devices.qemu) live with the
device code they drive and implement this same interface.
"""

import importlib


class RuntimeUnavailable(RuntimeError):
    """The runtime cannot run here (e.g. its binary is not built)."""


class BlobRejected(ValueError):
    """The runtime's loader refused the blob; str() is the loader's message."""


class HostRuntime:
    """The NumPy reference executor (tinymlaas.blob.reference)."""

    name = "host"
    latency_basis = "host wall clock of Executor.run (NumPy)"

    def __init__(self):
        self.last_latency_us = []  # per input set

    def run(self, blob_bytes, inputs):
        import time

        from ..blob.reader import BlobFormatError, parse
        from ..blob.reference import Executor

        try:
            ex = Executor(parse(blob_bytes))
        except BlobFormatError as e:
            raise BlobRejected(str(e)) from e
        self.last_latency_us, outs = [], []
        for one in inputs:
            t0 = time.perf_counter()
            outs.append(ex.run(one))
            self.last_latency_us.append((time.perf_counter() - t0) * 1e6)
        return outs


RUNTIMES = {
    "host": "tinymlaas.verify.runtimes:HostRuntime",
    "micropython": "tinymlaas.verify.micropython:MicroPythonRuntime",
    "c": "tinymlaas.devices.cruntime:CRuntime",
    "qemu-cortex-m4": "tinymlaas.devices.qemu:QemuRuntime",
}


def get_runtime(name, **options):
    """Instantiate runtime `name` (a key of RUNTIMES) with adapter-specific keyword options."""
    if name not in RUNTIMES:
        raise KeyError("unknown runtime %r (known: %s)" % (name, ", ".join(RUNTIMES)))
    module, cls = RUNTIMES[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise RuntimeUnavailable("runtime %r is not available in this build (%s is missing)" % (name, module))
    return getattr(mod, cls)(**options)
