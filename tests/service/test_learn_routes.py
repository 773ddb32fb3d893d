"""On-device learning through the service (docs/learning.md "On the service"): a deployment with a trainable head
compiles and installs the model's embedding-output variant with the head config in its package metadata; a
deployment without one keeps the plain variant; bad head configs are refused before anything is created."""

import asyncio
import contextlib
import sys

import pytest

from tinymlaas.blob.reader import parse
from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.errors import UserError
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
