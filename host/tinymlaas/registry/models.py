"""Source models and their compiled variants, in the service database."""

import hashlib
import json
import time

from ..db import migration

migration(
    "registry",
    1,
    """CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        task TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT '[]',
        input_spec TEXT NOT NULL DEFAULT '{}',
        accuracy REAL,
        source_sha256 TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        UNIQUE (name, version))""",
    """CREATE TABLE variants (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id),
        backend TEXT NOT NULL,
        options TEXT NOT NULL,
        runtime TEXT NOT NULL,
        artifact_sha256 TEXT NOT NULL,
        artifact_kind TEXT NOT NULL,
        flash_bytes INTEGER NOT NULL,
        ram_bytes INTEGER NOT NULL,
        macs INTEGER NOT NULL,
        ops TEXT NOT NULL,
        features TEXT NOT NULL,
        accuracy REAL,
        report TEXT NOT NULL DEFAULT '{}',
        golden TEXT NOT NULL DEFAULT '[]',
        created_at REAL NOT NULL,
        UNIQUE (model_id, backend, options, runtime))""",
)

MODEL_JSON = ("labels", "input_spec", "metadata")
VARIANT_JSON = ("options", "ops", "features", "report", "golden")


class RegistryError(RuntimeError):
    """Unknown model or variant, or a registry row that cannot be read back."""


def _decode(row, fields, what):
    out = dict(row)
    for f in fields:
        try:
            out[f] = json.loads(out[f])
        except (TypeError, ValueError):
            raise RegistryError("%s %s: column %r is corrupted (not JSON): %r" % (what, row.get("id"), f, out[f])) from None
    return out


def options_key(options):
    return json.dumps(options or {}, sort_keys=True, separators=(",", ":"))


class ModelRegistry:
    def __init__(self, db, store):
        self.db = db
        self.store = store

    # -- source models ------------------------------------------------------------------------------------------
    def add_model(self, name, version, kind, source, task="", labels=(), input_spec=None, accuracy=None, metadata=None):
        """Store a source model's bytes and metadata; (name, version) is unique. Returns the model row."""
        sha = self.store.put(source)
        if self.db.query_one("SELECT id FROM models WHERE name=? AND version=?", (name, version)):
            raise RegistryError("model %s version %s already exists" % (name, version))
        self.db.execute(
            "INSERT INTO models (name, version, kind, task, labels, input_spec, accuracy, source_sha256, metadata, "
            "created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (name, version, kind, task, json.dumps(list(labels)), json.dumps(input_spec or {}), accuracy, sha,
             json.dumps(metadata or {}), time.time()),
        )
        return self.model(name, version)

    def exists(self, name, version):
        return self.db.query_one("SELECT id FROM models WHERE name=? AND version=?", (name, version)) is not None

    def model(self, name, version=None):
        """A model by name (newest version unless one is given) or by integer id."""
        if isinstance(name, int):
            row = self.db.query_one("SELECT * FROM models WHERE id=?", (name,))
        elif version is None:
            row = self.db.query_one("SELECT * FROM models WHERE name=? ORDER BY created_at DESC, id DESC LIMIT 1", (name,))
        else:
            row = self.db.query_one("SELECT * FROM models WHERE name=? AND version=?", (name, version))
        if row is None:
            known = ", ".join(sorted({r["name"] for r in self.db.query("SELECT name FROM models")})) or "none"
            raise RegistryError("unknown model %r%s (known: %s)" % (name, "" if version is None else " version %s" % version, known))
        return _decode(row, MODEL_JSON, "model")

    def models(self):
        return [_decode(r, MODEL_JSON, "model") for r in self.db.query("SELECT * FROM models ORDER BY name, created_at")]

    def source(self, model):
        return self.store.get(model["source_sha256"])

    # -- compiled variants --------------------------------------------------------------------------------------
    def add_variant(self, model, backend, options, runtime, artifact, accuracy=None):
        """Record a compiled artifact (tinymlaas.backends.Artifact) as a variant of `model`; idempotent."""
        sha = self.store.put(artifact.data)
        key = options_key(options)
        existing = self.db.query_one(
            "SELECT id FROM variants WHERE model_id=? AND backend=? AND options=? AND runtime=?",
            (model["id"], backend, key, runtime),
        )
        if existing:
            self.db.execute("DELETE FROM variants WHERE id=?", (existing["id"],))
        self.db.execute(
            "INSERT INTO variants (model_id, backend, options, runtime, artifact_sha256, artifact_kind, flash_bytes, "
            "ram_bytes, macs, ops, features, accuracy, report, golden, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (model["id"], backend, key, runtime, sha, artifact.kind, artifact.flash_bytes, artifact.ram_bytes,
             artifact.macs, json.dumps(list(artifact.ops)), json.dumps(artifact.features),
             accuracy if accuracy is not None else model.get("accuracy"), json.dumps(artifact.report),
             json.dumps(_golden_hex(artifact.golden)), time.time()),
        )
        return self.variant_by_key(model, backend, key, runtime)

    def variant_by_key(self, model, backend, key, runtime):
        row = self.db.query_one(
            "SELECT * FROM variants WHERE model_id=? AND backend=? AND options=? AND runtime=?",
            (model["id"], backend, key, runtime),
        )
        return _decode(row, VARIANT_JSON, "variant") if row else None

    def variant(self, variant_id):
        row = self.db.query_one("SELECT * FROM variants WHERE id=?", (variant_id,))
        if row is None:
            raise RegistryError("unknown variant %r" % (variant_id,))
        return _decode(row, VARIANT_JSON, "variant")

    def variants(self, model):
        return [_decode(r, VARIANT_JSON, "variant")
                for r in self.db.query("SELECT * FROM variants WHERE model_id=? ORDER BY id", (model["id"],))]

    def artifact(self, variant):
        return self.store.get(variant["artifact_sha256"])


def _golden_hex(golden):
    return [[[bytes(b).hex() for b in ins], [bytes(b).hex() for b in outs]] for ins, outs in golden]


def golden_bytes(variant):
    """The variant's golden vectors as [(input bytes list, output bytes list)]."""
    return [([bytes.fromhex(h) for h in ins], [bytes.fromhex(h) for h in outs]) for ins, outs in variant["golden"]]


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()
