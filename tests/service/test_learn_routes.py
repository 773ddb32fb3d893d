"""On-device learning through the service (docs/learning.md "On the service"): a deployment with a trainable head
compiles and installs the model's embedding-output variant with the head config in its package metadata; a
deployment without one keeps the plain variant; bad head configs are refused before anything is created."""

import asyncio
import contextlib
import json
import sys

import numpy as np
import pytest

from tinymlaas.blob.reader import parse
from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.errors import UserError
from tinymlaas.learning.head import decode
from tinymlaas.package import read_package
from tinymlaas.paths import REPO, mlperf_model
from tinymlaas.service.core import Service
from tinymlaas.service.heads import is_embedding_variant

sys.path.insert(0, str(REPO / "tests" / "e2e"))
from e2e_helpers import wait_for  # noqa: E402

pytestmark = pytest.mark.xdist_group("e2e")


@contextlib.asynccontextmanager
async def kws_fleet(tmp_path, endpoint="kws-1"):
    """A Service with KWS registered (its int8 variant) and one emulated ESP32 device that reported itself."""
    svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
    dev = EmulatedDevice("coap://127.0.0.1:%d" % svc.server.port, endpoint, profile="esp32",
                         data_dir=tmp_path / "dev").start()
    try:
        model, _ = svc.catalog.add(mlperf_model("kws"), "kws", "1", builds=[("tmlb-int8", "tinyml-mpy", {})])
        await wait_for(lambda: getattr(svc.server.find(endpoint), "capabilities", None), what="capabilities")
        yield svc, model
    finally:
        await asyncio.to_thread(dev.stop)
        await svc.stop()


def test_head_deployment_installs_the_embedding_variant(tmp_path):
    async def main():
        async with kws_fleet(tmp_path) as (svc, model):
            for head, message in (({"kind": "svm"}, "softmax or ncm"), ({"kind": "ncm", "lr": -1}, "above 0"),
                                  ({"kind": "ncm", "save_every": 0}, "save_every"),
                                  ({"kind": "ncm", "output": 2}, "'head' must be")):
                with pytest.raises(UserError, match=message):
                    svc.create_deployment("kws", ["kws-1"], head=head)
            assert svc.deployments.list() == []

            dep_id = svc.create_deployment("kws", ["kws-1"], head={"kind": "softmax", "lr": 0.02, "save_every": 4})
            dep = await svc.engine.run(dep_id)
            assert dep["devices"][0]["state"] == "active", dep
            variant = svc.registry.variant(dep["devices"][0]["variant_id"])
            assert is_embedding_variant(variant) and variant["report"]["embedding"]["shape"] == [1, 64]
            blob = parse(svc.registry.artifact(variant))
            assert len(blob.outputs) == 2
            assert svc.deployment_view(dep_id)["head"] == {"kind": "softmax", "lr": 0.02, "save_every": 4}
            pkg = read_package(svc.package(model, variant, head=svc.heads.get(dep_id)))
            assert pkg["meta"]["head"] == {"kind": "softmax", "lr": 0.02, "save_every": 4, "output": 1}
            assert len(pkg["vectors"][0][1]) == 2 and len(pkg["vectors"][0][1][1]) == 64
            assert svc.heads.for_variant(variant["id"], "kws-1")["kind"] == "softmax"

            # without a head: the plain variant again, no head in the view
            dep2 = await svc.engine.run(svc.create_deployment("kws", ["kws-1"]))
            plain = svc.registry.variant(dep2["devices"][0]["variant_id"])
            assert dep2["devices"][0]["state"] == "active" and not is_embedding_variant(plain)
            assert len(parse(svc.registry.artifact(plain)).outputs) == 1
            assert svc.deployment_view(dep2["id"])["head"] is None
            assert len(svc.registry.variants(model)) == 2            # the twin compiled once

    asyncio.run(main())


@contextlib.asynccontextmanager
async def api_client(svc, role="operator"):
    """The service's HTTP API on a loopback port (auth on) and a call(method, path, body) -> (status, JSON)."""
    import aiohttp

    from tinymlaas.web import build_api
    api = build_api(svc.server, svc, auth=True)
    await api.start("127.0.0.1", 0)
    headers = {"Authorization": "Bearer " + api.tokens.create(role, "learn-test")[1]}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            async def call(method, path, body=None):
                async with session.request(method, "http://127.0.0.1:%d%s" % (api.port, path), json=body) as r:
                    return r.status, await r.json()
            call.cli = cli_runner("http://127.0.0.1:%d" % api.port, headers["Authorization"].split()[1])
            yield call
    finally:
        await api.stop()


def cli_runner(url, token):
    """async cli(*args) -> (exit status, stdout, stderr) of the real `tinymlaas` command against the API."""
    import os
    import subprocess

    env = dict({k: v for k, v in os.environ.items() if k != "TINYMLAAS_CONFIG"}, TINYMLAAS_TOKEN=token)

    async def cli(*args):
        r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "tinymlaas"] + [str(a) for a in args] +
                                    ["--server", url], capture_output=True, text=True, env=env, timeout=300)
        return r.returncode, r.stdout, r.stderr
    return cli


