# Stands in for the `_tinyml` user C module (firmware/micropython/usermod) on a firmware without it (the PyPI unix
# port CI runs): the module's API (check_header, Model: invoke, input/output views, input_info, sizes), computed by
# tinyml's own reference kernels, and a count of invocations. A test script installs it as
# sys.modules["_tinyml"] before importing tinyml, which overrides even a built-in module, so the dispatch tests
# run alike on a stock binary and on a firmware with the real module. `refuse`: op names it rejects as a firmware
# whose C runtime predates them would (the real runtime implements every op of ABI 1, TREE_ENSEMBLE included).
import struct

import tinyml
from tinyml.blob import T_BYTES, T_OFF

invokes = 0
refuse = ()
_DTYPES = {"int8": 1, "uint8": 2, "int16": 3, "int32": 4, "float32": 5}


def check_header(h):
    if bytes(h[:4]) != b"TMLB":
        raise ValueError("tml bad header: bad magic (not a tinymlaas blob)")
    return struct.unpack_from("<II", h, 16)


class Model:
    def __init__(self, blob, arena):
        self._m = tinyml.load(bytes(blob), kernels="reference")
        for name in refuse:
            if name in self._m.ops:
                raise ValueError("tml bad op: op %s is not implemented" % name)
        self._arena = arena

    def invoke(self):
        global invokes
        invokes += 1
        self._m.arena[:] = self._arena
        self._m.invoke()
        self._arena[:] = self._m.arena

    def sizes(self):
        return len(self._m.inputs), len(self._m.outputs), self._m.arena_bytes

    # views of the caller's arena where the tensor lies (the C module's input/output views)
    def input(self, i):
        return self._view(self._m._p.inputs[i])

    def output(self, i):
        return self._view(self._m._p.outputs[i])

    def _view(self, t):
        t = self._m.tensors[t]
        return memoryview(self._arena)[t[T_OFF]:t[T_OFF] + t[T_BYTES]]

    def input_info(self, i):
        d = self._m.inputs[i]
        return _DTYPES[d["dtype"]], d["shape"], d["scale"], d["zero_point"], len(self._m.input_buffer(i))
