"""Privacy: a deployment with report_results off makes the device itself stop sending inference results (real
service, emulated MicroPython device): an observation of Last Result ends, Reads and Observes of results are refused
with 4.03, whole-object reads carry none, inferences still run on the device; the switch survives a restart, and
a later deployment with reporting on brings the results back."""

import asyncio

import pytest

from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.lwm2m.server import LwM2MError
from tinymlaas.service.core import Service

from e2e_helpers import wait_for, wine_tree

pytestmark = pytest.mark.xdist_group("e2e")


def test_reporting_off_per_deployment_stops_results_at_the_device(tmp_path):
    x, y = wine_tree(tmp_path)

    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % svc.server.port, "p1", data_dir=tmp_path / "dev").start()
        server = svc.server
        try:
            svc.catalog.add(tmp_path / "wine.pkl", "wine")
            await wait_for(lambda: server.find("p1") and server.find("p1").capabilities, 60, "capabilities")
            dep = await svc.engine.run(svc.create_deployment("wine", ["p1"]))
            assert dep["devices"][0]["state"] == "active" and svc.deployment_view(dep["id"])["report_results"]
            assert (await svc.inference.run("p1", [list(x[0])]))["results"][0]["class"] == y[0]
            notes = []
            await server.observe("p1", "/32770/0/22", lambda value, o=None: notes.append(value))

            off = svc.create_deployment("wine", ["p1"], report_results=False)
            assert svc.deployment_view(off)["report_results"] is False
            assert (await svc.engine.run(off))["devices"][0]["state"] == "active"
            assert await server.read_value("p1", "/32770/0/31") is False
            count = await server.read_value("p1", "/32770/0/17")
            seen = len(notes)
            io = (await svc.inference.installed("p1"))[2]
            await server.write("p1", "/32770/0/21", io.encode([list(x[0])])[0])
            for path in ("/32770/0/22", "/32770/0/23"):
                with pytest.raises(LwM2MError, match="4.03"):
                    await server.read("p1", path)
            with pytest.raises(LwM2MError, match="4.03"):
                await svc.inference.run("p1", [list(x[0])])
            whole = await server.read("p1", "/32770/0")
            assert whole and not any(p[-1] in (22, 23) for p in whole)          # nothing of the results
            assert await server.read_value("p1", "/32770/0/17") > count          # it did run on the device
            await asyncio.sleep(0.5)
            assert len(notes) <= seen + 1 and (len(notes) == seen or notes[-1] is None)  # ended, no result sent

            before = server.find("p1").id
            dev.stop()
            dev.start()
            await wait_for(lambda: (r := server.find("p1")) and r.id != before and r.capabilities, 60, "restart")
            assert await server.read_value("p1", "/32770/0/31") is False        # kept in the device's flash

            on = await svc.engine.run(svc.create_deployment("wine", ["p1"]))
            assert on["devices"][0]["state"] == "active"
            assert (await svc.inference.run("p1", [list(x[0])]))["results"][0]["class"] == y[0]
        except BaseException:
            print("\n".join(dev.lines[-30:]))
            raise
        finally:
            dev.stop()
            await svc.stop()

    asyncio.run(main())
