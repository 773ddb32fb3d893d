"""Work a node group shares besides rollouts (docs/nodes.md), with real processes on one PostgreSQL: an uploaded
model's compile job is a procrastinate task any node runs (and a live node finishes when the one running it is
SIGKILLed); the HTTP API's device requests made on one node reach a device whose datagrams reach another."""

import os
import signal
import sys

import numpy as np
import pytest

from tinymlaas.commands._http import call, upload
from tinymlaas.db import Database
from tinymlaas.paths import mlperf_model
from tinymlaas.service.node_group import ServeNode, free_port, wait

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
