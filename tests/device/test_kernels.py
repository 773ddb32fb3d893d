"""Every op variant in zoo.py, run by the device runtime five ways -- viper kernels on an in-RAM blob, viper
kernels streaming weights from a file (default and tiny weight buffer), viper kernels with the 32-bit-word
requantization path, and the plain-Python reference kernels -- and, on a firmware built with the `_tinyml` C
module (MICROPYTHON=...), a sixth, must give the bytes of the host NumPy executor (tinymlaas.blob.reference), an
independent implementation of docs/blob-format.md."""

import random

import numpy as np

import zoo
from blobkit import FLOAT32
from modes import outputs_by_mode, with_c_module
from tinymlaas.blob import reference

MODES = with_c_module(("viper", "file", "stream64", "viper32", "reference"))

def _random_inputs(b, rng):
    ins = []
    for t in b.inputs:
        dtype, shape = b.tensors[t][0], b.tensors[t][1]
        n = int(np.prod(shape))
        if dtype == FLOAT32:
            ins.append(np.array([rng.uniform(-7, 7) for _ in range(n)], dtype=np.float32).reshape(shape))
        else:
            ins.append(np.array([rng.randint(-128, 127) for _ in range(n)], dtype=np.int8).reshape(shape))
    return ins


def test_every_op_matches_host_reference_in_every_mode(tmp_path, mpy_script):
    rng = random.Random(3)
    cases, expected = [], {}
    for seed in (1, 2):
        for name, b in zoo.all_cases(seed):
            name = "%s_%d" % (name, seed)
            blob = b.build()
            path = tmp_path / (name + ".blob")
            path.write_bytes(blob)
            ins = _random_inputs(b, rng)
            expected[name] = " ".join(o.tobytes().hex() for o in reference.run(blob, ins))
            cases.append((name, str(path), [i.tobytes().hex() for i in ins]))
    got, _ = outputs_by_mode(mpy_script, cases, MODES)
    assert len(got) == len(cases) * len(MODES)
    bad = [(n, m) for (n, m), hx in got.items() if hx != expected[n]]
    assert not bad, bad


def test_requantization_edges_in_conv(tmp_path, mpy_script):
    """Saturating inputs and extreme per-channel multipliers/shifts (incl. shift -31 and +positive) in one conv."""
    from blobkit import BlobBuilder, INT8, INT32, CONV_2D
    b = BlobBuilder()
    x = b.arena(INT8, (1, 2, 2, 8), zp=-128)
    w = b.const_tensor(INT8, (6, 1, 1, 8), [127] * 24 + [-128] * 24)
    bias = b.const_tensor(INT32, (6,), [2 ** 31 - 1 - 8 * 255 * 128, -2 ** 31 + 8 * 255 * 128, 0, -1, 1, 12345])
    mult = b.const_tensor(INT32, (6,), [2 ** 31 - 1, 2 ** 30, 2 ** 31 - 1, 2 ** 30, 0, 1518500250])
    shift = b.const_tensor(INT32, (6,), [-31, 0, 2, -1, 0, -20])
    y = b.arena(INT8, (1, 2, 2, 6))
    b.op(CONV_2D, [x, w, bias, mult, shift], y, [1, 1, 1, 1, 0, 0, 128, 0, -128, 127])
    b.graph([x], [y])
    blob = b.build()
    path = tmp_path / "edge.blob"
    path.write_bytes(blob)
    xin = np.array([127, -128, 0, 1, -1, 100, -100, 127] * 4, dtype=np.int8).reshape(1, 2, 2, 8)
    exp = reference.run(blob, [xin])[0].tobytes().hex()
    _, out = outputs_by_mode(mpy_script, [("edge", str(path), [xin.tobytes().hex()])], MODES, heap="256k")
    lines = out.splitlines()
    assert len(lines) == len(MODES)
    for line in lines:
        assert line.split(" ", 2)[2] == exp, line
