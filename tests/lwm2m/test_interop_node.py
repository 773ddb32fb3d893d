"""Interop with an independent LwM2M client: lwm2m-node-lib (FIWARE, npm) registers with the server, answers
Reads and a Write, and de-registers. Installed by `npm install` in tests/interop (host/scripts/setup.sh)."""

import shutil
import subprocess
import time
from pathlib import Path

from tinymlaas.lwm2m.server import DeviceError

PEER = Path(__file__).resolve().parents[1] / "interop" / "lwm2m_peer.js"
NODE = shutil.which("node")


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
