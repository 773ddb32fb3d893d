"""Deployments: install a model on one device, a list, or every device with a tag, with a staged rollout.

Every state change is written to the database before the next step starts, so a service killed mid-deployment
resumes where it stopped (`DeploymentEngine.resume`). Per-device states:

    queued ─► delivering ─► verifying ─► active
       │           │             └──────► failed        (device self-test failed; device kept its previous model)
       │           └────────────────────► failed        (delivery error, device gone)
       └─► skipped   (deployment halted before this device's turn)     active ─► rolled_back (halt after a failure)

The device's own golden-vector self-test decides success: "active" is only written once the device reports the
new model's SHA-256 as its active model.
"""

import asyncio
import json
import time

from ..db import migration
from ..registry import models as _registry  # noqa: F401  (the models and variants tables joined and read below)

migration(
    "deployments",
    1,
    """CREATE TABLE deployments (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL,
        targets TEXT NOT NULL,
        canary TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL)""",
    """CREATE TABLE deployment_devices (
        deployment_id INTEGER NOT NULL REFERENCES deployments(id),
        endpoint TEXT NOT NULL,
        position INTEGER NOT NULL,
        canary INTEGER NOT NULL,
        state TEXT NOT NULL,
        variant_id INTEGER,
        previous TEXT NOT NULL DEFAULT '{}',
        reason TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL,
        PRIMARY KEY (deployment_id, endpoint))""",
    """CREATE TABLE deployment_events (
        id INTEGER PRIMARY KEY,
        deployment_id INTEGER NOT NULL,
        endpoint TEXT NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL,
        at REAL NOT NULL)""",
)

DEVICE_STATES = ("queued", "delivering", "verifying", "active", "failed", "rolled_back", "skipped")
FINAL_DEVICE_STATES = ("active", "failed", "rolled_back", "skipped")
DEPLOYMENT_STATES = ("running", "completed", "halted", "failed")


class DeploymentError(RuntimeError):
    pass


class DeliveryError(RuntimeError):
    """Raised by a DeviceChannel when a package cannot be delivered or installed; `result` is the LwM2M /5/0/5
    Update Result the device reported, if any."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


class DeviceChannel:
    """How the engine reaches devices (implemented on the LwM2M server by service.core)."""

    async def install(self, endpoint, package, name, version, progress=None):
        """Deliver `package` and execute the update; return the device's installed-model report (dict with at
        least sha256) once it activated the model, or raise DeliveryError."""
        raise NotImplementedError

    async def installed(self, endpoint):
        """The device's currently active model ({"sha256": ..., "name": ..., "version": ...}) or None."""
        raise NotImplementedError


class DeploymentStore:
    def __init__(self, db):
        self.db = db

    def create(self, model_id, endpoints, canary):
        now = time.time()
        with self.db.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO deployments (model_id, targets, canary, state, created_at, updated_at) VALUES (?,?,?,?,?,?) "
                "RETURNING id",
                (model_id, json.dumps(list(endpoints)), json.dumps(list(canary)), "running", now, now),
            )
            # RETURNING, not cursor.lastrowid: psycopg has no lastrowid for PostgreSQL. fetchall() so SQLite
            # finishes the statement before the next one in this transaction.
            dep_id = cur.fetchall()[0][0]
            order = list(canary) + [e for e in endpoints if e not in canary]
            for pos, ep in enumerate(order):
                tx.execute(
                    "INSERT INTO deployment_devices (deployment_id, endpoint, position, canary, state, updated_at) "
                    "VALUES (?,?,?,?,?,?)", (dep_id, ep, pos, 1 if ep in canary else 0, "queued", now))
                tx.execute("INSERT INTO deployment_events (deployment_id, endpoint, state, message, at) VALUES (?,?,?,?,?)",
                           (dep_id, ep, "queued", "", now))
        return dep_id

    def get(self, dep_id):
        # with the model's name and version: what a listing shows (the id means nothing to a user)
        row = self.db.query_one("SELECT d.*, m.name AS model, m.version AS model_version FROM deployments d "
                                "LEFT JOIN models m ON m.id = d.model_id WHERE d.id=?", (dep_id,))
        if row is None:
            raise DeploymentError("unknown deployment %r" % (dep_id,))
        row["targets"] = json.loads(row["targets"])
        row["canary"] = json.loads(row["canary"])
        row["devices"] = self.devices(dep_id)
        return row

    def list(self):
        return [self.get(r["id"]) for r in self.db.query("SELECT id FROM deployments ORDER BY id")]

    def devices(self, dep_id):
        rows = self.db.query("SELECT * FROM deployment_devices WHERE deployment_id=? ORDER BY position", (dep_id,))
        for r in rows:
            r["previous"] = json.loads(r["previous"] or "{}")
        return rows

    def history(self, dep_id):
        return self.db.query("SELECT endpoint, state, message, at FROM deployment_events WHERE deployment_id=? "
                             "ORDER BY id", (dep_id,))

    def set_device(self, dep_id, endpoint, state, reason="", **fields):
        assert state in DEVICE_STATES, state
        now = time.time()
        sets = ["state=?", "reason=?", "updated_at=?"]
        vals = [state, reason, now]
        for k, v in fields.items():
            sets.append("%s=?" % k)
            vals.append(json.dumps(v) if k == "previous" else v)
        with self.db.transaction() as tx:
            tx.execute("UPDATE deployment_devices SET %s WHERE deployment_id=? AND endpoint=?" % ", ".join(sets),
                       vals + [dep_id, endpoint])
            tx.execute("INSERT INTO deployment_events (deployment_id, endpoint, state, message, at) VALUES (?,?,?,?,?)",
                       (dep_id, endpoint, state, reason, now))

    def set_deployment(self, dep_id, state, reason=""):
        assert state in DEPLOYMENT_STATES, state
        self.db.execute("UPDATE deployments SET state=?, reason=?, updated_at=? WHERE id=?",
                        (state, reason, time.time(), dep_id))


