"""A MicroPython device whose models run on a Cortex-M co-processor: the LwM2M client (unix port) keeps the
connection and the model packages, the bare-metal STM32 firmware (QEMU netduinoplus2) runs them, the two joined by
the firmware's UART protocol (inference_module/tinyml/coproc.py). The service sees one device with the
co-processor's capabilities, deploys over LwM2M, the golden self-test runs on the co-processor, and inference
results come back bit-exact. Packages are signed: the gateway verifies each (MicroPython), and the co-processor's
firmware, built to trust the same key and class, verifies it again at COMMIT (C)."""

import asyncio

import numpy as np
import pytest

from tinymlaas.devices.emulated import EmulatedDevice, device_trust
from tinymlaas.devices.qemu import QemuDevice
from tinymlaas.paths import mlperf_model
from tinymlaas.service.core import Service

from e2e_helpers import observed_inference, wait_for, wait_for_value

pytestmark = pytest.mark.xdist_group("e2e")


def test_models_deployed_over_lwm2m_run_on_the_coprocessor(tmp_path):
    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        uri = "coap://127.0.0.1:%d" % svc.server.port
        # the co-processor's firmware trusts what the gateway trusts (the test key store, its default class)
        qemu = QemuDevice("stm32f4", connect=False, trust=device_trust()).start()
        dev = EmulatedDevice(uri, "gw", profile="esp32", data_dir=tmp_path / "gw",
                             coprocessor="tcp:127.0.0.1:%d" % qemu.port).start()
        try:
            await wait_for(lambda: svc.server.find("gw") and svc.server.find("gw").capabilities, what="capabilities")
            caps = svc.device_capabilities("gw")
            assert caps["runtime"] == "tinyml-c" and caps["coprocessor"]
            assert caps["largest_block"] == 20480          # the firmware's arena (RAM store under QEMU)
            assert "TREE_ENSEMBLE" in caps["ops"] and "CONV_2D" in caps["ops"]
            assert "cortex-m4 coprocessor stm32f4" in caps["arch"]

            kws_path = mlperf_model("kws")
            model, errors = svc.catalog.add(kws_path, "kws", "1", builds=[("tmlb-int8", "tinyml-c", {})])
            assert not errors
            _, _, best, verdicts = svc.explain("kws", "gw")
            assert best is not None, [v.summary() for v in verdicts]
            assert best.ram_needed == 16000 and best.ram_available == 20480   # the arena, nothing added

            dep = svc.create_deployment("kws", ["gw"])
            svc.start_deployment(dep)
            await wait_for(lambda: svc.deployments.get(dep)["state"] != "running", timeout=240, what="deployment")
            got = svc.deployments.get(dep)
            assert got["devices"][0]["state"] == "active", got
            server = svc.server
            assert await server.read_value("gw", "/32770/0/11") == "kws"
            assert svc.server.find("gw").capabilities["Model Name"] == "kws"   # refreshed after the update

            x = np.random.default_rng(5).integers(-128, 128, (1, 49, 10, 1), dtype=np.int8)
            result, expected = await observed_inference(svc, "gw", x)
            assert result == expected
            assert int(await server.read_value("gw", "/32770/0/18")) > 0   # the co-processor's cycle count, in us

            # the golden vectors of the package, run again on the co-processor on request
            await server.execute("gw", "/32770/0/19")
            await wait_for_value(server, "gw", "/32770/0/20", lambda v: str(v).startswith("pass"))

            # the co-processor resets (its RAM store is empty again): the next inference installs the blob again
            qemu.reset()
            result, _ = await observed_inference(svc, "gw", x, timeout=120)
            assert result == expected

            # a package the co-processor refuses (IC: its 49 KB arena does not fit), pushed past the selection:
            # the update fails on the device, and KWS stays active on both chips
            from tinymlaas.compiler import compile_tflite
            from tinymlaas.package import build_package
            from tinymlaas.service.core import reference_vectors

            ic = compile_tflite(mlperf_model("ic")).blob
            await server.push_package("gw", build_package(ic, "ic", "1", reference_vectors(ic, count=1)))
            await server.execute("gw", "/5/0/2")
            result_code = await wait_for_value(server, "gw", "/5/0/5", lambda v: int(v) not in (0,), timeout=120)
            assert int(result_code) != 1
            assert await server.read_value("gw", "/32770/0/11") == "kws"
            result, _ = await observed_inference(svc, "gw", x)
            assert result == expected

            # a model whose arena the co-processor cannot hold is refused by the selection, with the reason
            svc.catalog.add(mlperf_model("ic"), "ic", "1", builds=[("tmlb-int8", "tinyml-c", {})])
            _, _, best, verdicts = svc.explain("ic", "gw")
            assert best is None and "the co-processor has 20480 B" in verdicts[0].summary()
        finally:
            dev.stop()
            qemu.stop()
            await svc.stop()

    asyncio.run(main())


def test_a_key_rotation_reaches_the_coprocessor_and_its_next_install(tmp_path, monkeypatch):
    """Both chips provisioned with key K1, the service rotated to K2 (K1 revoked): the anchor update the device
    takes at /32770/0/29 goes on to the co-processor, which checks it against its own anchors and keeps it in its
    non-volatile memory; a model signed with K2 then installs on the co-processor (its COMMIT checks K2)."""
    from e2e_helpers import rotated_keys, wine_tree

    provisioned, k2 = rotated_keys(tmp_path, monkeypatch)
    k1_hex = next(iter(provisioned))
    wine_tree(tmp_path)

    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        uri = "coap://127.0.0.1:%d" % svc.server.port
        qemu = QemuDevice("stm32f4", connect=False, trust=device_trust(provisioned), nvm=tmp_path / "nvm.img").start()
        dev = EmulatedDevice(uri, "gw-rot", profile="esp32", data_dir=tmp_path / "gw", trust=provisioned,
                             coprocessor="tcp:127.0.0.1:%d" % qemu.port).start()
        try:
            await wait_for(lambda: svc.anchor_push.sent.get("gw-rot"), 90, "the anchor update taken")
            await wait_for(lambda: any("co-processor anchor update taken" in line and k2.key_id.hex() in line
                                       for line in dev.lines), 30, "the co-processor's answer")
            assert k1_hex not in [line for line in dev.lines if "co-processor anchor" in line][-1]
            svc.catalog.add(tmp_path / "wine.pkl", "wine")
            dep = svc.create_deployment("wine", ["gw-rot"])
            svc.start_deployment(dep)
            await wait_for(lambda: svc.deployments.get(dep)["state"] != "running", 180, "deployment")
            assert svc.deployments.get(dep)["devices"][0]["state"] == "active", svc.deployments.get(dep)
            assert await svc.server.read_value("gw-rot", "/32770/0/11") == "wine"
        except BaseException:
            print("\n".join(dev.lines[-30:]))
            raise
        finally:
            dev.stop()
            qemu.stop()
            await svc.stop()

    asyncio.run(main())
