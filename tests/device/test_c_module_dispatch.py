"""tinyml runs a model through the `_tinyml` C module when the firmware has it, on the same arena, and stays on
the viper kernels for streamed blobs and for ops the C runtime refuses. The module is played by a stand-in here
(tests/device/c_module_stand_in/_tinyml.py); the real one is checked where MicroPython is built (docs/boards.md)."""

from pathlib import Path

from tinymlaas.devices import unixport
from tinymlaas.paths import VECTORS

STAND_IN = Path(__file__).resolve().parent / "c_module_stand_in"
BLOB = VECTORS / "softmax_rows.blob"

SCRIPT = """
import tinyml, _tinyml
blob = open(%r, 'rb').read()
m = tinyml.load(blob)
n = sum(len(bytes(m.input_buffer(i))) for i in range(len(m.inputs)))
x = bytes((i * 37) & 0xFF for i in range(n))
print('kernels', m.kernels, 'scratch', m.scratch_bytes)
y_c = bytes(m.predict(x))
print('invokes', _tinyml.invokes)
v = tinyml.load(%r)            # from a file: streamed, so viper
print('kernels', v.kernels)
print('same', bytes(v.predict(x)) == y_c)
"""


def run(script):
    proc = unixport.run(code=script, heap="512k", path=[STAND_IN])
    return proc.stdout.decode().split("\n")


def test_c_module_is_used_for_in_memory_blobs_and_viper_for_streamed_ones():
    out = run(SCRIPT % (str(BLOB), str(BLOB)))
    assert out[0].startswith("kernels c-module scratch ")
    assert int(out[0].split()[-1]) < 1024          # no viper accumulators or weight buffers allocated
    assert out[1] == "invokes 1"
    assert out[2] == "kernels viper"
    assert out[3] == "same True"


def test_without_the_module_tinyml_runs_viper():
    proc = unixport.run(code="import tinyml\nm = tinyml.load(open(%r, 'rb').read())\nprint(m.kernels)" % str(BLOB),
                        heap="512k")
    assert proc.stdout.decode().strip() == "viper"


def test_a_blob_the_c_runtime_refuses_falls_back_to_viper(tmp_path):
    import numpy as np
    from sklearn.tree import DecisionTreeClassifier

    from tinymlaas.backends.trees import tables_from_estimator, write_tree_blob

    X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    path = tmp_path / "tree.blob"
    path.write_bytes(write_tree_blob(tables_from_estimator(tree)))
    proc = unixport.run(code="import tinyml\nm = tinyml.load(open(%r, 'rb').read())\nprint(m.kernels)" % str(path),
                        heap="512k", path=[STAND_IN])
    assert proc.stdout.decode().strip() == "viper"
