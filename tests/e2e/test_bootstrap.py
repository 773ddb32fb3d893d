"""Zero-touch provisioning: a MicroPython device that knows only the Bootstrap-Server asks it for its account, gets
fresh OSCORE keys (object 21) and the LwM2M server's URI, registers there under OSCORE, and is then managed and
updated like any device; after a restart it uses the stored account and does not bootstrap again."""

import asyncio

import numpy as np
import pytest

from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.lwm2m.bootstrap import BootstrapServer
from tinymlaas.web.devices import device_view
from tinymlaas.paths import mlperf_model
from tinymlaas.service.core import Service

from e2e_helpers import observed_inference, wait_for

pytestmark = pytest.mark.xdist_group("e2e")


def test_bootstrap_then_oscore_registration_and_deployment(tmp_path):
    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        bs = await BootstrapServer(svc.server, "coap://127.0.0.1:%d" % svc.server.port).start("127.0.0.1", 0)
        dev = EmulatedDevice(None, "fresh-1", profile="esp32", data_dir=tmp_path / "dev",
                             bootstrap="coap://127.0.0.1:%d" % bs.port)
        dev.start()
        try:
            outcome = await asyncio.wait_for(bs.outcomes.get(), 60)
            assert outcome.ok, (outcome, dev.lines[-10:])
            await wait_for(lambda: svc.server.find("fresh-1") and svc.server.find("fresh-1").capabilities, 60,
                           "registration with capabilities after bootstrap")
            assert device_view(svc.server.find("fresh-1"), svc.server)["security"] == "oscore"
            assert svc.server.oscore.opened >= 1

            svc.catalog.add(mlperf_model("kws"), "kws", "1", builds=[("tmlb-int8", "tinyml-mpy", {})])
            dep = svc.create_deployment("kws", ["fresh-1"])
            svc.start_deployment(dep)
            await wait_for(lambda: svc.deployments.get(dep)["state"] != "running", 240, "deployment")
            assert svc.deployments.get(dep)["devices"][0]["state"] == "active"
            x = np.random.default_rng(9).integers(-128, 128, (1, 49, 10, 1), dtype=np.int8)
            result, expected = await observed_inference(svc, "fresh-1", x)
            assert result == expected

            # a restart: the stored account, no second bootstrap
            reg_before = svc.server.find("fresh-1").id
            dev.stop()
            dev.start()
            await wait_for(lambda: svc.server.find("fresh-1") and svc.server.find("fresh-1").id != reg_before, 60,
                           "re-registration after restart")
            assert bs.outcomes.empty()
        except BaseException:
            print("\n".join(dev.lines[-30:]))
            raise
        finally:
            dev.stop()
            await bs.stop()
            await svc.stop()

    asyncio.run(main())


def test_bootstrap_gives_trust_anchors_which_no_server_can_write(tmp_path):
    """With `anchors` the Bootstrap-Server writes the service's package-signing keys (/32770/0/32): the device then
    trusts them; in the management session a Write of the anchors (26, 32) is refused with 4.01."""
    from tinymlaas.lwm2m.server import LwM2MError
    from tinymlaas.signing.anchors import device_anchors

    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        bs = await BootstrapServer(svc.server, "coap://127.0.0.1:%d" % svc.server.port,
                                   anchors=lambda: device_anchors(svc.keys)).start("127.0.0.1", 0)
        dev = EmulatedDevice(None, "anchored-1", data_dir=tmp_path / "dev", bootstrap="coap://127.0.0.1:%d" % bs.port,
                             trust={})  # provisioned with no anchors: the Bootstrap-Server gives them
        dev.start()
        try:
            outcome = await asyncio.wait_for(bs.outcomes.get(), 60)
            assert outcome.ok, (outcome, dev.lines[-10:])
            await wait_for(lambda: svc.server.find("anchored-1") and svc.server.find("anchored-1").capabilities, 60,
                           "registration")
            kid = svc.keys.current_kid()
            assert await svc.server.read_value("anchored-1", "/32770/0/26") == kid
            assert bytes(await svc.server.read_value("anchored-1", "/32770/0/32")) == svc.keys.signer().public_point
            for path, value in (("/32770/0/32", b"\x04" + bytes(64)), ("/32770/0/26", "0011223344556677")):
                with pytest.raises(LwM2MError, match="4.01"):
                    await svc.server.write("anchored-1", path, value)
            assert await svc.server.read_value("anchored-1", "/32770/0/26") == kid
        except BaseException:
            print("\n".join(dev.lines[-30:]))
            raise
        finally:
            dev.stop()
            await bs.stop()
            await svc.stop()

    asyncio.run(main())
