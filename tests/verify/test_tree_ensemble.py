"""TREE_ENSEMBLE (spec §10) in the reference executor: same scores as the trees back-end's own statement, and
scikit-learn's predictions, for forests and boosted trees; the reader's table rules reject broken tables."""

import struct

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

from tinymlaas.backends import trees
from tinymlaas.blob.reader import BlobFormatError
from tinymlaas.blob.reference import Executor


def data():
    return make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0)


@pytest.mark.parametrize("model", [
    RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0),
    GradientBoostingClassifier(n_estimators=6, max_depth=3, random_state=0),
], ids=["random_forest", "gradient_boosting"])
def test_scores_and_predictions(model):
    X, y = data()
    model.fit(X, y)
    tables = trees.tables_from_estimator(model)
    blob = trees.write_tree_blob(tables)
    parsed, _, _ = trees.read_tree_blob(blob)
    ex = Executor(parsed)
    X32 = X[:60].astype(np.float32)
    got = np.array([ex.run([row.reshape(1, -1)])[0].reshape(-1) for row in X32])
    assert np.array_equal(got, trees.reference_scores(tables, X32))
    assert np.array_equal(model.classes_[got.argmax(axis=1)], model.predict(X32))


def test_nan_input_is_refused():
    X, y = data()
    blob = trees.write_tree_blob(trees.tables_from_estimator(
        RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, y)))
    parsed, _, _ = trees.read_tree_blob(blob)
    x = np.zeros((1, 6), np.float32)
    x[0, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Executor(parsed).run([x])


def test_backward_child_is_rejected():
    """A child index that points back to its parent would loop forever on a device: the reader refuses it."""
    import hashlib

    from tinymlaas.blob import format as F

    X, y = data()
    blob = bytearray(trees.write_tree_blob(trees.tables_from_estimator(
        RandomForestClassifier(n_estimators=1, max_depth=3, random_state=0).fit(X, y))))
    parsed, arrays, op = trees.read_tree_blob(bytes(blob))
    nodes_t = parsed.tensors[op.inputs[1]]
    const_off = bytes(blob).index(bytes(parsed.const[:64]))
    struct.pack_into("<i", blob, const_off + nodes_t.offset + 8, 0)  # node 0's left child := node 0
    blob[F.SHA256_OFFSET:F.SHA256_OFFSET + 32] = hashlib.sha256(bytes(blob[64:])).digest()
    with pytest.raises((BlobFormatError, ValueError), match="child"):
        from tinymlaas.blob.reader import parse

        parse(bytes(blob))
