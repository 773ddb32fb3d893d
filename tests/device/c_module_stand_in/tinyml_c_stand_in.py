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


# cose_verify(envelope, anchors): the C reader's interface (anchors: 73-byte kid || point rows; the manifest's
# fields as a tuple in tinyml.cose.FIELDS order; ValueError(reason)), computed by tinyml's own reader, so that
# cose.verify's dispatch to the C module runs on the stock unix port too. Imported lazily: tinyml.cose imports
# _tinyml, which is this module.
cose_calls = 0


def cose_verify(envelope, anchors):
    global cose_calls
    from tinyml import cose

    cose_calls += 1
    if len(anchors) % 73:
        raise ValueError("anchors: kid (8 bytes) || point (65 bytes) each")
    table = {bytes(anchors[i:i + 8]): bytes(anchors[i + 8:i + 73]) for i in range(0, len(anchors), 73)}
    try:
        m = cose.verify_in_python(envelope, table)
    except cose.SignatureError as e:
        raise ValueError(e.reason)
    return tuple(getattr(m, attr) for _, attr, _ in cose.FIELDS)
