"""Staged rollouts on a real emulated fleet: 50 MicroPython devices in two `micropython` processes (fleet.py) over
real UDP, the service on real SQLite. One fleet for the whole story, to keep it quick:

1. model A to all 50 in stages 10 % / 100 % at concurrency 6: every device active, both gates passed, never more
   than 6 devices between "delivering" and their final state at once (the events' timestamps), and 6 reached;
2. model B, stages 20 % / 100 %: once the first stage's devices run B, one of the two processes is frozen
   (SIGSTOP: its devices stop answering); the gate finds them gone, halts, rolls the others back to A and skips
   the second stage;
3. two devices that registered once and are offline at their turn wait; the rollout completes without them and
   each gets the model when it registers again.
"""

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tinymlaas.devices.fleet import EmulatedFleet
from tinymlaas.service.core import Service

from e2e_helpers import wait_for

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "models"
COUNT = 50
BUILD = [("tmlb-int8", "tinyml-mpy", {})]

pytestmark = pytest.mark.xdist_group("e2e")


def states(dep):
    out = {}
    for d in dep["devices"]:
        out[d["state"]] = out.get(d["state"], 0) + 1
    return out


def most_at_once(history):
    """The most devices between their "delivering" event and their final one at any moment."""
    edges = []
    started = {}
    for h in history:
        if h["state"] == "delivering":
            started[h["endpoint"]] = h["at"]
        elif h["state"] in ("active", "failed") and h["endpoint"] in started:
            edges += [(started.pop(h["endpoint"]), 1), (h["at"], -1)]
    now = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):     # an end before a start at the same instant
        now += step
        peak = max(peak, now)
    return peak


async def deployment_over(svc, dep_id, timeout=90):
    await wait_for(lambda: svc.deployments.state(dep_id) != "running", timeout=timeout, what="deployment %d" % dep_id)
    return svc.deployments.get(dep_id)


def test_staged_rollout_gate_halt_and_a_device_that_comes_back(tmp_path):
    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        svc.engine.gate_timeout = 2.0
        uri = "coap://127.0.0.1:%d" % svc.server.port
        fleet = EmulatedFleet(uri, COUNT, prefix="r", per_vm=COUNT // 2, data_dir=tmp_path / "fleet")
        late = EmulatedFleet(uri, 2, prefix="late", data_dir=tmp_path / "late")
        try:
            fleet.start()
            late.start()
            svc.catalog.add(CORPUS / "fc_no_bias_softmax.tflite", "model-a", "1", builds=BUILD)
            svc.catalog.add(CORPUS / "flatten_dense.tflite", "model-b", "1", builds=BUILD)
            names = fleet.names
            await wait_for(lambda: all(r.capabilities for r in svc.server.devices()) and
                           len(svc.server.devices()) == COUNT + 2, timeout=60, what="the fleet's capabilities")
            await asyncio.to_thread(late.stop)          # de-registered: known, offline
            assert svc.server.find(late.names[0]) is None

            # 1. staged, concurrency honoured; the late devices wait
            a_id = svc.create_deployment("model-a", names + late.names, stages=[10, 100], concurrency=6)
            svc.start_deployment(a_id)
            dep = await deployment_over(svc, a_id)
            assert dep["state"] == "completed" and states(dep) == {"active": COUNT, "waiting": 2}, dep["reason"]
            assert "2 waiting for their next registration" in dep["reason"]
            assert [(s["label"], s["devices"], s["state"]) for s in dep["stage_list"]] == \
                [("10%", 6, "passed"), ("100%", 46, "done")]
            assert dep["stage_list"][0]["gate"].startswith("passed: 0 of 6 failed")
            assert most_at_once(svc.deployments.history(dep["id"])) == 6
            assert max(s["counts"]["peak_in_flight"] for s in dep["stage_list"]) == 6
            a_dep = dep["id"]

            # 3. (first half) a late device registers again: it gets model A, the deployment counts it
            late = EmulatedFleet(uri, 2, prefix="late", data_dir=tmp_path / "late").start()   # the same flash
            await wait_for(lambda: states(svc.deployments.get(a_dep)) == {"active": COUNT + 2}, timeout=60,
                           what="the late devices' install")
            assert svc.deployments.get(a_dep)["reason"] == ""

            # 2. a gate halts and rolls back
            b_id = svc.create_deployment("model-b", names, stages=[20, 100], concurrency=4, soak=3)
            svc.start_deployment(b_id)
            stage0 = set(names[:10])
            frozen = fleet.vms[1]
            await wait_for(lambda: sum(d["state"] == "active" for d in svc.deployments.devices(b_id, stage=0)) == 10,
                           timeout=60, what="the first stage of model B")
            os.kill(frozen.proc.pid, signal.SIGSTOP)
            try:
                dep = await deployment_over(svc, b_id)
            finally:
                os.kill(frozen.proc.pid, signal.SIGCONT)
            by = {d["endpoint"]: d for d in dep["devices"]}
            gone = stage0 & set(frozen.names)
            assert dep["state"] == "halted" and "stage 0 (20%) gate: 5 of 10 failed (5 gone" in dep["reason"]
            assert all(by[e]["state"] == "failed" and by[e]["failure"] == "gone" for e in gone)
            assert all(by[e]["state"] == "rolled_back" for e in stage0 - gone), [by[e]["reason"] for e in stage0]
            assert all(by[e]["state"] == "skipped" for e in names[10:])
            assert [s["state"] for s in dep["stage_list"]] == ["halted", "pending"]
            a_sha = svc.registry.variants(svc.registry.model("model-a"))[0]["artifact_sha256"]
            for e in sorted(stage0 - gone)[:2]:
                assert (await svc.engine.channel.installed(e))["sha256"] == a_sha
        finally:
            await asyncio.to_thread(late.stop)
            await asyncio.to_thread(fleet.stop)
            await svc.stop()

    asyncio.run(main())
