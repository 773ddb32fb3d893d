"""Fuzzing the TREE_ENSEMBLE table rules: the host checker and the device checker accept and reject the same
corrupted tables, and whatever the device accepts it runs without an error or a hang.
300 cases by default; `--fuzz-long` runs 20,000."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier

from tinymlaas.backends.trees import check_tables, compile_estimator, float32_key


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1))
def test_float32_key_order_matches_float_order(a_bits, b_bits):
    a, b = np.array([a_bits, b_bits], dtype=np.uint32).view(np.float32)
    if np.isnan(a) or np.isnan(b):
        return
    ka, kb = float32_key([a, b])
    assert (ka <= kb) == (a <= b) and (ka == kb) == (a == b)


def _mutate(rng, nodes, trees, n_leaves):
    nodes, trees = nodes.copy(), trees.copy()
    for _ in range(rng.integers(1, 4)):
        table = nodes if rng.random() < 0.8 else trees
        flat = table.reshape(-1)
        i = rng.integers(len(flat))
        choice = rng.integers(5)
        if choice == 0:
            flat[i] = rng.integers(-2 ** 31, 2 ** 31, dtype=np.int64)
        elif choice == 1:
            flat[i] = rng.integers(-5, len(nodes) + 5)
        elif choice == 2:
            flat[i] = ~int(rng.integers(0, n_leaves + 3))
        elif choice == 3:
            flat[i] = rng.choice([0x7F800001, -0x7F800001, 0x7F800000, -(2 ** 31), 2 ** 31 - 1])
        else:
            flat[i] = rng.integers(0, 12)
    return nodes, trees


def _small_forest(rng):
    """(blob, tables) of a 3-tree forest over 6 features and 3 classes: the tables the fuzz tests corrupt."""
    x = rng.normal(size=(300, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5)
    return compile_estimator(RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(x, y))


def test_host_and_device_checkers_agree_on_corrupt_tables(mpy_run, tmp_path, request):
    count = 20_000 if request.config.getoption("--fuzz-long") else 300
    rng = np.random.default_rng(7)
    _, t = _small_forest(rng)
    expected, cases = [], bytearray()
    for _ in range(count):
        nodes, trees = _mutate(rng, t.nodes, t.trees, len(t.leaves))
        try:
            check_tables(nodes, t.leaves, trees, t.init, 6)
            expected.append("ok")
        except ValueError:
            expected.append("rej")
        cases += nodes.astype("<i4").tobytes() + trees.astype("<i4").tobytes()
    (tmp_path / "cases.bin").write_bytes(bytes(cases))
    nb, tb = t.nodes.size * 4, t.trees.size * 4
    code = """
import struct
from tinyml import trees
from tinyml.errors import BlobError
leaves = bytes(%r); init = bytes(%r)
width = %d
ar = bytearray(48)
ar[0:24] = struct.pack('<6f', 0.3, -1.2, 0.9, 0.0, -0.0, 2.5)
out = []
with open(%r, 'rb') as f:
    for k in range(%d):
        nodes = f.read(%d); tr = f.read(%d)
        try:
            n_nodes, n_trees, n_classes = trees.check(nodes, leaves, tr, init, 6, width)
        except BlobError:
            out.append('rej')
            continue
        trees.run_op(ar, trees.params(0, 32, n_nodes, n_trees, width, n_classes), nodes, leaves, tr, init)
        out.append('ok')
print(' '.join(out))
""" % (t.leaves.astype("<i4").tobytes(), t.init.astype("<i4").tobytes(), t.leaves.shape[1],
       str(tmp_path / "cases.bin"), count, nb, tb)
    got = mpy_run(code, timeout=1200).split()
    assert got == expected
    assert 0.05 < expected.count("ok") / count < 0.95      # both paths exercised


def test_c_loader_agrees_with_the_host_checker_on_corrupt_tables(tmp_path, request):
    """The same corrupted tables, sealed into blobs (valid hash), through the C loader built with ASan + UBSan:
    it accepts exactly what the host checker accepts, and the C runtime runs every accepted one."""
    import hashlib
    import subprocess

    from tinymlaas.devices import cruntime

    count = 5_000 if request.config.getoption("--fuzz-long") else 300
    rng = np.random.default_rng(11)
    blob, t = _small_forest(rng)
    nodes_at = blob.find(t.nodes.astype("<i4").tobytes())
    trees_at = blob.find(t.trees.astype("<i4").tobytes())
    assert nodes_at > 0 and trees_at > 0
    expected, paths, blobs = [], [], []
    for k in range(count):
        nodes, trees = _mutate(rng, t.nodes, t.trees, len(t.leaves))
        try:
            check_tables(nodes, t.leaves, trees, t.init, 6)
            expected.append(0)
        except ValueError:
            expected.append(7)  # TML_E_OP
        b = bytearray(blob)
        nb, tb = nodes.astype("<i4").tobytes(), trees.astype("<i4").tobytes()
        b[nodes_at: nodes_at + len(nb)] = nb
        b[trees_at: trees_at + len(tb)] = tb
        b[24:56] = hashlib.sha256(bytes(b[64:])).digest()
        blobs.append(bytes(b))
        paths.append(tmp_path / ("t%05d.tmlb" % k))
        paths[-1].write_bytes(blobs[-1])
    runner = cruntime.build(cruntime.BUILD / "tml_run_asan")
    proc = subprocess.run([str(runner), "--validate"] + [str(p) for p in paths], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = [int(line.split()[0]) for line in proc.stdout.splitlines()]
    assert got == expected
    row = np.array([[0.3, -1.2, 0.9, 0.0, -0.0, 2.5]], dtype=np.float32)
    for b, e in zip(blobs, expected):
        if e == 0:
            assert cruntime.Model(b).invoke([row])[0].shape == (1, 3)
    assert 0.05 < expected.count(0) / count < 0.95
