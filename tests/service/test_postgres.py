"""The database layer is the same code on SQLite and PostgreSQL: every test here runs on both (`db_url`, see
conftest.py: a SQLite file, or a fresh database on a throw-away PostgreSQL server). Covers the registry, the
migration mechanism, transactions, deployments, device tags and the LwM2M store, plus the places where the two
engines differ unless db.py translates (integer ids, float precision, 64-bit integers, text ordering, `%`/`?`)."""

import threading
import time
from types import SimpleNamespace

import pytest

import tinymlaas.service.core  # noqa: F401  (registers every component's migrations: one schema for all tests)
from tinymlaas import db as D
from tinymlaas.backends import Artifact
from tinymlaas.db import Database
from tinymlaas.lwm2m.registration import Registration
from tinymlaas.lwm2m.store import Store
from tinymlaas.registry import ArtifactStore, ModelRegistry, RegistryError
from tinymlaas.service.core import Service
from tinymlaas.service.deployments import DeploymentError, DeploymentStore


@pytest.fixture
def db(db_url):
    d = Database(db_url)
    yield d
    d.close()


def idle(db):
    """No transaction left open on the connection (on PostgreSQL an open one would hold locks between calls)."""
    if db.kind == "postgresql":
        import psycopg

        return db.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return not db.conn.in_transaction


def artifact(data=b"blob", ram=1000, flash=2000, macs=123):
    return Artifact(kind="tmlb", data=data, flash_bytes=flash, ram_bytes=ram, macs=macs, ops=["CONV_2D"],
                    features={"abi": 1}, report={"arena_bytes": ram})


# -- registry -------------------------------------------------------------------------------------------------
def test_registry_models_variants_and_errors(db, tmp_path):
    reg = ModelRegistry(db, ArtifactStore(tmp_path / "artifacts"))
    m1 = reg.add_model("kws", "1", "tflite", b"v1", task="keyword spotting", labels=["yes", "no"], accuracy=0.9)
    m2 = reg.add_model("kws", "2", "tflite", b"v2", accuracy=0.92)
    assert isinstance(m1["id"], int) and m2["id"] > m1["id"]            # ids generated on both engines
    assert reg.model("kws")["version"] == "2"
    assert reg.model("kws", "1")["labels"] == ["yes", "no"] and reg.model(m1["id"])["name"] == "kws"
    assert reg.source(reg.model("kws", "1")) == b"v1"
    with pytest.raises(RegistryError, match="already exists"):
        reg.add_model("kws", "2", "tflite", b"again")
    with pytest.raises(RegistryError, match=r"unknown model 'vww'.*known: kws"):
        reg.model("vww")

    a = reg.add_variant(m1, "tmlb-int8", {"prune": 0.5}, "tinyml-mpy", artifact(b"x", macs=3 * 2 ** 32))
    b = reg.add_variant(m1, "tmlb-int8", {"prune": 0.5}, "tinyml-mpy", artifact(b"y"))
    c = reg.add_variant(m1, "tmlb-int8", {}, "tinyml-mpy", artifact(b"z"))
    assert a["macs"] == 3 * 2 ** 32                                    # INTEGER is 64-bit on both
    assert [v["id"] for v in reg.variants(m1)] == [b["id"], c["id"]]   # re-adding replaced, not duplicated
    assert reg.artifact(b) == b"y" and a["options"] == {"prune": 0.5} and b["accuracy"] == 0.9
    assert reg.variant(c["id"])["features"] == {"abi": 1}
    with pytest.raises(RegistryError, match="unknown variant"):
        reg.variant(99999)

    db.execute("UPDATE models SET labels='{not json' WHERE id=?", (m1["id"],))
    with pytest.raises(RegistryError, match="corrupted"):
        reg.model("kws", "1")
    assert idle(db)


# -- migrations -----------------------------------------------------------------------------------------------
def test_migrations_apply_once_and_reopen_is_idempotent(db_url):
    db = Database(db_url)
    versions = db.schema_versions()
    assert versions["registry"] >= 1 and versions["lwm2m"] == 5 and versions["deployments"] >= 1
    assert versions["fleet"] >= 1
    rows = db.query("SELECT component, version FROM schema_migrations")
    db.close()
    db = Database(db_url)   # re-open: nothing re-applied, no error
    assert db.schema_versions() == versions
    assert sorted((r["component"], r["version"]) for r in db.query("SELECT component, version FROM schema_migrations")) \
        == sorted((r["component"], r["version"]) for r in rows)
    db.close()


