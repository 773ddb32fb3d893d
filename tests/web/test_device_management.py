"""Device management through the HTTP API (web/lwm2m.py) against real clients over loopback UDP: the project's
MicroPython client (lwm2m_client/tinyml_device.py in the unix port) and lwm2m-node-lib (npm), a generic LwM2M
device without the TinyML object. Reads in each format with the raw bytes, Write, partial Write, Execute,
Discover, Write-Attributes, Create/Delete refusals, Observe with notifications on the SSE stream, Cancel."""

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import trust_args
from tinymlaas.paths import LWM2M_CLIENT

PEER = Path(__file__).resolve().parents[1] / "interop" / "lwm2m_peer.js"


def wait_for(cond, what, timeout=30):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


@pytest.fixture
def mpy_device(web_auth, tmp_path):
    cmd = unixport.command(LWM2M_CLIENT / "tinyml_device.py", "512k",
                           ["--server", web_auth.coap_uri, "--endpoint", "mpy-dm", "--data-dir", str(tmp_path / "fs"),
                            *trust_args()])
    proc = subprocess.Popen(cmd, env=unixport.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (r := web_auth.server.find("mpy-dm")) is not None and r.capabilities, "mpy-dm to register")
        yield web_auth
    finally:
        proc.terminate()
        proc.wait(10)


def test_micropython_device_read_write_execute_discover(mpy_device):
    w = mpy_device
    op = w.client(w.token("operator"))
    viewer = w.client(w.token("viewer"))
    dm = "/api/devices/mpy-dm/lwm2m"

    status, tlv, _ = viewer.get(dm + "/3/0?format=tlv&raw=1")
    assert status == 200 and tlv["format"] == "tlv" and tlv["content_format"] == 11542
    by_path = {v["path"]: v for v in tlv["values"]}
    assert by_path["/3/0/0"]["type"] == "String" and by_path["/3/0/0"]["value"]
    def same(a, b):      # one meaning in two encodings (free memory, /3/0/10, moves between reads)
        return [(v["path"], v["type"]) for v in a] == [(v["path"], v["type"]) for v in b] and \
            [v for v in a if v["path"] != "/3/0/10"] == [v for v in b if v["path"] != "/3/0/10"]

    status, senml, _ = viewer.get(dm + "/3/0?format=senml-json&raw=1")
    assert status == 200 and same(senml["values"], tlv["values"])
    records = json.loads(bytes.fromhex(senml["raw"]))                  # the device's own bytes
    assert any(r.get("vs") == by_path["/3/0/0"]["value"] for r in records)
    status, cbor, _ = viewer.get(dm + "/3/0?format=senml-cbor")
    assert status == 200 and same(cbor["values"], tlv["values"]) and "raw" not in cbor
    status, text, _ = viewer.get(dm + "/3/0/0?format=text&raw=1")
    assert bytes.fromhex(text["raw"]).decode() == by_path["/3/0/0"]["value"]

    assert op.put(dm + "/1/0/2", {"value": 7})[:2] == (200, {"endpoint": "mpy-dm", "path": "/1/0/2", "code": "2.04"})
    assert op.post(dm + "/1/0", {"values": {"/1/0/3": 90}, "format": "tlv"})[1]["code"] == "2.04"   # partial
    status, server_obj, _ = viewer.get(dm + "/1/0")
    values = {v["path"]: v["value"] for v in server_obj["values"]}
    assert values["/1/0/2"] == 7 and values["/1/0/3"] == 90
    status, err, _ = op.put(dm + "/1/0/1", {"value": 0})                # the device refuses
    assert status == 502 and err["code"] == "4.00" and "lifetime" in err["error"]

    updated = w.server.find("mpy-dm").updated_at
    assert op.post(dm + "/1/0/8")[1]["code"] == "2.04"                 # Registration Update Trigger
    wait_for(lambda: w.server.find("mpy-dm").updated_at > updated, "the device's Update")

    status, disc, _ = viewer.get(dm + "/5/0/discover")
    assert status == 200 and "/5/0/3" in [l["uri"] for l in disc["links"]]
    assert op.put(dm + "/1/0/2/attributes", {"pmin": 1, "pmax": 30})[1]["code"] == "2.04"

    # what the MicroPython client does not do is its answer, passed on
    status, err, _ = op.post(dm + "/3", {"values": {"/3/1/0": "x"}})
    assert status == 502 and err["code"] == "4.05"
    status, err, _ = op.delete(dm + "/3/0")
    assert status == 502 and err["code"] == "4.05"

    # checked before anything is sent: the wrong type, a path outside, a bad id, a viewer writing
    assert op.put(dm + "/1/0/2", {"value": "seven"})[0] == 400
    assert op.put(dm + "/1/0", {"values": {"/3/0/1": "x"}})[0] == 400
    assert op.get(dm + "/3/0/70000")[0] == 400
    assert op.get(dm + "/3/0?format=xml")[0] == 400
    assert viewer.put(dm + "/1/0/2", {"value": 8})[0] == 403
    assert op.get("/api/devices/nobody/lwm2m/3/0")[0] == 404
    assert {v["path"]: v["value"] for v in viewer.get(dm + "/1/0")[1]["values"]}["/1/0/2"] == 7


