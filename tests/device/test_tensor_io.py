"""What `predict` / `set_input` take and give (inference_module/tinyml/tensor_io.py, docs/runtime-micropython.md
"Inputs and outputs"): floats for an int8 input are quantized by the blob's QUANTIZE rule, the one the host applies
(tinymlaas.blob.reference.quantize); ints must fit int8; 8-bit buffers are raw bytes; outputs are flat arrays, or
ndarrays of the model's output shape when an input was a ulab ndarray.

Every test runs on the binary MICROPYTHON selects: on the stock unix port with lists, tuples and arrays; on a
firmware built with ulab (docs/boards.md) with ndarrays of each dtype as well."""

import struct
from types import SimpleNamespace

import numpy as np
import pytest

from blobkit import BlobBuilder, INT8, CONCATENATION
from modes import firmware_has
from tinymlaas.blob import reference
from tinymlaas.paths import VECTORS

SCALE, ZP = 0.0625, -5
HAS_ULAB = firmware_has("ulab")

PRELUDE = """
import tinyml, array
try:
    from ulab import numpy as np
except ImportError:
    np = None
def show(y):
    if type(y).__name__ == 'ndarray':
        kind = 'int8' if y.dtype == np.int8 else 'float' if y.dtype == np.float else y.dtype
        return ['ndarray', kind, tuple(y.shape), list(y.flatten())]
    return ['array', len(bytes(y[:1])), len(y), list(y)]
def attempt(f):
    try:
        return f()
    except ValueError as e:
        return 'ValueError: %s' % e
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two int8 inputs (2, 4), scale 1/16, zero point -5, concatenated into one (2, 8) output."""
    b = BlobBuilder()
    xs = [b.arena(INT8, (2, 4), zp=ZP, scale=SCALE) for _ in range(2)]
    y = b.arena(INT8, (2, 8), zp=ZP, scale=SCALE)
    b.op(CONCATENATION, xs, y, [3])
    b.graph(xs, [y])
    path = tmp_path_factory.mktemp("io") / "pair.blob"
    path.write_bytes(b.build())
    return path


def host_quantize(values, scale, zero_point):
    q = reference.quantize([np.asarray(values, dtype=np.float64)], {}, None,
                           SimpleNamespace(scale=scale, zero_point=zero_point))
    return q.astype(np.int8).tobytes().hex()


def run(mpy_script, code):
    return mpy_script(PRELUDE + code).stdout.splitlines()


def test_floats_for_an_int8_input_are_quantized_as_the_host_quantizes(mpy_script, pair):
    rng = np.random.default_rng(7)
    ties = [(k + 0.5) * SCALE for k in (-3, -1, 0, 1, 2)]          # x / scale exactly k + 1/2: half away from zero
    values = ties + [100.0, -100.0, 0.0] + [float(v) for v in rng.normal(0, 0.3, 8)]   # beyond int8 saturates
    # a scale that is no power of two: binary32 quotients, as QUANTIZE rounds them
    soft = VECTORS / "softmax_fc.blob"
    s_scale = struct.unpack("<f", struct.pack("<f", 0.0077805351465940475))[0]
    soft_values = [float(v) for v in rng.normal(0, 0.5, 12)] + [(k + 0.5) * s_scale for k in range(-2, 2)]
    kinds = ["list(v)", "tuple(v)", "array.array('f', v)"] + (["np.array(v)"] if HAS_ULAB else [])
    out = run(mpy_script, """
m = tinyml.load(open(%r, 'rb').read())
s = tinyml.load(open(%r, 'rb').read())
for kind in %r:
    for model, vals in ((m, %r[:8]), (m, %r[8:]), (s, %r[:12]), (s, %r[4:])):
        v = vals
        model.set_input(0, eval(kind))
        print(kind, bytes(model.input_buffer(0)).hex())
""" % (str(pair), str(soft), kinds, values, values, soft_values, soft_values))
    want = [host_quantize(values[:8], SCALE, ZP), host_quantize(values[8:], SCALE, ZP),
            host_quantize(soft_values[:12], s_scale, 0), host_quantize(soft_values[4:], s_scale, 0)]
    # x / scale = -2.5 -0.5 0.5 1.5 2.5 round to -3 -1 1 2 3 (half away from zero, not to even), plus zp -5;
    # 100 and -100 saturate; 0 is the zero point
    assert want[0] == "f8fafcfdfe7f80fb"
    assert out == ["%s %s" % (k, w) for k in kinds for w in want]


VALUES = [1, -128, 127, -7, 0, 5, -1, 64]
RAW = "01807ff9000 5ff40".replace(" ", "")
UNSIGNED = [v & 0xFF for v in VALUES]


def test_ints_and_8_bit_buffers_for_an_int8_input(mpy_script, pair):
    kinds = ["list(%r)" % VALUES, "tuple(%r)" % VALUES, "bytes(%r)" % UNSIGNED, "bytearray(%r)" % UNSIGNED,
             "memoryview(bytes(%r))" % UNSIGNED, "array.array('b', %r)" % VALUES, "array.array('B', %r)" % UNSIGNED,
             "array.array('i', %r)" % VALUES, "array.array('h', %r)" % VALUES]
    if HAS_ULAB:
        kinds += ["np.array(%r, dtype=np.int8)" % VALUES,
                  "np.array(%r, dtype=np.uint8)" % UNSIGNED,                # raw bytes, as bytes(...) is
                  "np.array(%r, dtype=np.int16).reshape((2, 4))" % VALUES,
                  "np.array(%r, dtype=np.int8)[::2]" % [v for v in VALUES for _ in (0, 1)]]  # a strided view
    out = run(mpy_script, """
m = tinyml.load(open(%r, 'rb').read())
for kind in %r:
    m.input_buffer(0)[:] = bytes(8)
    m.set_input(0, eval(kind))
    print(bytes(m.input_buffer(0)).hex())
""" % (str(pair), kinds))
    assert out == [RAW] * len(kinds)


