"""The heap after many model updates, with real parts: the LwM2M server pushes packages over UDP into the real
MicroPython client of an emulated board (EmulatedDevice), which verifies, self-tests and activates each one.

After every update the device is back at its post-boot heap: the largest free block it reports (/32770/0/1,
notified after each install) stays where it was after a boot with the same model. Two small corpus models of
similar size alternate, so 50 updates take seconds."""

import asyncio
import sys
from pathlib import Path

import pytest

from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.lwm2m.server import LwM2MServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
from packages import resigned  # noqa: E402  (tests/client/packages.py: built the way the service builds them)

pytestmark = pytest.mark.xdist_group("e2e")

LARGEST = (32770, 0, 1)
UPDATES = 50
MODELS = ("conv_same_dilated", "depthwise_dm2")   # 2.3 and 2.1 KB packages with similar RAM needs


async def update(server, ep, pkg):
    """Push, Update, wait for Idle -> the Update Result."""
    await server.push_package(ep, pkg)
    assert await server.read_value(ep, "/5/0/3") == 2                  # Downloaded
    assert await server.execute(ep, "/5/0/2") == "2.04"
    while True:
        if await server.read_value(ep, "/5/0/3") == 0:
            return await server.read_value(ep, "/5/0/5")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("profile", ["esp32", "cortex-m4"])
def test_largest_block_returns_after_every_update(tmp_path, profile):
    # the two models in turn, each package signed with a higher sequence number than the one before
    first, second = (lambda k: resigned(MODELS[0], k, name=MODELS[0])), (lambda k: resigned(MODELS[1], k, name=MODELS[1]))

    async def main():
        server = await LwM2MServer(tmp_path / "s.db").start("127.0.0.1", 0)
        events = server.subscribe()

        async def registered():
            while (await asyncio.wait_for(events.get(), 60)).kind != "capabilities":
                pass

        dev = EmulatedDevice("coap://127.0.0.1:%d" % server.port, "heap-1", profile=profile,
                             data_dir=tmp_path / "dev").start()
        try:
            await registered()
            assert await update(server, "heap-1", first(1)) == 1
            assert await server.execute("heap-1", "/3/0/4") == "2.04"    # reboot with the first model active
            await registered()
            booted = await server.read_value("heap-1", "/32770/0/1")

            reported = asyncio.Queue()
            await server.observe("heap-1", "/32770/0/1", lambda v, o=None: v and reported.put_nowait(v[LARGEST]))
            await reported.get()                                          # the current value (RFC 7641)
            after = []
            for i in range(UPDATES):
                assert await update(server, "heap-1", (second if i % 2 == 0 else first)(i + 2)) == 1
                # the device reports its heap after the install, measured after a collection
                after.append(await asyncio.wait_for(reported.get(), 10))
                await server.refresh_capabilities("heap-1")              # what the service reads after an install
            print("%s: largest free block after boot %d, after update 1 %d, after update %d %d (min %d, max %d)"
                  % (profile, booted, after[0], UPDATES, after[-1], min(after), max(after)))
            assert abs(after[0] - booted) <= 0.05 * booted, (booted, after[:4])
            assert abs(after[-1] - after[0]) <= 0.05 * after[0], (after[0], after[-1])
            assert min(after) >= 0.95 * booted, after
        finally:
            dev.stop()
            await server.stop()

    asyncio.run(main())
