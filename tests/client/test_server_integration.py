"""End to end on loopback: the tinymlaas LwM2M server (host/tinymlaas/lwm2m, aiocoap) and an emulated device
(MicroPython client, real installer and runtime): registration, capability read, push and pull delivery of real
model packages, Update, inference with the result observed."""

import asyncio

import numpy as np

from packages import package

from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.lwm2m.server import LwM2MServer


async def until(fn, timeout=60.0, every=0.1):
    end = asyncio.get_running_loop().time() + timeout
    while True:
        v = await fn()
        if v:
            return v
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not met within %ss" % timeout)
        await asyncio.sleep(every)


def test_server_device_push_pull_update_infer(tmp_path):
    pkg1, blob1, vectors = package("fc_no_bias_softmax", name="fc", version="1")
    pkg2, _, _ = package("fc_no_bias_softmax", name="fc", version="2")

    async def scenario():
        server = await LwM2MServer(":memory:").start("127.0.0.1", 0)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % server.port, "it-1", data_dir=tmp_path / "dev",
                             profile="esp32")
        dev.start()
        try:
            async def registered():
                return any(d.endpoint == "it-1" for d in server.devices())

            await until(registered, 30)
            values = await server.read("it-1", "/32770/0")
            assert values[(32770, 0, 7)] == "micropython"
            assert "CONV_2D" in values[(32770, 0, 10)]
            assert values[(32770, 0, 16)] == "none"

            async def fw(rid):
                return int(await server.read_value("it-1", "/5/0/%d" % rid))

            async def state_is(s):
                return await fw(3) == s

            # push (Block1)
            await server.push_package("it-1", pkg1)
            await until(lambda: state_is(2))
            await server.execute("it-1", "/5/0/2")
            await until(lambda: _result_is(fw, 1))
            assert await server.read_value("it-1", "/32770/0/12") == "1"

            # observe the result, run an inference
            seen = []
            obs = await server.observe("it-1", "/32770/0/22", lambda v, o: seen.append(v))
            x = vectors[0][0][0].astype(np.int8).tobytes()
            await server.write("it-1", "/32770/0/21", x)

            async def noted():
                return len(seen) >= 2
            await until(noted, 10)
            got = seen[-1][(32770, 0, 22)]
            assert bytes(got) == vectors[0][1][0].astype(np.int8).tobytes()
            obs.cancel()

            # pull (Package URI + Block2 from the server)
            await server.deliver_by_uri("it-1", pkg2)
            await until(lambda: state_is(2))
            await server.execute("it-1", "/5/0/2")
            await until(lambda: _result_is(fw, 1))
            assert await server.read_value("it-1", "/32770/0/12") == "2"
        finally:
            dev.stop()
            await server.stop()

    asyncio.run(scenario())


async def _result_is(fw, want):
    return await fw(3) == 0 and await fw(5) == want
