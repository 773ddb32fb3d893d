"""host/tinymlaas/devices/fleet.py, lwm2m_client/fleet_main.py and `tinymlaas fleet emulate`: many emulated
devices per MicroPython process, each a whole LwM2M device (own socket, registration, objects, flash, installer
and heap figures), against the real LwM2M server."""

import asyncio
import re
import shutil
import signal
import subprocess

from packages import package

from tinymlaas.devices.emulated import PROFILES
from tinymlaas.devices.fleet import EmulatedFleet
from tinymlaas.lwm2m.server import LwM2MServer

TINYMLAAS = shutil.which("tinymlaas")
TML = 32770
ESP32_HEAP = PROFILES["esp32"]["board_heap"]


async def until(fn, timeout=60.0, every=0.1):
    end = asyncio.get_running_loop().time() + timeout
    while not fn():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not met within %ss" % timeout)
        await asyncio.sleep(every)


async def stopped(fleet):
    """fleet.stop() off the loop: the server must go on answering the de-registrations meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(None, fleet.stop)


def test_fifty_devices_in_two_processes_register_report_their_board_and_deregister(tmp_path):
    async def scenario():
        server = await LwM2MServer(":memory:").start("127.0.0.1", 0)
        fleet = EmulatedFleet("coap://127.0.0.1:%d" % server.port, 50, prefix="fl", per_vm=25,
                              data_dir=tmp_path / "fleet")
        fleet.start()
        try:
            await until(lambda: sum(1 for r in server.devices() if r.capabilities) == 50)
            regs = server.devices()
            assert [r.endpoint for r in regs] == ["fl-%04d" % i for i in range(50)]
            assert len({r.address for r in regs}) == 50  # a socket of its own each
            assert len(fleet.pids()) == 2 and sorted(fleet.registered) == fleet.names
            for r in regs:
                assert {"/3/0", "/5/0", "/%d/0" % TML} <= set(r.objects)
                caps = r.capabilities
                # the board's heap, less what this endpoint holds (measured): the VM's own heap is far larger
                assert caps["Heap Total"] == ESP32_HEAP
                assert ESP32_HEAP - 16384 < caps["Free Heap"] < ESP32_HEAP
                assert caps["Largest Free Block"] <= caps["Free Heap"]
                assert 0 < caps["Flash Free"] <= PROFILES["esp32"]["flash_bytes"]
                assert caps["Platform"] == "esp32"
                assert (tmp_path / "fleet" / r.endpoint / "flash").is_dir()
            assert await server.read_value("fl-0031", "/3/0/2") == "fl-0031"  # serial
            assert await server.read_value("fl-0031", "/3/0/21") == ESP32_HEAP // 1024
            m = fleet.memory()
            assert m["processes"] == 2 and m["per_device"]["rss"] > 0
        finally:
            done, lost = await stopped(fleet)
        assert (done, lost) == (50, 0)
        assert server.devices() == []
        await server.stop()

    asyncio.run(scenario())


def test_an_install_and_a_reboot_stay_with_their_endpoint(tmp_path):
    pkg, _, _ = package("fc_no_bias_softmax", name="fc", version="3")

    async def scenario():
        server = await LwM2MServer(":memory:").start("127.0.0.1", 0)
        fleet = EmulatedFleet("coap://127.0.0.1:%d" % server.port, 3, prefix="one", data_dir=tmp_path / "fleet")
        fleet.start()
        try:
            await until(lambda: sum(1 for r in server.devices() if r.capabilities) == 3)
            before = {r.endpoint: r.capabilities["Free Heap"] for r in server.devices()}
            await server.push_package("one-0001", pkg)
            assert await server.execute("one-0001", "/5/0/2") == "2.04"

            async def result(ep):
                return await server.read_value(ep, "/5/0/5")

            for _ in range(300):
                if await result("one-0001") != 0:
                    break
                await asyncio.sleep(0.1)
            assert await result("one-0001") == 1  # installed: self-tested, then active
            tml = await server.read("one-0001", "/%d/0" % TML)
            arena = tml[(TML, 0, 14)]
            assert tml[(TML, 0, 16)] == "active" and tml[(TML, 0, 11)] == "fc" and arena > 0
            assert tml[(TML, 0, 0)] <= before["one-0001"] - arena  # its model counts against its own budget
            for other in ("one-0000", "one-0002"):
                assert await server.read_value(other, "/%d/0/16" % TML) == "none"
                assert await server.read_value(other, "/%d/0/0" % TML) == before[other]

            ids = {r.endpoint: r.id for r in server.devices()}
            assert await server.execute("one-0001", "/3/0/4") == "2.04"  # reboot: this endpoint only
            await until(lambda: server.find("one-0001") and server.find("one-0001").id != ids["one-0001"])
            assert fleet.reboots["one-0001"] == 1 and len(fleet.pids()) == 1
            assert {r.endpoint: r.id for r in server.devices() if r.endpoint != "one-0001"} == \
                {k: v for k, v in ids.items() if k != "one-0001"}
            # the flash kept the model; it is loaded and measured again at boot
            assert await server.read_value("one-0001", "/%d/0/16" % TML) == "active"
            assert await server.read_value("one-0001", "/%d/0/0" % TML) <= before["one-0001"] - arena
        finally:
            await stopped(fleet)
        await server.stop()

    asyncio.run(scenario())


def test_cli_fleet_through_a_lossy_link_registers_and_sigterm_deregisters(tmp_path):
    async def scenario():
        server = await LwM2MServer(":memory:").start("127.0.0.1", 0)
        proc = subprocess.Popen([TINYMLAAS, "fleet", "emulate", "--server", "coap://127.0.0.1:%d" % server.port,
                                 "--count", "6", "--prefix", "lossy", "--loss", "30", "--per-process", "4"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            await until(lambda: len(server.devices()) == 6, timeout=120)
            regs = server.devices()
            assert sorted(r.endpoint for r in regs) == ["lossy-%04d" % i for i in range(6)]
        finally:
            proc.send_signal(signal.SIGTERM)
            out = (await asyncio.get_running_loop().run_in_executor(None, proc.communicate, None, 60))[0]
        assert proc.returncode == 0, out
        assert re.search(r"6 esp32 devices lossy-0000 … lossy-0005 in 2 micropython processes", out), out
        m = re.search(r"30 % loss each way through coap://127\.0\.0\.1:(\d+)", out)
        assert m and int(m.group(1)) != server.port, out  # the devices talked to the proxy, not the server
        dropped = re.search(r"link: (\d+) of (\d+) datagrams dropped", out)
        assert dropped and int(dropped.group(1)) > 0, out
        assert "de-registered" in out
        await server.stop()

    asyncio.run(scenario())


def test_cli_rejects_bad_arguments():
    for args, reason in ((["--server", "http://x", "--count", "2", "--prefix", "a"], "coap://"),
                         (["--server", "coap://h:1", "--count", "0", "--prefix", "a"], "--count"),
                         (["--server", "coap://h:1", "--count", "2", "--prefix", "a/b"], "prefix"),
                         (["--server", "coap://h:1", "--count", "2", "--prefix", "a", "--loss", "100"], "--loss")):
        r = subprocess.run([TINYMLAAS, "fleet", "emulate"] + args, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and reason in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
