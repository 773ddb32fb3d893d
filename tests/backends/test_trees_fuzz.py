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


def test_host_and_device_checkers_agree_on_corrupt_tables(mpy_run, tmp_path, request):
    count = 20_000 if request.config.getoption("--fuzz-long") else 300
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5)
    model = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(x, y)
    _, t = compile_estimator(model)
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
