"""Deployment state machine on real SQLite and on real PostgreSQL (`db_url`, tests/service/conftest.py). Devices
are played by a scripted channel here (the end-to-end tests with emulated MicroPython devices over LwM2M are in
tests/e2e); this file pins the states and the resume logic."""

import asyncio

import pytest

import tinymlaas.registry.models  # noqa: F401  (registers the models/variants migrations the fixture writes to)
from tinymlaas.db import Database
from tinymlaas.service.deployments import (DeliveryError, DeploymentEngine, DeploymentError, DeploymentStore,
                                           DeviceChannel)

SHA_NEW = "a" * 64
SHA_OLD = "b" * 64


class ScriptedDevices(DeviceChannel):
    def __init__(self, behaviour):
        self.behaviour = behaviour     # endpoint -> "ok" | "selftest-fails" | "gone"
        self.active = {ep: {"sha256": SHA_OLD, "name": "old", "version": "1"} for ep in behaviour}
        self.installs = []

    async def installed(self, endpoint):
        if self.behaviour[endpoint] == "gone":
            raise DeliveryError("no response from %s" % endpoint)
        return self.active[endpoint]

    async def install(self, endpoint, package, name, version, progress=None):
        self.installs.append((endpoint, name))
        b = self.behaviour[endpoint]
        if b == "gone":
            raise DeliveryError("device %s stopped answering during block 3" % endpoint)
        if b == "selftest-fails" and name == "new":
            return self.active[endpoint]          # device kept its previous model
        self.active[endpoint] = {"sha256": SHA_NEW if name == "new" else SHA_OLD, "name": name}
        return self.active[endpoint]


@pytest.fixture
def store(db_url):
    db = Database(db_url)
    db.execute("INSERT INTO models (id, name, version, kind, source_sha256, created_at) VALUES (1,'m','1','tflite','x',0)")
    db.execute("INSERT INTO variants (id, model_id, backend, options, runtime, artifact_sha256, artifact_kind, "
               "flash_bytes, ram_bytes, macs, ops, features, created_at) VALUES "
               "(7, 1, 'tmlb-int8', '{}', 'tinyml-mpy', ?, 'tmlb', 1, 1, 1, '[]', '{}', 0)", (SHA_NEW,))
    yield DeploymentStore(db)
    db.close()


def plan_ok(deployment, endpoint):
    if endpoint == "too-small":
        raise DeploymentError("no variant fits: needs 60000 B of RAM, device has 30000 B")
    return {"id": 7, "artifact_sha256": SHA_NEW}, b"package", "new", "2"


def engine(store, devices):
    return DeploymentEngine(store, devices, plan_ok,
                            rollback_package=lambda ep, prev: (b"old-package", "old", "1") if prev else None)


def states(dep):
    return {d["endpoint"]: d["state"] for d in dep["devices"]}


def test_all_devices_become_active(store):
    devices = ScriptedDevices({"a": "ok", "b": "ok"})
    dep = asyncio.run(engine(store, devices).run(store.create(1, ["a", "b"], canary=[])))
    assert states(dep) == {"a": "active", "b": "active"} and dep["state"] == "completed"
    hist = [(h["endpoint"], h["state"]) for h in store.history(dep["id"])]
    assert hist.index(("a", "delivering")) < hist.index(("a", "verifying")) < hist.index(("a", "active"))


def test_failed_canary_halts_and_rolls_back(store):
    devices = ScriptedDevices({"c1": "ok", "c2": "selftest-fails", "d1": "ok", "d2": "ok"})
    dep = asyncio.run(engine(store, devices).run(store.create(1, ["c1", "c2", "d1", "d2"], canary=["c1", "c2"])))
    assert dep["state"] == "halted" and "c2" in dep["reason"]
    assert states(dep) == {"c1": "rolled_back", "c2": "failed", "d1": "skipped", "d2": "skipped"}
    assert devices.active["c1"]["sha256"] == SHA_OLD       # the previous model is back
    assert ("d1", "new") not in devices.installs


def test_vanished_device_and_nothing_fits_fail_with_reasons(store):
    devices = ScriptedDevices({"gone": "gone", "too-small": "ok", "fine": "ok"})
    dep = asyncio.run(engine(store, devices).run(store.create(1, ["gone", "too-small", "fine"], canary=[])))
    by = {d["endpoint"]: d for d in dep["devices"]}
    assert by["gone"]["state"] == "failed" and "unreachable" in by["gone"]["reason"]
    assert by["too-small"]["state"] == "failed" and "B of RAM" in by["too-small"]["reason"]
    assert by["fine"]["state"] == "active" and dep["state"] == "completed"


def test_restart_mid_delivery_resumes_from_the_device_state(store):
    dep_id = store.create(1, ["a", "b"], canary=[])
    # The service died while delivering to a (which did install) and before b started.
    store.set_device(dep_id, "a", "delivering", "", variant_id=7)
    devices = ScriptedDevices({"a": "ok", "b": "ok"})
    devices.active["a"] = {"sha256": SHA_NEW}
    dep = asyncio.run(engine(store, devices).run(dep_id))
    assert states(dep) == {"a": "active", "b": "active"}
    assert ("a", "new") not in devices.installs            # not delivered twice
    assert any("resumed after restart" in h["message"] for h in store.history(dep_id))


