"""A group of service nodes on one PostgreSQL (docs/nodes.md), with real processes: two `tinymlaas serve --node`
sharing one CoAP port through SO_REUSEPORT, a `tinymlaas fleet emulate` fleet of MicroPython devices, the rollout a
procrastinate job. The node that runs the rollout is SIGKILLed mid-way: the other node retries its stalled job and
finishes it, every device "active" runs the model it is recorded with, and the killed node, restarted, answers
the devices' Updates without one of them registering again."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tinymlaas.db import Database
from tinymlaas.service.catalog import Catalog
from tinymlaas.service.core import normalize_capabilities

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "models"
COUNT = 20
LIFETIME = 20       # the devices send an Update every ~half of it: a dead node's devices reach the live one soon

pytestmark = pytest.mark.xdist_group("e2e")


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("timed out (%g s) waiting for %s" % (timeout, what))
        time.sleep(0.2)


class Node:
    def __init__(self, name, url, data, coap_port, tmp):
        self.name, self.url, self.data, self.coap_port = name, url, data, coap_port
        self.http_port = free_port(socket.SOCK_STREAM)
        self.log = tmp / ("node-%s.log" % name)
        self.proc = None

    def start(self):
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinymlaas", "serve", "--db", self.url, "--data", str(self.data), "--node",
             self.name, "--reuse-port", "--coap-host", "127.0.0.1", "--coap-port", str(self.coap_port),
             "--http-port", str(self.http_port)], stdout=out, stderr=subprocess.STDOUT)
        wait(lambda: "API on" in self.log.read_text() or self.proc.poll() is not None, 60, "node %s" % self.name)
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        return self

    def api(self, path, body=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port, path),
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


def test_sigkilled_node_rollout_finished_by_the_other_and_restart_without_reregistration(postgres_url, tmp_path):
    data = tmp_path / "data"         # one data directory for the group: artifacts, packages, signing keys
    catalog = Catalog(postgres_url, data)
    catalog.add(CORPUS / "fc_no_bias_softmax.tflite", "model-a", "1", builds=[("tmlb-int8", "tinyml-mpy", {})])
    catalog.db.close()
    db = Database(postgres_url)
    port = free_port()
    nodes = {n: Node(n, postgres_url, data, port, tmp_path) for n in ("a", "b")}
    fleet = None
    try:
        for node in nodes.values():
            node.start()
        fleet = subprocess.Popen(
            [sys.executable, "-m", "tinymlaas", "fleet", "emulate", "--server", "coap://127.0.0.1:%d" % port,
             "--count", str(COUNT), "--prefix", "g", "--lifetime", str(LIFETIME), "--per-process", str(COUNT),
             "--data-dir", str(tmp_path / "fleet")], stdout=open(tmp_path / "fleet.log", "w"), stderr=subprocess.STDOUT)
        wait(lambda: db.query_one("SELECT COUNT(*) AS n FROM devices WHERE capabilities IS NOT NULL")["n"] == COUNT,
             60, "the fleet registered with its capabilities")
        owners = {r["node"]: r["n"] for r in db.query("SELECT node, COUNT(*) AS n FROM devices GROUP BY node")}
        assert set(owners) == {"a", "b"}, owners          # the kernel spread the devices over the group

        names = ["g-%04d" % i for i in range(COUNT)]
        dep = nodes["a"].api("/api/deployments", {"model": "model-a", "devices": names, "stages": [25, 100],
                                                  "concurrency": 2})
        dep_id = dep["id"]

        def active():
            return db.query_one("SELECT COUNT(*) AS n FROM deployment_devices WHERE deployment_id=? "
                                "AND state='active'", (dep_id,))["n"]

        runner = wait(lambda: next((n for n in nodes.values() if "claims deployment %d" % dep_id
                                    in n.log.read_text()), None), 30, "a node claiming the rollout")
        wait(lambda: active() >= 2, 60, "the first installs")
        assert active() < COUNT
        runner.stop(signal.SIGKILL)                   # mid-rollout, no goodbye
        killed_at = time.time()
        other = next(n for n in nodes.values() if n is not runner)
        wait(lambda: db.query_one("SELECT state FROM deployments WHERE id=?", (dep_id,))["state"] != "running",
             75, "the other node finishing the rollout")
        final = other.api("/api/deployments/%d" % dep_id)
        assert final["state"] == "completed", final["reason"]
        # the dead node's devices wait for their next Update, which now reaches the live node: it installs them
        waiting = [d for d in final["devices"] if d["state"] == "waiting"]
        assert {d["state"] for d in final["devices"]} <= {"active", "waiting"}, final["devices"]
        wait(lambda: active() == COUNT, 2 * LIFETIME, "the waiting devices' installs (%d)" % len(waiting))
        assert "claims deployment %d" % dep_id in other.log.read_text()
        # no false state: each device reports (its TinyML object, read after the install) the model it is recorded with
        sha = db.query_one("SELECT artifact_sha256 FROM variants ORDER BY id DESC LIMIT 1")["artifact_sha256"]
        for row in db.query("SELECT endpoint, capabilities FROM devices"):
            caps = normalize_capabilities(json.loads(row["capabilities"]))
            assert caps.get("model_sha256") == sha, (row["endpoint"], caps)

        # the killed node comes back: it answers its devices' Updates from the database, nobody registers again
        registered = db.query_one("SELECT COUNT(*) AS n FROM device_events WHERE event='registered'")["n"]
        runner.start()
        updated_since = "SELECT COUNT(DISTINCT endpoint) AS n FROM device_events WHERE event='updated' AND at > ?"
        wait(lambda: db.query_one(updated_since, (time.time() - 1,))["n"] and
             db.query_one(updated_since, (killed_at,))["n"] == COUNT, 2 * LIFETIME, "every device's Update")
        assert db.query_one("SELECT COUNT(*) AS n FROM device_events WHERE event='registered'")["n"] == registered
        assert fleet.poll() is None
    finally:
        if fleet is not None and fleet.poll() is None:
            fleet.send_signal(signal.SIGTERM)
            try:
                fleet.wait(30)
            except subprocess.TimeoutExpired:
                fleet.kill()
        for node in nodes.values():
            node.stop()
        db.close()
        for node in nodes.values():
            if os.environ.get("SHOW_NODE_LOGS"):
                print(node.log.read_text()[-4000:])