def test_learn_routes_on_an_emulated_device(tmp_path):
    async def main():
        async with kws_fleet(tmp_path) as (svc, model), api_client(svc) as call:
            status, dep = await call("POST", "/api/deployments", {"model": "kws", "devices": ["kws-1"],
                                                                  "head": {"kind": "ncm", "save_every": 3}})
            assert status == 201 and dep["head"] == {"kind": "ncm", "lr": 0.05, "save_every": 3}
            await wait_for(lambda: svc.deployments.get(dep["id"])["state"] != "running", what="the deployment")
            dep = svc.deployments.get(dep["id"])
            assert dep["devices"][0]["state"] == "active", dep
            base = "/api/devices/kws-1/learn"
            status, st = await call("GET", base)
            assert status == 200 and (st["samples"], st["accuracy"], st["learning"]) == (0, None, True)
            assert st["head"]["kind"] == "ncm"

            # 3 classes x 4 raw int8 inputs around a prototype each: the device runs and learns them
            variant = svc.registry.variant(dep["devices"][0]["variant_id"])
            blob = svc.registry.artifact(variant)
            xs, ys = class_inputs(blob)
            status, st = await call("POST", base + "/sample", {"label": ys[:4], "input": xs[:4], "raw": True})
            assert status == 200 and st["learned"] == 4 and st["samples"] == 4, st
            for k in range(4, 12):
                status, st = await call("POST", base + "/sample", {"label": ys[k], "input": xs[k], "raw": True})
                assert status == 200, st
            assert st["samples"] == 12 and st["accuracy"] is not None
            # refused before anything is sent: a label beyond K, labels not matching the inputs
            for body, message in (({"label": 12, "input": xs[0], "raw": True}, "classes 0..11"),
                                  ({"label": [1, 2], "input": xs[:3], "raw": True}, "2 labels for 3 inputs"),
                                  ({"label": True, "input": xs[0], "raw": True}, "classes 0..11")):
                status, answer = await call("POST", base + "/sample", body)
                assert status == 400 and message in answer["error"], answer

            # infer now reads /22 as the head's 12 float32 scores (ncm: -squared distance), top = the head's
            status, inf = await call("POST", "/api/devices/kws-1/infer", {"input": xs[5], "raw": True})
            assert status == 200, inf
            scores = inf["results"][0]["scores"]
            assert len(scores) == 12 and inf["results"][0]["class"] == int(np.argmax(scores)) == ys[5]
            # ... and /38 labels that inference; a second label for it is the device's 4.00
            status, st = await call("POST", base + "/label", {"label": ys[5]})
            assert status == 200 and st["samples"] == 13, st
            status, answer = await call("POST", base + "/label", {"label": ys[5]})
            assert status == 502 and answer["code"] == "4.00", answer

            # the head the device learned: the class means of the embeddings the host's reference computes
            status, head = await call("GET", base + "/head")
            assert status == 200 and (head["kind"], head["classes"], head["dim"], head["samples"]) == \
                ("ncm", 12, 64, 13), head
            h = decode(bytes.fromhex(head["hex"]))
            e = embeddings(blob, xs)
            for k in sorted(set(ys)):
                rows = [e[i] for i in range(12) if ys[i] == k] + ([e[5]] if k == ys[5] else [])
                assert h.extra[k] == len(rows)
                assert np.allclose(h.weights[k], np.mean(rows, axis=0), rtol=1e-5, atol=1e-5)
            assert h.extra.sum() == 13

            # the same through the command line: status, a sample from an .npy file, pull to a file
            code, out, err = await call.cli("learn", "status", "kws-1", "--json")
            assert code == 0 and json.loads(out)["samples"] == 13, err
            np.save(tmp_path / "x.npy", np.array(xs[1]))
            code, out, err = await call.cli("learn", "sample", "kws-1", "--label", ys[1], "--input",
                                            tmp_path / "x.npy", "--raw")
            assert code == 0 and "learned 1 sample(s) as class %d" % ys[1] in out and "14 samples" in out, (out, err)
            code, out, err = await call.cli("learn", "pull", "kws-1", "--out", tmp_path / "h.tmlh")
            assert code == 0 and "ncm, 12 classes x 64 inputs, 14 samples" in out, (out, err)
            assert decode((tmp_path / "h.tmlh").read_bytes()).samples == 14
            code, out, err = await call.cli("learn", "label", "kws-1", 40)
            assert code == 2 and "classes 0..11" in err, err
            status, st = await call("POST", base + "/reset")
            for k in range(12):          # the 13 samples again (the one /38 labelled: as a sample now)
                await call("POST", base + "/sample", {"label": ys[k], "input": xs[k], "raw": True})
            status, st = await call("POST", base + "/sample", {"label": ys[5], "input": xs[5], "raw": True})
            assert st["samples"] == 13

            # frozen: still answers, learns nothing; resumed: learns again
            status, st = await call("PUT", base + "/learning", {"learning": False})
            assert status == 200 and st["learning"] is False
            status, st = await call("POST", base + "/sample", {"label": ys[0], "input": xs[0], "raw": True})
            assert status == 200 and st["samples"] == 13
            status, st = await call("PUT", base + "/learning", {"learning": True})
            assert st["learning"] is True
            status, answer = await call("PUT", base + "/learning", {"learning": "no"})
            assert status == 400

            # the head as a new int8 model: registered and compiled like any other, it answers as the head does
            status, reg = await call("POST", base + "/register", {"name": "kws-learned"})
            assert status == 200 and reg["model"] == "kws-learned" and len(reg["variants"]) == 1, reg
            assert reg["head"]["kind"] == "ncm" and reg["head"]["agreement"] >= 0.99, reg["head"]
            print("registered from the device's ncm head:", reg["head"])
            new = svc.registry.model("kws-learned")
            assert new["metadata"]["learned_from"]["samples"] == 13
            new_blob = svc.registry.artifact(svc.registry.variants(new)[0])
            assert len(parse(new_blob).outputs) == 1
            from tinymlaas.blob.reference import Executor
            ex, t_in = Executor(new_blob), parse(new_blob).tensors[parse(new_blob).inputs[0]]
            tops = [int(np.argmax(ex.run([np.array(x, np.int8).reshape(t_in.shape)])[0])) for x in xs]
            assert tops == list(ys), (tops, ys)
            status, answer = await call("POST", base + "/register", {"name": "kws-learned"})
            assert status == 400 and "already exists" in answer["error"]

            status, st = await call("POST", base + "/reset")
            assert status == 200 and (st["samples"], st["accuracy"]) == (0, None), st

            # a device running a model without a head: 409 before anything is sent to it
            await svc.engine.run(svc.create_deployment("kws", ["kws-1"]))
            status, answer = await call("GET", base)
            assert status == 409 and "--trainable-head" in answer["error"]
    asyncio.run(main())


