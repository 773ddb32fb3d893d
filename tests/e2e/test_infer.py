"""Inference from numbers (service/inference.py, behind `tinymlaas infer` and POST /api/devices/<ep>/infer): a real
MicroPython device over LwM2M runs the MLPerf Tiny KWS model; what it answers is checked against the host's
reference executor on the same quantized input, and bad input is refused before anything is sent."""

import asyncio

import numpy as np
import pytest

from tinymlaas.blob import reference
from tinymlaas.blob.reader import parse
from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.errors import UserError
from tinymlaas.paths import mlperf_model
from tinymlaas.service.core import Service
from tinymlaas.service.inference import InferenceError

from e2e_helpers import wait_for

pytestmark = pytest.mark.xdist_group("e2e")

LABELS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown"]


def reported(svc, endpoint):
    reg = svc.server.find(endpoint)
    return reg is not None and reg.capabilities


def test_float_inputs_are_quantized_run_on_the_device_and_dequantized(tmp_path):
    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % svc.server.port, "kws-1", profile="esp32",
                             data_dir=tmp_path / "dev").start()
        try:
            model, _ = svc.catalog.add(mlperf_model("kws"), "kws", "1", labels=LABELS,
                                       builds=[("tmlb-int8", "tinyml-mpy", {})])
            await wait_for(lambda: reported(svc, "kws-1"), what="capabilities")
            with pytest.raises(InferenceError, match="runs no model; deploy one first"):
                await svc.inference.run("kws-1", np.zeros(490))
            dep = await svc.engine.run(svc.create_deployment("kws", ["kws-1"]))
            assert dep["devices"][0]["state"] == "active", dep

            blob = parse(svc.registry.artifact(svc.registry.variants(model)[0]))
            t_in, t_out = blob.tensors[blob.inputs[0]], blob.tensors[blob.outputs[0]]
            x = np.random.default_rng(3).normal(0, 40 * t_in.scale, (3, 49, 10, 1))   # a batch of 3, as floats
            answer = await svc.inference.run("kws-1", x.tolist())
            assert (answer["model"], answer["input"]) == ("kws", "1x49x10x1 int8")
            assert len(answer["results"]) == 3
            q = np.clip(np.round(x / t_in.scale) + t_in.zero_point, -128, 127).astype(np.int8)
            ex = reference.Executor(blob)
            for row, qx in zip(answer["results"], q):
                want = (np.asarray(ex.run([qx.reshape(t_in.shape)])[0]).reshape(-1).astype(np.float64)
                        - t_out.zero_point) * t_out.scale
                assert np.allclose(row["scores"], want, atol=1e-6)
                assert row["class"] == int(np.argmax(want)) and row["label"] == LABELS[row["class"]]
                assert row["latency_us"] > 0
            print("KWS round trip per inference (ms):", [r["round_trip_ms"] for r in answer["results"]],
                  "device latency (ms):", [r["latency_us"] / 1000 for r in answer["results"]])

            raw = await svc.inference.run("kws-1", q[0].reshape(-1).tolist(), raw=True)    # int8 as they are
            assert raw["results"][0]["scores"] == answer["results"][0]["scores"]

            for values, raw, message in ((np.zeros(489), False, "takes 490 values"),
                                         (np.full(490, 200), True, "is not a int8"),
                                         (np.full(490, 0.5), True, "is not a int8"),
                                         ([[float("nan")] * 490], False, "NaN")):
                with pytest.raises(UserError, match=message):
                    await svc.inference.run("kws-1", values, raw=raw)
        finally:
            await asyncio.to_thread(dev.stop)
            await svc.stop()

    asyncio.run(main())