def test_what_does_not_fit_an_int8_input_is_refused_with_the_reason(mpy_script, pair):
    bad = [("[1, 200, 0, 0, 0, 0, 0, 0]", "value 200 at index 1"), ("array.array('i', [0, 0, -129, 0, 0, 0, 0, 0])",
                                                                    "value -129 at index 2")]
    if HAS_ULAB:
        bad += [("np.array([0, 0, 0, 300, 0, 0, 0, 0], dtype=np.int16)", "value 300 at index 3")]
    out = run(mpy_script, """
m = tinyml.load(open(%r, 'rb').read())
for kind in %r + ['bytes(7)', '[0, 1, 2]', 'list(range(9))']:
    print(attempt(lambda: m.set_input(0, eval(kind))))
""" % (str(pair), [k for k, _ in bad]))
    assert out == ["ValueError: input 0 is int8: %s is outside [-128, 127] (give floats to have them quantized with "
                   "scale 0.0625, zero point -5)" % why for _, why in bad] + [
        "ValueError: input 0 takes 8 bytes, got 7", "ValueError: input 0 takes 8 values, got 3",
        "ValueError: input 0 takes 8 values, got 9"]


def golden(name):
    """(first input, first golden output) of a tests/vectors blob as numpy arrays of the tensors' dtypes."""
    from tinymlaas.blob.reader import parse
    path = VECTORS / (name + ".blob")
    b = parse(path.read_bytes())
    t_in, t_out = b.tensors[b.inputs[0]], b.tensors[b.outputs[0]]
    dt = {1: "<i1", 4: "<i4", 5: "<f4"}
    x = np.frombuffer(path.with_suffix(".in.bin").read_bytes()[:t_in.nbytes], dtype=dt[t_in.dtype])
    y = np.frombuffer(path.with_suffix(".out.bin").read_bytes()[:t_out.nbytes], dtype=dt[t_out.dtype])
    return path, x.tolist(), y.tolist()


def test_outputs_are_flat_arrays_or_ndarrays_of_the_models_shape(mpy_script, pair):
    trees, t_x, t_y = golden("trees_forest")        # float32 (1, 6) in, int32 scores (1, 3) out
    cnn, c_x, c_y = golden("float_io_cnn")          # float32 (1, 6, 6, 1) in, float32 (1, 3) out
    a, b = VALUES[:4] * 2, UNSIGNED[4:] * 2
    out = run(mpy_script, """
p = tinyml.load(open(%r, 'rb').read())
t = tinyml.load(open(%r, 'rb').read())
c = tinyml.load(open(%r, 'rb').read())
a, b, tx, cx = %r, %r, %r, %r
print(repr([show(p.predict(a, bytes(b))), show(t.predict(tx)), show(c.predict(cx))]))
if np is not None:
    print(repr([show(p.predict(a, np.array(b, dtype=np.uint8))),            # any ndarray input: ndarrays out
                show(p.predict(np.array(a, dtype=np.int8).reshape((2, 4)), bytes(b))),
                show(t.predict(np.array(tx))), show(c.predict(np.array(cx).reshape((6, 6))))]))
""" % (str(pair), str(trees), str(cnn), a, b, t_x, c_x))
    pair_y = [v - 256 if v > 127 else v for v in (a[:4] + b[:4] + a[4:] + b[4:])]  # row by row: (2, 4) + (2, 4)
    arrays = eval(out[0])
    assert arrays[0] == ["array", 1, 16, pair_y]
    assert arrays[1] == ["array", 4, 3, t_y]                  # int32 scores: array('i')
    assert arrays[2][:3] == ["array", 4, 3] and np.allclose(arrays[2][3], c_y, rtol=1e-6)
    assert len(out) == (2 if HAS_ULAB else 1)
    if HAS_ULAB:
        nd = eval(out[1])
        assert nd[0] == nd[1] == ["ndarray", "int8", (2, 8), pair_y]
        assert nd[2] == ["ndarray", "float", (1, 3), [float(v) for v in t_y]]      # ulab has no int32
        assert nd[3][:3] == ["ndarray", "float", (1, 3)] and np.allclose(nd[3][3], c_y, rtol=1e-6)


def test_an_output_of_more_dimensions_than_ulab_holds_says_how_to_build_it(mpy_script):
    """add_broadcast_two_inputs: output (1, 4, 4, 3). ulab holds 2 dimensions unless built with ULAB_MAX_DIMS."""
    path = VECTORS / "add_broadcast_two_inputs.blob"
    out = run(mpy_script, """
m = tinyml.load(open(%r, 'rb').read())
x0, x1 = bytes(12), bytes(48)
flat = m.predict(x0, x1)
print(len(flat), len(bytes(flat[:1])))
if np is not None:
    try:
        print(np.zeros((1, 1, 1, 1)).ndim and 'ulab holds 4')
    except TypeError as e:                  # 'too many dimensions'
        print(e)
    print(attempt(lambda: show(m.predict(np.frombuffer(x0, dtype=np.int8), x1))))
""" % str(path))
    assert out[0] == "48 1"
    if HAS_ULAB:
        if out[1] == "ulab holds 4":
            assert eval(out[2])[:3] == ["ndarray", "int8", (1, 4, 4, 3)]
        else:
            assert out[2] == ("ValueError: output 0 has shape (1, 4, 4, 3), which this ulab cannot hold (maximum "
                              "number of dimensions is 2): build ulab with ULAB_MAX_DIMS=4 (docs/boards.md)")
