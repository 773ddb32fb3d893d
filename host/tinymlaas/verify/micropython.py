"""Run a blob in the real MicroPython unix port (inference_module/tinyml on MICROPYPATH).

All input sets go through ONE `micropython` process: the blob and the inputs are written to files, a small driver
(`mpy_driver.py`, device code run by MicroPython, never imported here) loads the model once, reads one input set at
a time, and appends each output's raw bytes to an output file. Memory in the VM stays bounded by one input set.
"""

import tempfile
from pathlib import Path

import numpy as np

from ..blob import format as F
from ..blob.reader import BlobFormatError, parse
from ..blob.reference import NP_DTYPE
from ..devices import unixport
from .runtimes import BlobRejected, RuntimeUnavailable

DRIVER = Path(__file__).with_name("mpy_driver.py")
DEFAULT_HEAP = "4m"


class MicroPythonRuntime:
    name = "micropython"
    latency_basis = "time.ticks_us around one inference in the MicroPython VM (m.last_us)"

    def __init__(self, heap=DEFAULT_HEAP, stream=False, timeout=900, path=()):
        """path: extra MICROPYPATH folders searched before inference_module/ (e.g. precompiled .mpy modules)."""
        self.heap = heap
        self.path = tuple(path)
        self.stream = stream  # load from the file (weights streamed) instead of from bytes in RAM
        self.timeout = timeout
        self.last_us = []  # per input set, the runtime's own inference time (m.last_us)
        self.last_latency_us = self.last_us

    def run(self, blob_bytes, inputs):
        try:
            blob = parse(blob_bytes)  # only for the graph's shapes; the device loader validates on its own
        except BlobFormatError:
            blob = None
        if blob is not None:
            spec = ",".join("%d%s" % (t.nbytes, "f" if t.dtype == F.DTYPE_FLOAT32 else "b")
                            for t in (blob.tensors[i] for i in blob.inputs))
        else:
            spec = ",".join("%db" % np.asarray(x).nbytes for x in inputs[0])
        with tempfile.TemporaryDirectory(prefix="tinymlaas-mpy-") as tmp:
            tmp = Path(tmp)
            (tmp / "model.blob").write_bytes(bytes(blob_bytes))
            with open(tmp / "inputs.bin", "wb") as f:
                for one in inputs:
                    for x in one:
                        f.write(np.ascontiguousarray(x).tobytes())
            try:
                proc = unixport.run(script=DRIVER, heap=self.heap, timeout=self.timeout, check=False, path=self.path,
                                    args=[tmp / "model.blob", tmp / "inputs.bin", tmp / "outputs.bin",
                                          len(inputs), "stream" if self.stream else "ram", spec])
            except unixport.MicroPythonError as e:
                raise RuntimeUnavailable(str(e)) from e
            out = proc.stdout.decode(errors="replace")
            err = proc.stderr.decode(errors="replace")
            if proc.returncode != 0:
                for line in out.splitlines():
                    if line.startswith("REJECTED "):
                        raise BlobRejected(line[len("REJECTED "):])
                raise RuntimeError("micropython driver failed (exit %d):\n%s%s" % (proc.returncode, out[-3000:],
                                                                                   err[-3000:]))
            if blob is None:
                raise RuntimeError("the MicroPython runtime accepted a blob the host reader rejects")
            self.last_us = [int(line.split()[1]) for line in out.splitlines() if line.startswith("US ")]
            self.last_latency_us = self.last_us
            raw = (tmp / "outputs.bin").read_bytes()
        outs_spec = [blob.tensors[i] for i in blob.outputs]
        per_set = sum(t.nbytes for t in outs_spec)
        if len(raw) != per_set * len(inputs):
            raise RuntimeError("micropython wrote %d output bytes, expected %d" % (len(raw), per_set * len(inputs)))
        results = []
        pos = 0
        for _ in inputs:
            one = []
            for t in outs_spec:
                one.append(np.frombuffer(raw, dtype=NP_DTYPE[t.dtype], count=t.elements, offset=pos)
                           .reshape(t.shape))
                pos += t.nbytes
            results.append(one)
        return results
