"""IsolationForest on the tree-ensemble op (backends/trees.py): the blob's one score is minus the forest's summed
path length, equal to scikit-learn's (score_samples inverted) within the fixed point's rounding, also for trees
grown on a subset of the features; the device's equality with the host is tests/e2e/test_anomaly.py."""

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from tinymlaas.backends.trees import compile_estimator
from tinymlaas.service import anomaly


def test_blob_score_is_sklearns_path_length():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    test = np.vstack([rng.normal(size=(40, 6)), rng.normal(4, 1, size=(10, 6))]).astype(np.float32)
    for max_features in (1.0, 0.5):
        forest = IsolationForest(n_estimators=25, max_samples=64, max_features=max_features, random_state=1).fit(X)
        blob, tables = compile_estimator(forest)
        assert anomaly.score_kind(blob) == "output" and tables.n_classes == 1
        got = anomaly.scores(blob, test) / 2 ** tables.frac_bits
        norm = len(forest.estimators_) * _average_path_length([forest.max_samples_])[0]
        depths = -np.log2(-forest.score_samples(test)) * norm
        assert np.max(np.abs(got + depths)) <= len(forest.estimators_) / 2 ** tables.frac_bits
        a = anomaly.calibrate(blob, X, 0.02, test[40:])
        assert a["false_alarm_rate"] <= 0.05 and a["detection_rate"] == 1.0, a
