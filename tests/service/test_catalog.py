"""The catalogue: model kinds told from content, datasets kept with the registry, variant accuracy measured through
the compiled blob, and SavedModel directories stored as archives."""

import numpy as np
import pytest

from tinymlaas.registry import RegistryError
from tinymlaas.service.catalog import Catalog, model_kind


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("k")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(2, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(X, y, epochs=20, verbose=0)
    m.save(d / "m.keras")
    np.save(d / "rep.npy", X[:100])
    np.savez(d / "eval.npz", x=X[200:], y=y[200:])
    m.export(str(d / "saved"), verbose=False)
    return d


def test_keras_model_with_datasets_gets_a_measured_int8_variant(tmp_path, keras_model):
    cat = Catalog(str(tmp_path / "db.sqlite"), tmp_path)
    model, errors = cat.add(keras_model / "m.keras", "k", datasets={"representative": keras_model / "rep.npy",
                                                                    "eval": keras_model / "eval.npz"})
    assert not errors and model["kind"] == "keras"
    kept = model["metadata"]["eval"]
    assert kept.startswith(str(tmp_path)) and (tmp_path / "datasets").is_dir()    # copied, not referenced
    (variant,) = cat.registry.variants(model)
    assert variant["artifact_kind"] == "tmlb" and variant["accuracy"] > 0.85      # measured through the blob


def test_savedmodel_directory_is_stored_as_an_archive(tmp_path, keras_model):
    cat = Catalog(str(tmp_path / "db.sqlite"), tmp_path)
    assert model_kind(keras_model / "saved") == "savedmodel"
    model, errors = cat.add(keras_model / "saved", "s", datasets={"representative": keras_model / "rep.npy"})
    assert not errors and cat.registry.source(model)[:2] == b"PK"
    assert cat.registry.variants(model)[0]["ram_bytes"] > 0


def test_missing_dataset_is_a_clear_error(tmp_path, keras_model):
    cat = Catalog(str(tmp_path / "db.sqlite"), tmp_path)
    with pytest.raises(RegistryError, match="cannot read dataset"):
        cat.add(keras_model / "m.keras", "k", datasets={"eval": tmp_path / "nope.npz"})