def test_a_failing_migration_rolls_back_completely_and_a_new_one_applies(db_url):
    Database(db_url).close()
    saved = list(D.MIGRATIONS)
    try:
        D.migration("pgtest", 1, "CREATE TABLE pgtest_a (id INTEGER PRIMARY KEY, name TEXT NOT NULL, at REAL)",
                    "INSERT INTO pgtest_a (name, at) VALUES ('first', 1.5)")
        D.migration("pgtest", 2, "CREATE TABLE pgtest_b (a TEXT)", "INSERT INTO nowhere VALUES (1)")
        with pytest.raises(Exception, match="nowhere"):
            Database(db_url)
        D.MIGRATIONS.pop()
        db = Database(db_url)
        assert db.schema_versions()["pgtest"] == 1
        assert db.query("SELECT id, name, at FROM pgtest_a") == [{"id": 1, "name": "first", "at": 1.5}]
        with pytest.raises(Exception):
            db.query("SELECT * FROM pgtest_b")      # the failed version's first statement was rolled back too
        assert db.query("SELECT 1 AS one") == [{"one": 1}]    # and the connection is usable after the error
        db.close()
    finally:
        D.MIGRATIONS[:] = saved


def test_services_starting_together_migrate_once(db_url):
    """Several processes opening one new database at once: one applies each migration, the others wait for it."""
    barrier = threading.Barrier(4)
    errors, opened = [], []

    def start():
        try:
            barrier.wait()
            opened.append(Database(db_url))
        except Exception as e:     # reported below with the engine's message
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = opened[0].query("SELECT component, version FROM schema_migrations")
    assert len(rows) == len({(r["component"], r["version"]) for r in rows}) == len(D.MIGRATIONS)
    for d in opened:
        d.close()


def test_migration_ddl_is_translated_only_for_postgresql(db):
    stmt = "CREATE TABLE x (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, at REAL, s TEXT DEFAULT 'INTEGER TEXT', text TEXT)"
    if db.kind == "sqlite":
        assert db.ddl(stmt) == stmt
    else:
        assert db.ddl(stmt) == ('CREATE TABLE x (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, '
                                'at DOUBLE PRECISION, s TEXT COLLATE "C" DEFAULT \'INTEGER TEXT\', text TEXT COLLATE "C")')
    assert db.ddl("INSERT INTO x (s) VALUES ('INTEGER')") == "INSERT INTO x (s) VALUES ('INTEGER')"


# -- transactions and statements ------------------------------------------------------------------------------
def test_failed_statements_roll_back_and_the_connection_stays_usable(db):
    db.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "a"))
    with pytest.raises(Exception):
        db.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "a"))    # primary key
    assert idle(db)
    with pytest.raises(Exception):
        db.query("SELECT no_such_column FROM device_tags")
    assert idle(db)
    with pytest.raises(Exception):
        with db.transaction() as tx:
            tx.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "b"))
            tx.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "a"))
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "c"))
            raise RuntimeError("caller gave up")
    assert idle(db)
    assert [r["tag"] for r in db.query("SELECT tag FROM device_tags ORDER BY tag")] == ["a"]
    with db.transaction() as tx:
        tx.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "d"))
        db.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "e"))   # joins the transaction
    assert idle(db)
    assert [r["tag"] for r in db.query("SELECT tag FROM device_tags ORDER BY tag")] == ["a", "d", "e"]


def test_writes_are_visible_to_another_connection_at_once(db, db_url):
    other = Database(db_url)
    try:
        assert other.query("SELECT tag FROM device_tags") == []
        db.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "a"))
        with db.transaction() as tx:
            tx.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", ("ep", "b"))
        db.query("SELECT tag FROM device_tags")
        assert [r["tag"] for r in other.query("SELECT tag FROM device_tags ORDER BY tag")] == ["a", "b"]
        # A read leaves no transaction behind, so the other connection can change the schema meanwhile.
        other.execute("CREATE INDEX device_tags_tag ON device_tags(tag)")
    finally:
        other.close()


def test_values_round_trip_exactly(db):
    """REAL keeps full double precision (PostgreSQL's own REAL would not), INTEGER 64 bits, TEXT sorts bytewise
    whatever the database's locale (the test PostgreSQL database collates ICU en-US), `%` and `?` in SQL text."""
    now = time.time()
    names = ["dev1", "dev-2", "Dev3", "dev_4", "dév5", "DEV6", "dev10"]
    with db.transaction() as tx:
        for i, ep in enumerate(names):
            tx.execute("INSERT INTO device_events (endpoint, event, at, address) VALUES (?, ?, ?, ?)",
                       (ep, "registered", now + i * 1e-6, "100%?"))
    rows = db.query("SELECT endpoint, at, address FROM device_events ORDER BY endpoint")
    assert [r["endpoint"] for r in rows] == sorted(names, key=lambda s: s.encode())
    assert {r["endpoint"]: r["at"] for r in rows} == {ep: now + i * 1e-6 for i, ep in enumerate(names)}
    assert db.query("SELECT address FROM device_events WHERE address LIKE '100%' AND endpoint=?", ("dev1",)) \
        == [{"address": "100%?"}]
    assert db.query("SELECT '?' AS q, ? AS p", ("it's",)) == [{"q": "?", "p": "it's"}]
    db.execute("UPDATE variants SET macs=? WHERE id=?", (2 ** 62, 1))   # no row; the parameter is accepted
    assert db.query("SELECT endpoint FROM device_events WHERE endpoint > ? ORDER BY endpoint LIMIT 1", ("dev",)) \
        == [{"endpoint": "dev-2"}]


