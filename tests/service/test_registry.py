"""Model registry on real SQLite: models, variants, content-addressed artifacts, migrations, corrupted rows."""

import pytest

from tinymlaas.backends import Artifact
from tinymlaas.db import Database
from tinymlaas.registry import ArtifactStore, ModelRegistry, RegistryError
from tinymlaas.registry.artifacts import ArtifactError


@pytest.fixture
def registry(tmp_path):
    db = Database(tmp_path / "tinymlaas.db")
    return ModelRegistry(db, ArtifactStore(tmp_path / "artifacts"))


def artifact(data=b"blob", ram=1000, flash=2000):
    return Artifact(kind="tmlb", data=data, flash_bytes=flash, ram_bytes=ram, macs=123, ops=["CONV_2D"],
                    features={"abi": 1}, report={"arena_bytes": ram})


def test_models_have_versions_and_newest_wins(registry):
    registry.add_model("kws", "1", "tflite", b"v1", task="keyword spotting", labels=["yes", "no"], accuracy=0.9)
    registry.add_model("kws", "2", "tflite", b"v2", accuracy=0.92)
    assert registry.model("kws")["version"] == "2"
    assert registry.model("kws", "1")["labels"] == ["yes", "no"]
    assert registry.source(registry.model("kws", "1")) == b"v1"
    with pytest.raises(RegistryError, match="already exists"):
        registry.add_model("kws", "2", "tflite", b"again")


def test_unknown_model_names_the_known_ones(registry):
    registry.add_model("kws", "1", "tflite", b"v1")
    with pytest.raises(RegistryError, match=r"unknown model 'vww'.*known: kws"):
        registry.model("vww")


def test_variants_are_idempotent_per_backend_options_runtime(registry):
    m = registry.add_model("kws", "1", "tflite", b"v1")
    a = registry.add_variant(m, "tmlb-int8", {"prune": 0.5}, "tinyml-mpy", artifact(b"x"))
    b = registry.add_variant(m, "tmlb-int8", {"prune": 0.5}, "tinyml-mpy", artifact(b"y"))
    assert len(registry.variants(m)) == 1
    assert registry.artifact(b) == b"y" and a["options"] == {"prune": 0.5}


def test_artifacts_are_content_addressed_and_checked(registry, tmp_path):
    sha = registry.store.put(b"hello")
    assert registry.store.put(b"hello") == sha
    path = tmp_path / "artifacts" / sha[:2] / sha
    path.write_bytes(b"hellO")
    with pytest.raises(ArtifactError, match="corrupted"):
        registry.store.get(sha)


def test_corrupted_row_is_a_clear_error(registry):
    m = registry.add_model("kws", "1", "tflite", b"v1")
    registry.db.execute("UPDATE models SET labels='{not json' WHERE id=?", (m["id"],))
    with pytest.raises(RegistryError, match="corrupted"):
        registry.model("kws")


def test_migrations_apply_once_and_survive_reopen(tmp_path):
    db = Database(tmp_path / "x.db")
    assert db.schema_versions()["registry"] >= 1
    db.close()
    db = Database(tmp_path / "x.db")   # re-open: nothing re-applied, no error
    assert db.schema_versions()["registry"] >= 1
