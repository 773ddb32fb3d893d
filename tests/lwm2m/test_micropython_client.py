"""End to end with the real device client: lwm2m_client/tinyml_device.py running in the MicroPython unix port
registers with the server over loopback UDP; the server reads its TinyML capabilities, delivers an install
package by push (Block1 into /5/0/0) and by pull (/5/0/1 Package URI, the device fetches Block2 from /fw/...),
executes Update and sees the model active."""

import asyncio
import hashlib
import subprocess

import pytest

from tinymlaas.devices import unixport
from tinymlaas.package import build_package
from tinymlaas.paths import LWM2M_CLIENT, VECTORS
from tinymlaas.service.core import reference_vectors

BLOB = (VECTORS / "softmax_rows.blob").read_bytes()


@pytest.fixture
def mpy_device(lwm2m_server, tmp_path):
    st = lwm2m_server
    cmd = unixport.command(LWM2M_CLIENT / "tinyml_device.py", "512k",
                           ["--server", st.uri, "--endpoint", "mpy-dev", "--data-dir", str(tmp_path / "flash")])
    proc = subprocess.Popen(cmd, env=unixport.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    async def wait_caps():
        q = st.server.subscribe()
        while not (st.server.find("mpy-dev") and st.server.find("mpy-dev").capabilities):
            await asyncio.wait_for(q.get(), 30)

    try:
        st.call(wait_caps())
        yield st
    finally:
        proc.terminate()
        proc.wait(10)


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