def sse_events(url, token, kinds, count, timeout=30):
    """The first `count` events of `kinds` read from the SSE stream at url: [(kind, data)]."""
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    got = []
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        kind = None
        while len(got) < count:
            line = r.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind in kinds:
                got.append((kind, json.loads(line[6:])))
    return got


def test_generic_node_device_listed_observed_and_cancelled(web_auth):
    assert shutil.which("node") and (PEER.parent / "node_modules" / "lwm2m-node-lib").is_dir()
    w = web_auth
    token = w.token("operator")
    op = w.client(token)
    proc = subprocess.Popen(["node", str(PEER), "127.0.0.1", str(w.server.port), "node-dm", "10"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=PEER.parent)
    try:
        assert proc.stdout.readline().startswith("registered rd/")
        [dev] = op.get("/api/devices")[1]
        assert dev["endpoint"] == "node-dm" and dev["objects"] == ["/3/0"] and dev["installed_model"] is None
        status, read, _ = op.get("/api/devices/node-dm/lwm2m/3/0/0")
        assert status == 200 and read["values"] == [{"path": "/3/0/0", "type": "String",
                                                      "value": "FIWARE lwm2m-node-lib"}]
        assert op.put("/api/devices/node-dm/lwm2m/3/0/14", {"value": "+05:30"})[1]["code"] == "2.04"
        assert op.get("/api/devices/node-dm/lwm2m/3/0/14")[1]["values"][0]["value"] == "+05:30"

        import threading

        events = []
        reader = threading.Thread(target=lambda: events.extend(
            sse_events(w.base + "/api/events?endpoint=node-dm", token, ("notification",), 3)))
        reader.start()
        wait_for(lambda: w.api.hub.readers, "the SSE reader")
        status, first, _ = op.post("/api/devices/node-dm/lwm2m/3/0/10/observe")
        assert status == 201 and first["active"] and first["values"][0]["path"] == "/3/0/10"
        again = op.post("/api/devices/node-dm/lwm2m/3/0/10/observe")[1]      # the same observation, shared
        assert again["since"] == first["since"]
        reader.join(30)
        assert len(events) == 3 and all(d["endpoint"] == "node-dm" and d["path"] == "/3/0/10" for _, d in events)
        counts = [int(d["values"][0]["value"]) for _, d in events]
        assert counts == sorted(counts) and counts[-1] > counts[0]           # the ticker counts up
        [listed] = op.get("/api/devices/node-dm/observations")[1]
        assert listed["active"] and listed["notifications"] >= 2

        assert op.delete("/api/devices/node-dm/lwm2m/3/0/10/observe")[0] == 200
        assert op.get("/api/devices/node-dm/observations")[1] == []
        assert op.delete("/api/devices/node-dm/lwm2m/3/0/10/observe")[0] == 404
        assert w.server.observations("node-dm") == []
    finally:
        proc.terminate()
        proc.wait(10)