def class_inputs(blob, classes=(2, 5, 9), per_class=4, seed=7):
    """Raw int8 KWS inputs (as lists) around one random prototype per class, labels interleaved."""
    rng = np.random.default_rng(seed)
    shape = parse(blob).tensors[parse(blob).inputs[0]].shape
    protos = {k: rng.integers(-100, 100, size=shape) for k in classes}
    xs, ys = [], []
    for _ in range(per_class):
        for k in classes:
            xs.append(np.clip(protos[k] + rng.normal(0, 15, shape), -128, 127).astype(int).reshape(-1).tolist())
            ys.append(k)
    return xs, ys


def embeddings(blob, xs):
    """The dequantized embeddings (graph output 1) the host's reference executor computes for raw inputs."""
    from tinymlaas.blob.reference import Executor
    from tinymlaas.learning.register import dequantized

    b = parse(blob)
    t_in, t_emb = b.tensors[b.inputs[0]], b.tensors[b.outputs[1]]
    ex = Executor(blob)
    return [dequantized(np.asarray(ex.run([np.array(x, np.int8).reshape(t_in.shape)])[1]).reshape(-1), t_emb.scale,
                        t_emb.zero_point) for x in xs]


def test_softmax_head_scores_are_the_models_own_last_layer(tmp_path):
    """A new softmax head is the model's last FULLY_CONNECTED in float: `infer` reads its 12 float32 logits,
    equal to the host's float FC of the reference embedding, and one sample moves them."""
    from tinymlaas.compiler.frontend import parse_tflite
    from tinymlaas.learning.register import float_fc, last_fc

    async def main():
        async with kws_fleet(tmp_path) as (svc, model), api_client(svc) as call:
            dep = await svc.engine.run(svc.create_deployment("kws", ["kws-1"], head={"kind": "softmax", "lr": 0.1}))
            assert dep["devices"][0]["state"] == "active", dep
            blob = svc.registry.artifact(svc.registry.variant(dep["devices"][0]["variant_id"]))
            tflite = mlperf_model("kws").read_bytes()
            W, bias = float_fc(tflite)
            y_t = last_fc(tflite)[4]
            xs, ys = class_inputs(blob)
            e = embeddings(blob, xs[:3])
            status, inf = await call("POST", "/api/devices/kws-1/infer", {"input": xs[:3], "raw": True})
            assert status == 200, inf
            for row, emb in zip(inf["results"], e):
                want = W @ emb + bias
                assert np.allclose(row["scores"], want, rtol=1e-4, atol=1e-4), (row["scores"], want)
                assert row["class"] == int(np.argmax(want))
            status, st = await call("POST", "/api/devices/kws-1/learn/sample",
                                    {"label": ys[0], "input": xs[0], "raw": True})
            assert status == 200 and st["samples"] == 1
            status, again = await call("POST", "/api/devices/kws-1/infer", {"input": xs[0], "raw": True})
            moved = np.array(again["results"][0]["scores"]) - np.array(inf["results"][0]["scores"])
            assert moved[ys[0]] > 0 and np.abs(moved).max() > 1e-3     # SGD pushed the labelled class up
            assert parse_tflite(tflite).tensors[y_t].shape[-1] == 12
    asyncio.run(main())
