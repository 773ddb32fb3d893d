"""The selection decides on what a device reports now: explain and deploy re-read its TinyML object first (heap and
flash change with every install), and when the automatic pruning for a device fails, the device's deployment
says why. A real MicroPython device over LwM2M."""

import asyncio
import pickle

import pytest

from tinymlaas.backends import Artifact
from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.service.core import Service

from e2e_helpers import wait_for

pytestmark = pytest.mark.xdist_group("e2e")


def test_explain_and_deploy_decide_on_fresh_figures_and_a_failed_pruning_is_reported(tmp_path):
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_wine(return_X_y=True)
    (tmp_path / "wine.pkl").write_bytes(pickle.dumps(RandomForestClassifier(n_estimators=4, random_state=0).fit(x, y)))

    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % svc.server.port, "d1", profile="esp32",
                             data_dir=tmp_path / "dev").start()
        try:
            svc.catalog.add(tmp_path / "wine.pkl", "wine")
            await wait_for(lambda: svc.server.find("d1") and svc.server.find("d1").capabilities, what="capabilities")
            reg = svc.server.find("d1")

            def stale():    # what the device reported long ago, with its heap full
                reg.capabilities = dict(reg.capabilities, **{"Largest Free Block": 1000, "Free Heap": 1000})

            stale()
            assert svc.explain("wine", "d1")[2] is None               # the stored figures would refuse it
            _, caps, best, _ = await svc.explain_device("wine", "d1")
            assert best is not None and caps["largest_block"] > 1000  # the device's own, read now

            stale()
            dep = await svc.engine.run(svc.create_deployment("wine", ["d1"]))
            assert dep["devices"][0]["state"] == "active", dep["devices"][0]["reason"]

            # a Keras model whose only variant is far too big, with training data that cannot be read: the pruning
            # the service tries for the device fails, and the device's reason says so
            keras = svc.registry.add_model("big", "1", "keras", b"PK\x03\x04 source",
                                           metadata={"train": str(tmp_path / "moved" / "train.npz")})
            svc.registry.add_variant(keras, "tmlb-int8", {"quantize": "int8"}, "tinyml-mpy",
                                     Artifact("tmlb", b"blob", 4, 10 ** 8, 1, [], {"abi": 1}))
            dep = await svc.engine.run(svc.create_deployment("big", ["d1"]))
            reason = dep["devices"][0]["reason"]
            assert dep["devices"][0]["state"] == "failed" and "no variant of big fits d1" in reason
            assert "pruning 0.5 failed: cannot read the pruning training set %s" % (tmp_path / "moved") in reason
        finally:
            await asyncio.to_thread(dev.stop)
            await svc.stop()

    asyncio.run(main())