def test_unknown_deployment(store):
    with pytest.raises(DeploymentError, match="unknown deployment"):
        store.get(999)


def test_halt_by_a_user_skips_the_devices_not_started_and_rollback_reinstalls(store):
    devices = ScriptedDevices({"a": "ok", "b": "ok", "c": "ok"})
    eng = engine(store, devices)
    dep_id = store.create(1, ["a", "b", "c"], canary=[])
    install = devices.install

    async def halting_install(endpoint, *args, **kw):
        if endpoint == "b":
            eng.halt(dep_id, "halted by an operator")      # while b installs: b finishes, c never starts
        return await install(endpoint, *args, **kw)

    devices.install = halting_install
    dep = asyncio.run(eng.run(dep_id))
    devices.install = install
    assert dep["state"] == "halted" and dep["reason"] == "halted by an operator"
    assert states(dep) == {"a": "active", "b": "active", "c": "skipped"}
    assert ("c", "new") not in devices.installs
    with pytest.raises(DeploymentError, match="not running"):
        eng.halt(dep_id, "again")

    done = asyncio.run(eng.rollback(dep_id, "rolled back by an operator"))
    assert done == {"a": "rolled_back", "b": "rolled_back"}
    assert devices.active["a"]["sha256"] == devices.active["b"]["sha256"] == SHA_OLD
    assert store.get(dep_id)["state"] == "halted" and "rolled back" in store.get(dep_id)["reason"]
    with pytest.raises(DeploymentError, match="nothing to roll back"):
        asyncio.run(eng.rollback(dep_id, "twice"))
    with pytest.raises(DeploymentError, match="still running"):
        asyncio.run(eng.rollback(store.create(1, ["a"], canary=[]), "too early"))


class SlowDevices(ScriptedDevices):
    """Installs that take a while, counted while they run; endpoints in `offline` are not registered."""

    def __init__(self, behaviour, offline=()):
        super().__init__(behaviour)
        self.offline_now = set(offline)
        self.now = self.peak = 0

    def offline(self, endpoint):
        return "not registered" if endpoint in self.offline_now else None

    async def install(self, endpoint, package, name, version, progress=None):
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(0.01)
        self.now -= 1
        return await super().install(endpoint, package, name, version, progress)


def test_stages_run_in_order_at_the_concurrency_and_offline_devices_wait(store):
    names = ["d%02d" % i for i in range(20)]
    devices = SlowDevices({n: "ok" for n in names}, offline=["d19"])
    eng = engine(store, devices)
    dep_id = store.create(1, names, canary=[], stages=[10, 50], concurrency=3)

    async def scenario():
        dep = await eng.run(dep_id)
        assert [(s["label"], s["devices"], s["state"]) for s in dep["stage_list"]] == \
            [("10%", 2, "passed"), ("50%", 8, "passed"), ("100%", 10, "done")]
        assert devices.peak == 3 and dep["state"] == "completed" and "1 waiting" in dep["reason"]
        assert states(dep) == dict({n: "active" for n in names[:19]}, d19="waiting")
        order = [h["endpoint"] for h in store.history(dep_id) if h["state"] == "active"]
        assert set(order[:2]) == set(names[:2]) and set(order[2:10]) == set(names[2:10])    # stage by stage
        devices.offline_now.clear()
        await eng.registered("d19")                # it registers again
        return store.get(dep_id)

    dep = asyncio.run(scenario())
    assert states(dep)["d19"] == "active" and dep["reason"] == ""


def test_a_restarted_engine_resumes_at_its_stage(store):
    names = ["a", "b", "c", "d"]
    dep_id = store.create(1, names, canary=[], stages=[50], concurrency=2)
    for n in names[:2]:                       # stage 0 finished before the restart
        store.set_device(dep_id, n, "active", "", variant_id=7)
    store.set_stage(dep_id, 0, "passed", "passed: 0 of 2 failed")
    store.db.execute("UPDATE deployments SET stage=1 WHERE id=?", (dep_id,))
    devices = ScriptedDevices({n: "ok" for n in names})
    dep = asyncio.run(engine(store, devices).run(dep_id))
    assert dep["state"] == "completed" and states(dep) == {n: "active" for n in names}
    assert [e for e, _ in devices.installs] == ["c", "d"]


def test_a_gate_over_its_limit_halts_and_rolls_back_the_earlier_stages(store):
    names = ["d%d" % i for i in range(10)]
    devices = ScriptedDevices(dict({n: "ok" for n in names}, d3="selftest-fails", d4="selftest-fails"))
    dep_id = store.create(1, names, canary=[], stages=[20, 50], concurrency=2, gates={"max_failed": 34})
    dep = asyncio.run(engine(store, devices).run(dep_id))
    # stage 0 (d0, d1) passes; stage 1 (d2-d4): 2 of 3 failed > 1 allowed -> halted, d0-d2 rolled back
    assert dep["state"] == "halted"
    assert "stage 1 (50%) gate: 2 of 3 failed (2 selftest: d3, d4), 1 allowed" in dep["reason"]
    assert [s["state"] for s in dep["stage_list"]] == ["passed", "halted", "pending"]
    assert states(dep) == dict({n: "skipped" for n in names[5:]}, d0="rolled_back", d1="rolled_back",
                               d2="rolled_back", d3="failed", d4="failed")
    assert all(devices.active[n]["sha256"] == SHA_OLD for n in names)
