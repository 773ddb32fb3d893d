"""End to end with the real device client: lwm2m_client/tinyml_device.py running in the MicroPython unix port
registers with the server over loopback UDP; the server reads its TinyML capabilities, delivers an install
package by push (Block1 into /5/0/0) and by pull (/5/0/1 Package URI, the device fetches Block2 from /fw/...),
executes Update and sees the model active. A cancelled observation stops the device's NON notifications.""" 

import asyncio
import hashlib
import subprocess
import time

import pytest

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import trust_args
from tinymlaas.lwm2m.lossy_proxy import LossyProxy
from tinymlaas.package import build_package
from tinymlaas.paths import LWM2M_CLIENT, VECTORS
from tinymlaas.service.core import reference_vectors

from . import coap_bytes as B

BLOB = (VECTORS / "softmax_rows.blob").read_bytes()


def run_device(st, server_uri, tmp_path):
    """The device process, registered and its capabilities read; the caller terminates it."""
    cmd = unixport.command(LWM2M_CLIENT / "tinyml_device.py", "512k",
                           ["--server", server_uri, "--endpoint", "mpy-dev", "--data-dir", str(tmp_path / "flash"),
                            *trust_args()])
    proc = subprocess.Popen(cmd, env=unixport.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    async def wait_caps():
        q = st.server.subscribe()
        while not (st.server.find("mpy-dev") and st.server.find("mpy-dev").capabilities):
            await asyncio.wait_for(q.get(), 30)

    try:
        st.call(wait_caps())
    except BaseException:
        stop_device(proc)
        raise
    return proc


def stop_device(proc):
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def mpy_device(lwm2m_server, tmp_path):
    proc = run_device(lwm2m_server, lwm2m_server.uri, tmp_path)
    yield lwm2m_server
    stop_device(proc)


@pytest.fixture
def mpy_device_on_wire(lwm2m_server, tmp_path):
    """The device talking to the server through a loss-free proxy that records every datagram:
    (server thread, [(direction, parsed datagram)])."""
    st = lwm2m_server
    wire = []
    proxy = st.call(LossyProxy.start(("127.0.0.1", st.port), loss=0, tap=lambda d, data: wire.append((d, B.parse(data)))))
    proc = run_device(st, "coap://%s:%d" % proxy.address, tmp_path)
    yield st, wire
    stop_device(proc)
    st.sync(proxy.close)


async def wait_idle(server, ep):
    for _ in range(200):
        fw = await server.read(ep, "/5/0")
        if fw[(5, 0, 3)] == 0:
            return fw
        await asyncio.sleep(0.05)
    raise AssertionError("device stayed in state %d" % fw[(5, 0, 3)])


def install(st, deliver):
    package = build_package(BLOB, "softmax-rows", "3", reference_vectors(BLOB))

    async def go():
        await deliver(st.server, package)
        for _ in range(200):
            if (await st.server.read_value("mpy-dev", "/5/0/3")) == 2:  # Downloaded
                break
            await asyncio.sleep(0.05)
        assert await st.server.execute("mpy-dev", "/5/0/2") == "2.04"
        return await wait_idle(st.server, "mpy-dev"), await st.server.read("mpy-dev", "/32770/0")

    return st.call(go())


def test_capabilities_read_on_registration(mpy_device):
    reg = mpy_device.server.device("mpy-dev")
    assert reg.lwm2m_version == "1.1" and "/32770/0" in reg.objects and "/5/0" in reg.objects
    caps = reg.capabilities
    assert caps["Runtime Name"] == "micropython" and "CONV_2D" in caps["Supported Ops"].split(",")
    assert caps["Free Heap"] > 0 and caps["Largest Free Block"] <= caps["Heap Total"]


def test_push_install(mpy_device):
    seen = []

    async def push(server, package):
        r = await server.push_package("mpy-dev", package, progress=lambda d, t: seen.append(d))
        assert r.final_code == "2.04" and r.blocks == -(-len(package) // 1024)

    fw, tml = install(mpy_device, push)
    assert fw[(5, 0, 5)] == 1 and fw[(5, 0, 6)] == "softmax-rows" and fw[(5, 0, 7)] == "3"
    assert tml[(32770, 0, 13)] == hashlib.sha256(BLOB).hexdigest() and tml[(32770, 0, 16)] == "active"
    assert seen[-1] == len(build_package(BLOB, "softmax-rows", "3", reference_vectors(BLOB)))


def test_pull_install(mpy_device):
    st = mpy_device

    async def pull(server, package):
        uri = await server.deliver_by_uri("mpy-dev", package)
        assert uri.endswith(hashlib.sha256(package).hexdigest())

    fw, tml = install(st, pull)
    assert fw[(5, 0, 5)] == 1 and tml[(32770, 0, 16)] == "active"
    [served] = st.server.downloads.values()
    assert list(served.values())[0] > 0  # the device fetched it block-wise from /fw/<sha256>


def test_cancelled_observation_stops_the_device_notifying(mpy_device_on_wire):
    """The device notifies NON (every 10th CON). After the server cancels one of two observations, the device's
    next notification on it gets a Reset and it sends no more on that token, while the other goes on."""
    st, wire = mpy_device_on_wire
    got = {"/3/0/9": [], "/3/0/10": []}

    async def observe_both():
        observations = {}
        for path in got:
            await st.server.write_attributes("mpy-dev", path, pmax=1)
            observations[path] = await st.server.observe("mpy-dev", path, lambda v, o, path=path: got[path].append(v))
        return observations

    observations = st.call(observe_both())
    cancelled, going_on = observations["/3/0/9"], observations["/3/0/10"]

    def notifications(token, since=0):
        return [m for d, m in wire[since:] if d == "up" and m["token"] == token and m["type"] in (B.CON, B.NON)]

    def wait_for(condition, what):
        deadline = time.time() + 30
        while not condition() and time.time() < deadline:
            time.sleep(0.05)
        assert condition(), what

    [token] = [m["token"] for d, m in wire if d == "down" and m["code"] == "0.01" and 6 in m["options"]
               and m["options"][11] == [b"3", b"0", b"9"]]
    wait_for(lambda: len(notifications(token)) >= 2, "no notifications before cancel")
    assert all(m["type"] == B.NON for m in notifications(token)[:2])
    st.sync(cancelled.cancel)
    since = len(wire)
    seen = len(got["/3/0/10"])
    wait_for(lambda: len(got["/3/0/10"]) >= seen + 4, "the other observation stopped too")
    after = notifications(token, since)
    assert len(after) <= 1, "the device kept notifying after cancel: %d notifications" % len(after)
    resets = [m for d, m in wire[since:] if d == "down" and m["type"] == B.RST]
    assert [m["mid"] for m in after] == [m["mid"] for m in resets][:len(after)]
    assert going_on.active and st.server.observations("mpy-dev") == [going_on]
