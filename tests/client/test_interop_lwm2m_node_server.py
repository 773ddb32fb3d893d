"""Interop: the real MicroPython client (an emulated board) against an independent LwM2M server, lwm2m-node-lib's
(FIWARE, npm; tests/interop/lwm2m_server_peer.js), which takes the device's Register, then reads, writes, executes
and discovers its resources. Installed by `npm install` in tests/interop (host/scripts/setup.sh)."""

import json
import shutil
import socket
import subprocess
from pathlib import Path

from tinymlaas.devices.emulated import EmulatedDevice

PEER = Path(__file__).resolve().parents[1] / "interop" / "lwm2m_server_peer.js"
NODE = shutil.which("node")

OPERATIONS = [
    "read:/3/0/0", "read:/32770/0/7", "read:/32770/0/16", "read:/1/0/1",
    "write:/3/0/13=2000000000", "read:/3/0/13",        # Current Time is writable (OMA object 3)
    "write:/1/0/1=120", "read:/1/0/1",
    "write:/32770/0/21=AAEC",                          # the model input takes raw bytes only: 4.15
    "write:/3/0/0=x",                                  # read-only: 4.05
    "execute:/1/0/8",                                  # Registration Update Trigger
    "discover:/32770/0/21", "read:/9/0/0",
]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_device_registers_with_lwm2m_node_lib_server_which_reads_and_writes(tmp_path):
    assert NODE and (PEER.parent / "node_modules" / "lwm2m-node-lib").is_dir(), "run `npm install` in tests/interop"
    port = free_port()
    server = subprocess.Popen([NODE, str(PEER), str(port)] + OPERATIONS, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=PEER.parent)
    try:
        assert json.loads(server.stdout.readline()) == {"listening": port}
        with EmulatedDevice("coap://127.0.0.1:%d" % port, "node-srv-1", profile="esp32", data_dir=tmp_path / "dev"):
            lines = [json.loads(line) for line in server.stdout]   # until the peer is done and exits
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(10)
    reg, results, done = lines[0], lines[1:-1], lines[-1]
    assert done == {"done": True}, lines
    assert reg["registered"] == "node-srv-1" and reg["version"] == "1.1" and reg["lifetime"] == "300"
    links = reg["payload"].split(",")
    assert links[0] == '</>;rt="oma.lwm2m"' and "</32770/0>" in links and "</5/0>" in links
    got = {(r["op"], r["path"]): r.get("result", r.get("error")) for r in results}
    assert [(r["op"], r["path"]) for r in results] == [tuple(op.split("=")[0].split(":", 1)) for op in OPERATIONS]
    assert got[("read", "/3/0/0")] == "tinymlaas"
    assert got[("read", "/32770/0/7")] == "micropython" and got[("read", "/32770/0/16")] == "none"
    assert got[("read", "/1/0/1")] == "120"                  # read after the write (the dict keeps the last)
    assert 2000000000 <= int(got[("read", "/3/0/13")]) <= 2000000010
    assert got[("write", "/3/0/13")] == "" and got[("write", "/1/0/1")] == ""
    assert got[("write", "/32770/0/21")].startswith("CLIENT_ERROR 4.15")
    assert got[("write", "/3/0/0")].startswith("CLIENT_ERROR 4.05")
    assert got[("execute", "/1/0/8")] == ""
    assert "</32770/0/21>" in got[("discover", "/32770/0/21")]
    assert "4.04" in got[("read", "/9/0/0")]