# -- deployments ----------------------------------------------------------------------------------------------
def test_deployments_create_set_history(db):
    store = DeploymentStore(db)
    first = store.create(1, ["a", "b", "c"], canary=["b"])
    second = store.create(1, ["d"], canary=[])
    assert isinstance(first, int) and second > first
    dep = store.get(first)
    assert dep["state"] == "running" and dep["targets"] == ["a", "b", "c"] and dep["canary"] == ["b"]
    assert [(d["endpoint"], d["canary"], d["state"]) for d in dep["devices"]] == \
        [("b", 1, "queued"), ("a", 0, "queued"), ("c", 0, "queued")]
    store.set_device(first, "b", "delivering", variant_id=7, previous={"sha256": "0" * 64})
    store.set_device(first, "b", "failed", "self-test failed")
    store.set_deployment(first, "halted", "canary b failed")
    dep = store.get(first)
    b = dep["devices"][0]
    assert (b["state"], b["reason"], b["variant_id"], b["previous"]) == \
        ("failed", "self-test failed", 7, {"sha256": "0" * 64})
    assert (dep["state"], dep["reason"]) == ("halted", "canary b failed")
    assert [(h["endpoint"], h["state"]) for h in store.history(first)] == \
        [("b", "queued"), ("a", "queued"), ("c", "queued"), ("b", "delivering"), ("b", "failed")]
    assert [d["id"] for d in store.list()] == [first, second]
    with pytest.raises(DeploymentError, match="unknown deployment"):
        store.get(second + 100)
    assert idle(db)


def test_device_tags(db):
    svc = SimpleNamespace(db=db)     # Service's tag methods only use its database
    Service.tag(svc, "ep2", "lab", "lab", "kws")            # repeated tag: ON CONFLICT DO NOTHING
    Service.tag(svc, "ep1", "lab")
    assert Service.tags(svc, "ep2") == ["kws", "lab"]
    assert Service.devices_with_tag(svc, "lab") == ["ep1", "ep2"]
    Service.untag(svc, "ep2", "lab")
    assert Service.devices_with_tag(svc, "lab") == ["ep1"]


# -- LwM2M store ----------------------------------------------------------------------------------------------
def registration(endpoint, reg_id, lifetime=300, capabilities=None):
    now = time.time()
    return Registration(endpoint=endpoint, id=reg_id, address="127.0.0.1:5683", lifetime=lifetime,
                        lwm2m_version="1.1", binding="U", objects=["/1/0", "/3/0", "/5/0"], registered_at=now,
                        updated_at=now, capabilities=capabilities)


@pytest.mark.parametrize("shared", [False, True], ids=["own-url", "shared-db"])
def test_lwm2m_store_save_delete_devices(db_url, shared):
    db = Database(db_url) if shared else None
    st = Store(db if shared else db_url)
    try:
        assert st.schema_version() == 5
        st.save_device(registration("b-dev", "r1"), "registered")
        st.save_device(registration("a-dev", "r2", capabilities={"ram": 1}), "registered")
        st.save_device(registration("b-dev", "r3", lifetime=60), "updated")      # upsert on endpoint
        st.set_capabilities("b-dev", {"ram": 2})
        devs = st.devices()
        assert [(d["endpoint"], d["registration"], d["lifetime"]) for d in devs] == [("a-dev", "r2", 300),
                                                                                  ("b-dev", "r3", 60)]
        assert devs[0]["objects"] == ["/1/0", "/3/0", "/5/0"] and devs[0]["capabilities"] == {"ram": 1}
        assert devs[1]["capabilities"] == {"ram": 2}
        st.delete_device("b-dev", "deregistered")
        assert [d["endpoint"] for d in st.devices()] == ["a-dev"]
        assert [e["event"] for e in st.events("b-dev")] == ["registered", "updated", "deregistered"]
        with pytest.raises(Exception):
            st.save_device(registration("c-dev", "r2"), "registered")    # registration id is unique
        assert [d["endpoint"] for d in st.devices()] == ["a-dev"]
        assert st.events("c-dev") == []                                 # the event went with the rollback
    finally:
        st.close()
        if shared:
            assert db.query("SELECT 1 AS one") == [{"one": 1}]         # a shared database is not closed
            db.close()
