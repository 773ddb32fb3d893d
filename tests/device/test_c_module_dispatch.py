"""Which kernels run a model: `tinyml.load(blob)` uses the `_tinyml` C module for a blob held in memory when the
firmware has it, viper for a blob streamed from a file or one the C runtime refuses; `kernels=` insists on one.

The dispatch is played against a stand-in module (c_module_stand_in/tinyml_c_stand_in.py) installed as
sys.modules["_tinyml"], which overrides a built-in module too, so these tests run alike on the stock unix port and
on a firmware built with the real module (MICROPYTHON=...); test_this_firmware checks the module the binary has,
or that it has none."""

import sys
from pathlib import Path

from tinymlaas.blob.reader import parse
from tinymlaas.devices import unixport
from tinymlaas.paths import REPO, VECTORS

from modes import firmware_has

STAND_IN = Path(__file__).resolve().parent / "c_module_stand_in"
STAND_IN_FIRST = "import sys, tinyml_c_stand_in as stand_in\nsys.modules['_tinyml'] = stand_in\n"
SOFTMAX = VECTORS / "softmax_rows.blob"
TREES = VECTORS / "trees_forest.blob"          # TREE_ENSEMBLE: float32 features in, int32 scores out


def run(code, stand_in=True):
    proc = unixport.run(code=(STAND_IN_FIRST if stand_in else "") + code, heap="512k",
                        path=[STAND_IN] if stand_in else ())
    return proc.stdout.decode().split("\n")


def first_vector(blob_path):
    """(input file holding the first golden input, that input's golden output as hex) of a tests/vectors blob,
    whose .in.bin/.out.bin hold several vectors back to back."""
    b = parse(blob_path.read_bytes())
    x = blob_path.with_suffix(".in.bin").read_bytes()[:b.tensors[b.inputs[0]].nbytes]
    y = blob_path.with_suffix(".out.bin").read_bytes()[:b.tensors[b.outputs[0]].nbytes]
    return x, y.hex()


SCRIPT = """
import tinyml
blob = open(%r, 'rb').read()
x = %r
m = tinyml.load(blob)
print('kernels', m.kernels, 'scratch', m.scratch_bytes)
y_c = bytes(m.predict(x))
print('invokes', stand_in.invokes)
v = tinyml.load(%r)            # from a file: streamed, so viper
print('kernels', v.kernels)
print('same', bytes(v.predict(x)) == y_c)
"""


def test_c_module_is_used_for_in_memory_blobs_and_viper_for_streamed_ones():
    out = run(SCRIPT % (str(SOFTMAX), first_vector(SOFTMAX)[0], str(SOFTMAX)))
    assert out[0].startswith("kernels c-module scratch ")
    assert int(out[0].split()[-1]) < 1024          # no viper accumulators or weight buffers allocated
    assert out[1] == "invokes 1"
    assert out[2] == "kernels viper"
    assert out[3] == "same True"


CHOSEN = """
import tinyml
blob = open(%r, 'rb').read()
x = %r
for k in ('viper', 'reference', 'c-module'):
    m = tinyml.load(blob, kernels=k)
    print(k, m.kernels, bytes(m.predict(x)).hex(), stand_in.invokes)
"""


def test_kernels_argument_chooses_the_kernels():
    x, golden = first_vector(SOFTMAX)
    out = run(CHOSEN % (str(SOFTMAX), x))
    assert out[:3] == ["viper viper %s 0" % golden,              # the module is there but not used
                       "reference reference %s 0" % golden,
                       "c-module c-module %s 1" % golden]


REFUSED = """
import tinyml
stand_in.refuse = ('TREE_ENSEMBLE',)       # a firmware whose C runtime predates the op
blob = open(%r, 'rb').read()
print(tinyml.load(blob).kernels)
for b in (blob, %r):
    try:
        tinyml.load(b, kernels='c-module')
    except ValueError as e:
        print(e)
"""


def test_a_blob_the_c_runtime_refuses_runs_on_viper_and_c_module_says_why():
    out = run(REFUSED % (str(TREES), str(TREES)))
    assert out[0] == "viper"
    assert out[1] == "kernels='c-module': the C runtime refuses this blob: tml bad op: op TREE_ENSEMBLE is not implemented"
    assert out[2] == ("kernels='c-module': the C module runs blobs held in memory (bytes, ROMFS); this one is "
                      "streamed from a file")


def test_an_unknown_kernels_name_is_refused_before_anything_is_read():
    out = run("import tinyml\ntry:\n tinyml.load('/no/such/file', kernels='cmsis')\nexcept ValueError as e:\n print(e)")
    assert out[0] == ("kernels must be one of c-module, viper, reference, or None (the C module where it can run "
                      "the blob, else viper), not 'cmsis'")


FIRMWARE = """
import tinyml
for path, x in %r:
    blob = open(path, 'rb').read()
    outs = []
    for k in (None, 'viper'):
        m = tinyml.load(blob, kernels=k)
        m.input_buffer(0)[:] = x
        m.invoke()
        outs.append(m.kernels + ' ' + bytes(m.output_buffer(0)).hex())
    try:
        tinyml.load(blob, kernels='c-module')
        outs.append('c-module loads')
    except ValueError as e:
        outs.append(str(e))
    print(' | '.join(outs))
"""


def test_this_firmware():
    """The binary MICROPYTHON selects: with `_tinyml` built in, in-memory blobs (TREE_ENSEMBLE too) run in C,
    bit-exact with viper; without it, on viper, and asking for the C module says the firmware lacks it."""
    has_c = firmware_has("_tinyml")
    out = run(FIRMWARE % ([(str(p), first_vector(p)[0]) for p in (SOFTMAX, TREES)],), stand_in=False)
    for path, line in zip((SOFTMAX, TREES), out):
        golden = first_vector(path)[1]
        auto, viper, asked = line.split(" | ")
        assert viper == "viper " + golden
        if has_c:
            assert (auto, asked) == ("c-module " + golden, "c-module loads")
        else:
            assert (auto, asked) == ("viper " + golden,
                                     "kernels='c-module': this firmware has no _tinyml module (docs/boards.md)")


def test_verify_build_compares_the_c_module_with_the_viper_kernels():
    """firmware/micropython/verify_build.py's per-vector code: the C side is the module, the viper side must not
    go through it (with `tinyml.load(blob)` it would: then "bit-exact (C and viper)" compared C with C)."""
    sys.path.insert(0, str(REPO / "firmware" / "micropython"))
    try:
        import verify_build
    finally:
        sys.path.pop(0)
    out = run("import tinyml, _tinyml\n" + verify_build.vector_code(SOFTMAX) + "print(stand_in.invokes)\n")
    golden = first_vector(SOFTMAX)[1]
    assert out[0].split() == [golden, golden, "c-module"]
    assert out[1] == "1"                           # one invoke: the C side's
