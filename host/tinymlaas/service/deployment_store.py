"""The deployment tables and every write to them (the engine that drives them is deployments.py).

A deployment is split into stages (a canary stage, then cumulative percentages of the fleet, e.g. 1, 10, 50,
100 %); each device belongs to one stage and each stage has a row with its gate's outcome. All of it is in the
database, written before the step it records starts, so a service that restarts (or, later, another node)
resumes a running rollout from the tables alone.
"""

import json
import math
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
# Staged rollouts (a component of its own, so its versions never collide with other additions to "deployments").
# A deployment made before this has one stage of all its devices and concurrency 1: what it was.
migration(
    "rollouts",
    1,
    "ALTER TABLE deployments ADD COLUMN stages TEXT NOT NULL DEFAULT '[100]'",
    "ALTER TABLE deployments ADD COLUMN stage INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE deployments ADD COLUMN concurrency INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE deployments ADD COLUMN gates TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE deployment_devices ADD COLUMN stage INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE deployment_devices ADD COLUMN failure TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE deployment_stages (
        deployment_id INTEGER NOT NULL REFERENCES deployments(id),
        stage INTEGER NOT NULL,
        label TEXT NOT NULL,
        devices INTEGER NOT NULL,
        state TEXT NOT NULL,
        gate TEXT NOT NULL DEFAULT '',
        counts TEXT NOT NULL DEFAULT '{}',
        started_at REAL,
        finished_at REAL,
        PRIMARY KEY (deployment_id, stage))""",
    "CREATE INDEX deployment_devices_endpoint ON deployment_devices(endpoint, state)",
    "CREATE INDEX deployment_events_deployment ON deployment_events(deployment_id, id)",
)

# waiting: the device was offline (not registered, or a queue-mode device asleep) at its turn; it gets the update
# when it next registers or sends an Update.
DEVICE_STATES = ("queued", "waiting", "delivering", "verifying", "active", "failed", "rolled_back", "skipped")
FINAL_DEVICE_STATES = ("active", "failed", "rolled_back", "skipped")
DEPLOYMENT_STATES = ("running", "completed", "halted", "failed")
STAGE_STATES = ("pending", "running", "passed", "halted", "done")
# What a failed device's `failure` says went wrong. Gates count all but "unfit" (no variant fits the device:
# nothing about the model's health).
FAILURES = ("unfit", "unreachable", "delivery", "selftest", "gone", "inference", "rollback")
HEALTH_FAILURES = ("unreachable", "delivery", "selftest", "gone", "inference")
DEFAULT_GATES = {"max_failed": 0.0, "soak": 0.0}


class DeploymentError(RuntimeError):
    pass


def check_stages(stages):
    """Percentages of the fleet each stage reaches (cumulative): increasing, in (0, 100]; 100 is added when the
    last is below it. -> the list."""
    try:
        out = [float(s) for s in stages]
    except (TypeError, ValueError):
        raise DeploymentError("stages must be percentages, e.g. 1,10,50,100") from None
    if not out:
        return [100.0]
    if any(not 0 < s <= 100 for s in out) or any(b <= a for a, b in zip(out, out[1:])):
        raise DeploymentError("stages must be increasing percentages in (0, 100], got %s" % ",".join(map(str, stages)))
    return out + [100.0] if out[-1] < 100 else out


def stage_bounds(n, stages, first=0):
    """Cumulative device counts per stage for n devices ordered by position, the first `first` being the canary
    stage already; a stage that would add nobody is dropped. -> [(label, end position)]."""
    out = [("canary", first)] if first else []
    done = first
    for pct in stages:
        end = min(n, max(done + 1, math.ceil(n * pct / 100 - 1e-9)))
        if end > done:
            out.append(("%g%%" % pct, end))
            done = end
    return out


class DeploymentStore:
    def __init__(self, db):
        self.db = db

    def create(self, model_id, endpoints, canary, stages=(100,), concurrency=1, gates=None):
        stages = check_stages(stages)
        gates = dict(DEFAULT_GATES, **(gates or {}))
        now = time.time()
        order = list(canary) + [e for e in endpoints if e not in canary]
        bounds = stage_bounds(len(order), stages, first=len(canary))
        with self.db.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO deployments (model_id, targets, canary, state, created_at, updated_at, stages, "
                "concurrency, gates) VALUES (?,?,?,?,?,?,?,?,?) RETURNING id",
                (model_id, json.dumps(list(endpoints)), json.dumps(list(canary)), "running", now, now,
                 json.dumps(stages), int(concurrency), json.dumps(gates)),
            )
            # RETURNING, not cursor.lastrowid: psycopg has no lastrowid for PostgreSQL. fetchall() so SQLite
            # finishes the statement before the next one in this transaction.
            dep_id = cur.fetchall()[0][0]
            start = 0
            for k, (label, end) in enumerate(bounds):
                tx.execute("INSERT INTO deployment_stages (deployment_id, stage, label, devices, state) "
                           "VALUES (?,?,?,?,?)", (dep_id, k, label, end - start, "pending"))
                for pos in range(start, end):
                    ep = order[pos]
                    tx.execute(
                        "INSERT INTO deployment_devices (deployment_id, endpoint, position, canary, state, updated_at, "
                        "stage) VALUES (?,?,?,?,?,?,?)", (dep_id, ep, pos, 1 if ep in canary else 0, "queued", now, k))
                    tx.execute("INSERT INTO deployment_events (deployment_id, endpoint, state, message, at) "
                               "VALUES (?,?,?,?,?)", (dep_id, ep, "queued", "stage %d (%s)" % (k, label), now))
                start = end
        return dep_id

    def header(self, dep_id):
        """The deployment's own row (no devices), with stages and gates decoded."""
        row = self.db.query_one("SELECT d.*, m.name AS model, m.version AS model_version FROM deployments d "
                                "LEFT JOIN models m ON m.id = d.model_id WHERE d.id=?", (dep_id,))
        if row is None:
            raise DeploymentError("unknown deployment %r" % (dep_id,))
        for k in ("targets", "canary", "stages", "gates"):
            row[k] = json.loads(row[k])
        row["gates"] = dict(DEFAULT_GATES, **row["gates"])
        return row

    def state(self, dep_id):
        row = self.db.query_one("SELECT state FROM deployments WHERE id=?", (dep_id,))
        if row is None:
            raise DeploymentError("unknown deployment %r" % (dep_id,))
        return row["state"]

    def get(self, dep_id):
        # with the model's name and version: what a listing shows (the id means nothing to a user)
        row = self.header(dep_id)
        row["devices"] = self.devices(dep_id)
        row["stage_list"] = self.stages(dep_id)
        return row

    def list(self):
        return [self.get(r["id"]) for r in self.db.query("SELECT id FROM deployments ORDER BY id")]

    def devices(self, dep_id, stage=None, states=None):
        sql, args = "SELECT * FROM deployment_devices WHERE deployment_id=?", [dep_id]
        if stage is not None:
            sql, args = sql + " AND stage=?", args + [stage]
        if states:
            sql, args = sql + " AND state IN (%s)" % ",".join("?" * len(states)), args + list(states)
        rows = self.db.query(sql + " ORDER BY position", args)
        for r in rows:
            r["previous"] = json.loads(r["previous"] or "{}")
        return rows

    def stages(self, dep_id):
        rows = self.db.query("SELECT * FROM deployment_stages WHERE deployment_id=? ORDER BY stage", (dep_id,))
        for r in rows:
            r["counts"] = json.loads(r["counts"] or "{}")
        if not rows:     # a deployment made before staged rollouts: one stage of everything
            n = self.db.query_one("SELECT COUNT(*) AS n FROM deployment_devices WHERE deployment_id=?", (dep_id,))["n"]
            self.db.execute("INSERT INTO deployment_stages (deployment_id, stage, label, devices, state) "
                            "VALUES (?,?,?,?,?)", (dep_id, 0, "100%", n, "pending"))
            return self.stages(dep_id)
        return rows

    def history(self, dep_id):
        return self.db.query("SELECT endpoint, state, message, at FROM deployment_events WHERE deployment_id=? "
                             "ORDER BY id", (dep_id,))

    def waiting_for(self, endpoint):
        """Deployment ids (oldest first) in which `endpoint` waits for its next registration."""
        return [r["deployment_id"] for r in self.db.query(
            "SELECT dd.deployment_id FROM deployment_devices dd JOIN deployments d ON d.id = dd.deployment_id "
            "WHERE dd.endpoint=? AND dd.state='waiting' AND d.state IN ('running', 'completed') "
            "ORDER BY dd.deployment_id", (endpoint,))]

    def set_device(self, dep_id, endpoint, state, reason="", expect=None, **fields):
        """Write a device's state (and its event). With `expect` (states) only when it is in one of them: ->
        whether it was written, so two workers (or nodes) never both take the same device."""
        assert state in DEVICE_STATES, state
        assert fields.get("failure", "") in ("",) + FAILURES
        now = time.time()
        sets = ["state=?", "reason=?", "updated_at=?"]
        vals = [state, reason, now]
        if state != "failed":
            fields.setdefault("failure", "")
        for k, v in fields.items():
            sets.append("%s=?" % k)
            vals.append(json.dumps(v) if k == "previous" else v)
        where = "deployment_id=? AND endpoint=?"
        args = [dep_id, endpoint]
        if expect:
            where += " AND state IN (%s)" % ",".join("?" * len(expect))
            args += list(expect)
        with self.db.transaction() as tx:
            cur = tx.execute("UPDATE deployment_devices SET %s WHERE %s" % (", ".join(sets), where), vals + args)
            if expect and cur.rowcount == 0:
                return False
            tx.execute("INSERT INTO deployment_events (deployment_id, endpoint, state, message, at) VALUES (?,?,?,?,?)",
                       (dep_id, endpoint, state, reason, now))
        return True

    def set_deployment(self, dep_id, state, reason="", stage=None):
        assert state in DEPLOYMENT_STATES, state
        extra, args = ("", ()) if stage is None else (", stage=?", (stage,))
        self.db.execute("UPDATE deployments SET state=?, reason=?, updated_at=?%s WHERE id=?" % extra,
                        (state, reason, time.time()) + args + (dep_id,))

    def set_stage(self, dep_id, stage, state, gate=None, counts=None):
        assert state in STAGE_STATES, state
        now = time.time()
        sets, vals = ["state=?"], [state]
        if state == "running":
            sets.append("started_at=COALESCE(started_at, ?)")
            vals.append(now)
        if state in ("passed", "halted", "done"):
            sets.append("finished_at=?")
            vals.append(now)
        if gate is not None:
            sets.append("gate=?")
            vals.append(gate)
        if counts is not None:
            sets.append("counts=?")
            vals.append(json.dumps(counts))
        # the stage's own row keeps its times and gate (the events are the devices')
        self.db.execute("UPDATE deployment_stages SET %s WHERE deployment_id=? AND stage=?" % ", ".join(sets),
                        vals + [dep_id, stage])
