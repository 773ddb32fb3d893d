"""Interop with an independent LwM2M client: lwm2m-node-lib (FIWARE, npm) registers with the server, answers
Reads and a Write, and de-registers; a cancelled observation stops its notifications; as a device without the
TinyML object it stays listed but cannot be refreshed or deployed to. Installed by `npm install` in tests/interop (host/scripts/setup.sh)."""

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tinymlaas.errors import UserError
from tinymlaas.lwm2m.lossy_proxy import LossyProxy
from tinymlaas.lwm2m.server import DeviceError
from tinymlaas.service.core import Service
from tinymlaas.web import build_api

from . import coap_bytes as B

PEER = Path(__file__).resolve().parents[1] / "interop" / "lwm2m_peer.js"
NODE = shutil.which("node")
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "models"


def test_node_peer_is_installed():
    assert NODE, "node is required for the interop peer"
    assert (PEER.parent / "node_modules" / "lwm2m-node-lib").is_dir(), "run `npm install` in tests/interop"


def test_lwm2m_node_lib_registers_and_answers(lwm2m_server):
    st = lwm2m_server
    proc = subprocess.Popen([NODE, str(PEER), "127.0.0.1", str(st.port), "node-peer"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=PEER.parent)
    try:
        line = proc.stdout.readline()
        assert line.startswith("registered rd/"), line
        [reg] = st.server.devices()
        assert reg.endpoint == "node-peer" and reg.lwm2m_version == "1.0" and reg.objects == ["/3/0"]
        assert line.strip().endswith(reg.id)
        assert st.call(st.server.read("node-peer", "/3/0/0")) == {(3, 0, 0): "FIWARE lwm2m-node-lib"}
        assert st.call(st.server.read_value("node-peer", "/3/0/9")) == 87  # typed by the object model
        assert st.call(st.server.write("node-peer", "/3/0/14", "+05:30")) == "2.04"
        assert st.call(st.server.read_value("node-peer", "/3/0/14")) == "+05:30"
        try:
            st.call(st.server.read("node-peer", "/3/0/13"))  # a resource it does not have
            raise AssertionError("expected 4.04")
        except DeviceError as e:
            assert e.code == "4.04"
    finally:
        proc.terminate()
        out = proc.stdout.readline()
        proc.wait(10)
    assert out.strip() == "deregistered"
    deadline = time.time() + 2
    while st.server.devices() and time.time() < deadline:
        time.sleep(0.05)
    assert st.server.devices() == [] and [e.kind for e in st.events][-1] == "deregistered"


def test_cancel_stops_lwm2m_node_lib_notifying(lwm2m_server):
    """lwm2m-node-lib notifies CON (like the Observe request) on every change; two resources change every 100 ms.
    After one observation is cancelled, its next notification gets a Reset instead of an ACK (aiocoap alone
    acknowledged that one and only reset the one after), and the peer sends nothing more on it."""
    st = lwm2m_server
    wire = []
    proxy = st.call(LossyProxy.start(("127.0.0.1", st.port), loss=0, tap=lambda d, data: wire.append((d, B.parse(data)))))
    host, port = proxy.address
    proc = subprocess.Popen([NODE, str(PEER), host, str(port), "node-ticker", "10", "21"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=PEER.parent)
    try:
        assert proc.stdout.readline().startswith("registered rd/")
        got = {10: [], 21: []}

        async def observe(rid):
            return await st.server.observe("node-ticker", "/3/0/%d" % rid, lambda v, o: got[rid].append(v))

        cancelled, going_on = st.call(observe(10)), st.call(observe(21))
        wait_for(lambda: len(got[10]) >= 3, "no notifications before cancel")
        [token] = [m["token"] for d, m in wire if d == "down" and m["code"] == "0.01" and 6 in m["options"]
                   and m["options"][11] == [b"3", b"0", b"10"]]
        st.sync(cancelled.cancel)
        since, seen = len(wire), len(got[21])
        wait_for(lambda: len(got[21]) >= seen + 5, "the other observation stopped too")
        after = [m for d, m in wire[since:] if d == "up" and m["token"] == token and m["type"] == B.CON]
        answers = [m for d, m in wire[since:] if d == "down" and m["mid"] in {a["mid"] for a in after}]
        assert len(after) == 1, "notifications after cancel: %d" % len(after)
        assert [(m["type"], m["code"]) for m in answers] == [(B.RST, "0.00")]
        assert going_on.active and st.server.observations("node-ticker") == [going_on]
    finally:
        proc.terminate()
        proc.wait(10)
        st.sync(proxy.close)


def wait_for(condition, what, timeout=30):
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(0.02)
    assert condition(), what


def test_device_without_the_tinyml_object_is_listed_but_refused(tmp_path):
    """lwm2m-node-lib lists only /3/0: an ordinary LwM2M device. It stays listed; refreshing its capabilities
    answers 409 with the reason instead of reading an object it never listed, and a deployment to it is refused
    before anything is created."""

    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        api = build_api(svc.server, svc)
        await api.start("127.0.0.1", 0)
        base = "http://127.0.0.1:%d" % api.port
        proc = await asyncio.create_subprocess_exec(NODE, str(PEER), "127.0.0.1", str(svc.server.port), "generic",
                                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                    stderr=subprocess.DEVNULL, cwd=PEER.parent)
        try:
            assert (await proc.stdout.readline()).startswith(b"registered rd/")
            svc.catalog.add(CORPUS / "conv_same_dilated.tflite", "conv", "1", builds=[])
            status, devices = await http("GET", base + "/api/devices")
            assert status == 200 and [(d["endpoint"], d["objects"]) for d in devices] == [("generic", ["/3/0"])]
            status, err = await http("POST", base + "/api/devices/generic/refresh")
            assert (status, err) == (409, {"error": "device generic does not implement the TinyML object (32770)"})
            status, err = await http("POST", base + "/api/deployments", {"model": "conv", "devices": ["generic"]})
            assert status == 400 and err["error"] == "device generic does not implement the TinyML object (32770)"
            assert svc.deployments.list() == []
            with pytest.raises(UserError, match="does not implement the TinyML object"):
                svc.explain("conv", "generic")
        finally:
            proc.terminate()
            await proc.wait()
            await api.stop()
            await svc.stop()

    asyncio.run(main())


async def http(method, url, body=None):
    def call():
        req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    return await asyncio.to_thread(call)
