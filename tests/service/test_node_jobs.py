"""Work a node group shares besides rollouts (docs/nodes.md), with real processes on one PostgreSQL: an uploaded
model's compile job is a procrastinate task any node runs (and a live node finishes when the one running it is
SIGKILLed; a single service SIGKILLed mid-compile runs it again when it starts); the HTTP API's device requests
made on one node reach a device whose datagrams reach another."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinymlaas.commands._http import call, upload
from tinymlaas.db import Database
from tinymlaas.paths import mlperf_model
from tinymlaas.service.catalog import Catalog
from tinymlaas.service.node_group import ServeNode, fleet_process, free_port, stop_fleet, wait

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "models"

pytestmark = pytest.mark.xdist_group("e2e")

# The eval set makes the compile last (the reference executor runs every sample, ~4 ms each on this machine):
# long enough to kill the node in the middle of it
EVAL_SAMPLES = 1000


def test_compile_job_any_node_runs_and_a_live_node_finishes_after_sigkill(postgres_url, tmp_path):
    data = tmp_path / "data"
    nodes = {n: ServeNode(n, postgres_url, data, free_port(), tmp_path, False) for n in ("a", "b")}
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", x=rng.random((EVAL_SAMPLES, 49, 10, 1), dtype=np.float32),
             y=rng.integers(0, 12, EVAL_SAMPLES))
    db = Database(postgres_url)
    try:
        for node in nodes.values():
            node.start()
        api = {n: "http://127.0.0.1:%d" % node.http_port for n, node in nodes.items()}
        status, answer = upload(api["a"], "/api/models?wait=0", {"name": "kws", "version": "1"},
                                {"model": mlperf_model("kws"), "eval": tmp_path / "eval.npz"})
        assert status == 202, answer
        job_id = answer["job"]["id"]
        assert answer["job"]["state"] == "queued"
        job = wait(lambda: (lambda j: j if j["state"] == "running" else None)(
            call(api["b"], "GET", "/api/compile-jobs/%d" % job_id)[1]), 30, "a node taking the compile job")
        runner = nodes[job["node"]]
        runner.stop(signal.SIGKILL)             # mid-compile
        other = next(n for n in nodes.values() if n is not runner)
        done = wait(lambda: (lambda j: j if j["state"] in ("done", "failed") else None)(
            call(api[other.name], "GET", "/api/compile-jobs/%d" % job_id)[1]), 90, "the other node's retry")
        assert done["state"] == "done", done
        assert done["node"] == other.name and done["attempts"] == 2, done
        assert done["variants"] >= 1 and not done["errors"], done
        assert "compiles job %d" % job_id in other.log.read_text()
        # registered once, with its variants and the eval set's accuracy; the upload's files are gone
        models = db.query("SELECT id FROM models WHERE name='kws'")
        assert len(models) == 1 and models[0]["id"] == done["model_id"]
        status, model = call(api[other.name], "GET", "/api/models/kws")
        assert status == 200 and any(v["accuracy"] is not None for v in model["variants"]), model
        assert not os.listdir(data / "uploads")
        # a second upload of the same name and version is refused before anything is queued; without ?wait=0 the
        # answer comes once the job is over, as `models add --server` expects
        status, answer = upload(api[other.name], "/api/models", {"name": "kws", "version": "1"},
                                {"model": mlperf_model("kws")})
        assert status == 400 and "already exists" in answer["error"], answer
        status, answer = upload(api[other.name], "/api/models", {"name": "kws", "version": "2"},
                                {"model": mlperf_model("kws")})
        assert status == 201 and answer["job"]["state"] == "done" and answer["variants"], answer
        jobs = call(api[other.name], "GET", "/api/compile-jobs")[1]
        assert [j["state"] for j in jobs] == ["done", "done"], jobs
    finally:
        for node in nodes.values():
            node.stop()
        db.close()
        if os.environ.get("SHOW_NODE_LOGS"):
            for node in nodes.values():
                sys.stdout.write(node.log.read_text()[-4000:])


def test_single_service_killed_mid_compile_runs_the_job_again_at_its_start(tmp_path):
    data = tmp_path / "data"
    n = EVAL_SAMPLES // 2
    np.savez(tmp_path / "eval.npz", x=np.zeros((n, 49, 10, 1), np.float32), y=np.zeros(n, int))
    http_port = free_port(socket.SOCK_STREAM)
    api = "http://127.0.0.1:%d" % http_port
    argv = [sys.executable, "-m", "tinymlaas", "serve", "--data", str(data), "--coap-port", str(free_port()),
            "--http-port", str(http_port)]

    def start():
        log = tmp_path / ("serve-%d.log" % len(list(tmp_path.glob("serve-*.log"))))
        proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait(lambda: "API on" in log.read_text() or proc.poll() is not None, 60, "the service")
        assert proc.poll() is None, log.read_text()[-3000:]
        return proc

    proc = start()
    try:
        status, answer = upload(api, "/api/models?wait=0", {"name": "kws"},
                                {"model": mlperf_model("kws"), "eval": tmp_path / "eval.npz"})
        assert status == 202, answer
        job_id = answer["job"]["id"]
        wait(lambda: call(api, "GET", "/api/compile-jobs/%d" % job_id)[1]["state"] == "running", 30, "the compile")
        proc.kill()
        proc.wait()
        proc = start()
        done = wait(lambda: (lambda j: j if j["state"] in ("done", "failed") else None)(
            call(api, "GET", "/api/compile-jobs/%d" % job_id)[1]), 60, "the job run again")
        assert done["state"] == "done" and done["attempts"] == 2 and done["variants"], done
    finally:
        proc.kill()
        proc.wait()


def test_device_requests_on_one_node_reach_a_device_another_node_owns(postgres_url, tmp_path):
    data = tmp_path / "data"
    catalog = Catalog(postgres_url, data)
    catalog.add(CORPUS / "fc_no_bias_softmax.tflite", "model-a", "1", builds=[("tmlb-int8", "tinyml-mpy", {})])
    catalog.db.close()
    port = free_port()          # one CoAP port for both (SO_REUSEPORT): the kernel picks each device's node
    nodes = {n: ServeNode(n, postgres_url, data, port, tmp_path, True) for n in ("a", "b")}
    db = Database(postgres_url)
    fleet = None
    try:
        for node in nodes.values():
            node.start()
        count = 8
        fleet = fleet_process(port, count, "r", 300, tmp_path / "fleet", tmp_path / "fleet.log")
        wait(lambda: db.query_one("SELECT COUNT(*) AS n FROM devices WHERE capabilities IS NOT NULL")["n"] == count,
             60, "the fleet registered with its capabilities")
        owner = {r["endpoint"]: r["node"] for r in db.query("SELECT endpoint, node FROM devices")}
        # a device of each node, asked through the other node
        for here, there in (("a", "b"), ("b", "a")):
            ep = next(e for e, n in sorted(owner.items()) if n == there)
            api = "http://127.0.0.1:%d" % nodes[here].http_port
            path = "/api/devices/%s/lwm2m/1/0/2" % ep       # the Server object's default pmin
            pmin = 7 if here == "a" else 9
            status, answer = call(api, "PUT", path, {"value": pmin})
            assert status == 200 and answer["code"] == "2.04", answer
            status, answer = call(api, "GET", path)
            assert status == 200 and answer["values"][0]["value"] == pmin, answer
            status, answer = call(api, "GET", "/api/devices/%s/lwm2m/3/0/99" % ep)
            assert status == 502 and answer["code"] == "4.04", answer      # the device's own refusal, passed on
        ep = next(e for e, n in sorted(owner.items()) if n == "b")
        a = "http://127.0.0.1:%d" % nodes["a"].http_port
        status, dep = call(a, "POST", "/api/deployments", {"model": "model-a", "devices": [ep]})
        assert status == 201, dep
        wait(lambda: call(a, "GET", "/api/deployments/%d" % dep["id"])[1]["state"] == "completed", 60, "the install")
        status, answer = call(a, "POST", "/api/devices/%s/infer" % ep, {"input": [[0.5] * 12, [-0.5] * 12]})
        assert status == 200 and answer["model"] == "model-a" and len(answer["results"]) == 2, answer
        assert all(len(r["scores"]) == 6 for r in answer["results"])
        assert "compiles" not in nodes["a"].log.read_text()
    finally:
        stop_fleet(fleet)
        for node in nodes.values():
            node.stop()
        db.close()