class DeploymentEngine:
    """Drives deployments to completion. `plan(deployment, endpoint)` returns (variant, package bytes, name, version) for the
    device or raises DeploymentError with the reason it cannot get one (nothing fits). `refresh(endpoint)`, a
    coroutine, re-reads what the device reports (free heap and flash, its model) right before the plan decides."""

    def __init__(self, store, channel, plan, rollback_package=None, log=None, refresh=None):
        self.store = store
        self.channel = channel
        self.plan = plan
        self.rollback_package = rollback_package   # (endpoint, previous dict) -> (package, name, version) or None
        self.refresh = refresh
        self.log = log or (lambda msg: None)

    async def run(self, dep_id, progress=None):
        """Run (or resume) a deployment until every device is in a final state."""
        dep = self.store.get(dep_id)
        if dep["state"] != "running":
            return dep
        for dev in dep["devices"]:
            if dev["state"] in ("delivering", "verifying"):
                await self._resume_device(dep_id, dev)
        for dev in self.store.devices(dep_id):
            if self.store.get(dep_id)["state"] != "running":     # halted (halt()) while the one before installed
                return self.store.get(dep_id)
            if dev["state"] != "queued":
                continue
            ok = await self._deploy_device(dep_id, dev["endpoint"], progress)
            if not ok and dev["canary"]:
                await self._halt(dep_id, "canary %s failed" % dev["endpoint"])
                return self.store.get(dep_id)
        if self.store.get(dep_id)["state"] != "running":
            return self.store.get(dep_id)
        devs = self.store.devices(dep_id)
        failed = [d["endpoint"] for d in devs if d["state"] == "failed"]
        if failed and len(failed) == len(devs):
            self.store.set_deployment(dep_id, "failed", "every device failed")
        else:
            self.store.set_deployment(dep_id, "completed", "%d failed" % len(failed) if failed else "")
        return self.store.get(dep_id)

    async def _deploy_device(self, dep_id, endpoint, progress):
        if self.refresh:
            await self.refresh(endpoint)
        try:
            # In a thread: planning may compile a new variant (seconds of TensorFlow) while the LwM2M server keeps
            # answering devices on the event loop.
            variant, package, name, version = await asyncio.to_thread(self.plan, self.store.get(dep_id), endpoint)
        except DeploymentError as e:
            self.store.set_device(dep_id, endpoint, "failed", str(e))
            return False
        try:
            previous = await self.channel.installed(endpoint) or {}
        except DeliveryError as e:
            self.store.set_device(dep_id, endpoint, "failed", "device unreachable: %s" % e)
            return False
        self.store.set_device(dep_id, endpoint, "delivering", "%d bytes" % len(package),
                              variant_id=variant["id"], previous=previous)
        try:
            report = await self.channel.install(endpoint, package, name, version,
                                                progress=(lambda done, total: progress(endpoint, done, total)) if progress else None)
        except DeliveryError as e:
            if asyncio.current_task().cancelling():
                # The service is shutting down: the transfer broke because of us, not the device. Leave the
                # state as it is so the next start resumes it.
                raise asyncio.CancelledError() from None
            self.store.set_device(dep_id, endpoint, "failed", str(e))
            return False
        self.store.set_device(dep_id, endpoint, "verifying", "device reports %s" % (report or {}).get("sha256", "?")[:12])
        expected = variant["artifact_sha256"]
        if (report or {}).get("sha256") != expected:
            self.store.set_device(dep_id, endpoint, "failed",
                                  "device's active model is %s, expected %s: its self-test kept the previous model"
                                  % ((report or {}).get("sha256", "none")[:12], expected[:12]))
            return False
        self.store.set_device(dep_id, endpoint, "active", "self-test passed on device")
        return True

    async def _resume_device(self, dep_id, dev):
        """After a restart: ask the device what it runs now instead of trusting our last write."""
        endpoint = dev["endpoint"]
        try:
            now = await self.channel.installed(endpoint) or {}
        except DeliveryError as e:
            self.store.set_device(dep_id, endpoint, "queued", "resumed after restart; device unreachable (%s)" % e)
            return
        variant_sha = None
        if dev["variant_id"] is not None:
            from_db = self.store.db.query_one("SELECT artifact_sha256 FROM variants WHERE id=?", (dev["variant_id"],))
            variant_sha = from_db and from_db["artifact_sha256"]
        if variant_sha and now.get("sha256") == variant_sha:
            self.store.set_device(dep_id, endpoint, "active", "resumed after restart: device already runs the model")
        else:
            self.store.set_device(dep_id, endpoint, "queued", "resumed after restart: delivery restarts")

    async def _halt(self, dep_id, reason):
        for dev in self.store.devices(dep_id):
            if dev["state"] == "queued":
                self.store.set_device(dep_id, dev["endpoint"], "skipped", "deployment halted: " + reason)
            elif dev["state"] == "active":
                await self._reinstall_previous(dep_id, dev, reason)
        self.store.set_deployment(dep_id, "halted", reason)

    async def _reinstall_previous(self, dep_id, dev, reason):
        """Put back the model `dev` ran before this deployment; False when there is none this registry has."""
        back = self.rollback_package(dev["endpoint"], dev["previous"]) if self.rollback_package else None
        if back is None:
            return False
        package, name, version = back
        try:
            await self.channel.install(dev["endpoint"], package, name, version)
            self.store.set_device(dep_id, dev["endpoint"], "rolled_back",
                                  "reinstalled %s %s after: %s" % (name, version, reason))
        except DeliveryError as e:
            self.store.set_device(dep_id, dev["endpoint"], "failed", "rollback failed: %s" % e)
        return True

    def halt(self, dep_id, reason):
        """Stop a running deployment (a user's decision): devices not started yet are skipped; one being
        installed finishes first (run() looks at the deployment's state before each device)."""
        dep = self.store.get(dep_id)
        if dep["state"] != "running":
            raise DeploymentError("deployment %s is %s, not running" % (dep_id, dep["state"]))
        for dev in dep["devices"]:
            if dev["state"] == "queued":
                self.store.set_device(dep_id, dev["endpoint"], "skipped", "deployment halted: " + reason)
        self.store.set_deployment(dep_id, "halted", reason)
        return self.store.get(dep_id)

    async def rollback(self, dep_id, reason):
        """Reinstall the previous model on every device this (finished or halted) deployment made active;
        {endpoint: what happened}."""
        dep = self.store.get(dep_id)
        if dep["state"] == "running":
            raise DeploymentError("deployment %s is still running: halt it first" % dep_id)
        done = {}
        for dev in dep["devices"]:
            if dev["state"] == "active":
                if await self._reinstall_previous(dep_id, dev, reason):
                    done[dev["endpoint"]] = next(d["state"] for d in self.store.devices(dep_id)
                                                 if d["endpoint"] == dev["endpoint"])
                else:
                    done[dev["endpoint"]] = "kept: it ran no model this registry has before"
        if not done:
            raise DeploymentError("deployment %s made no device active: nothing to roll back" % dep_id)
        self.store.set_deployment(dep_id, dep["state"], "rolled back: " + reason)
        return done

    async def resume_all(self):
        for row in self.store.db.query("SELECT id FROM deployments WHERE state='running' ORDER BY id"):
            await self.run(row["id"])
