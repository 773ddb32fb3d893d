"""LwM2M under OSCORE end to end: the service's server (aiocoap's security contexts, host/tinymlaas/lwm2m/oscore.py)
and the MicroPython client (lwm2m_client/coap/oscore.py) share keys; the device registers, is read, gets a model
pushed block by block, runs inference and notifies, all protected. A NoSec device beside it is unaffected; nobody
registers under a secured endpoint's name without its keys, and the device answers no unprotected request."""

import asyncio

import aiocoap
import numpy as np
import pytest

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.web.devices import device_view
from tinymlaas.lwm2m.oscore import DeviceKeys
from tinymlaas.paths import mlperf_model
from tinymlaas.service.core import Service

from e2e_helpers import observed_inference, wait_for

pytestmark = pytest.mark.xdist_group("e2e")

KEYS = DeviceKeys("sec-1", bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0"), device_id=b"\x11", server_id=b"\x01",
                  master_salt=bytes.fromhex("9e7ca92223786340"))


async def coap(method, uri, query=()):
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        msg = aiocoap.Message(code=method, uri=uri)
        if query:
            msg.opt.uri_query = query
            msg.payload = b"</1/0>,</3/0>"
            msg.opt.content_format = 40
        return await asyncio.wait_for(ctx.request(msg).response, 20)
    finally:
        await ctx.shutdown()


def test_lwm2m_under_oscore(tmp_path):
    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        svc.server.add_oscore_device(KEYS)
        uri = "coap://127.0.0.1:%d" % svc.server.port
        secure = EmulatedDevice(uri, "sec-1", profile="esp32", data_dir=tmp_path / "sec", oscore=KEYS.device_config())
        plain = EmulatedDevice(uri, "plain-1", profile="esp32", data_dir=tmp_path / "plain")
        secure.start()
        plain.start()
        try:
            await wait_for(lambda: all(svc.server.find(d.endpoint) and svc.server.find(d.endpoint).capabilities
                                       for d in (secure, plain)), 60, "both devices with capabilities")
            assert svc.server.oscore.opened >= 1                      # the Register came protected
            views = {d: device_view(svc.server.find(d), svc.server)["security"] for d in ("sec-1", "plain-1")}
            assert views == {"sec-1": "oscore", "plain-1": "nosec"}          # what /api/devices shows
            caps = svc.device_capabilities("sec-1")
            # read under OSCORE; the runtime is what the firmware MICROPYTHON selects has: the C module or viper
            c_module = unixport.run(code="import _tinyml", check=False).returncode == 0
            assert caps["runtime"] == ("tinyml-c" if c_module else "tinyml-mpy") and caps["largest_block"] > 0

            # nobody else registers as sec-1: NoSec is refused, the secured registration stays
            reg_id = svc.server.find("sec-1").id
            refused = await coap(aiocoap.POST, uri + "/rd", ("ep=sec-1", "lt=60", "lwm2m=1.1", "b=U"))
            assert refused.code == aiocoap.UNAUTHORIZED and b"must use OSCORE" in refused.payload
            assert svc.server.find("sec-1").id == reg_id
            # and the device opens no unprotected request, from the server's address or anyone's
            addr = svc.server.find("sec-1").address
            probe = await coap(aiocoap.GET, "coap://%s/3/0" % addr)
            assert probe.code == aiocoap.UNAUTHORIZED

            model, errors = svc.catalog.add(mlperf_model("kws"), "kws", "1", builds=[("tmlb-int8", "tinyml-mpy", {})])
            assert not errors
            dep = svc.create_deployment("kws", ["sec-1", "plain-1"])
            svc.start_deployment(dep)
            await wait_for(lambda: svc.deployments.get(dep)["state"] != "running", 240, "deployment")
            got = {d["endpoint"]: d for d in svc.deployments.get(dep)["devices"]}
            assert got["sec-1"]["state"] == got["plain-1"]["state"] == "active", got

            x = np.random.default_rng(3).integers(-128, 128, (1, 49, 10, 1), dtype=np.int8)
            result, expected = await observed_inference(svc, "sec-1", x)
            assert result == expected                                  # a protected notification
        finally:
            secure.stop()
            plain.stop()
            await svc.stop()

    asyncio.run(main())
