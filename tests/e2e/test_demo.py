"""`tinymlaas demo`, the README's main command, as a user runs it: a real process, exit status and its summary;
with --keep-running, its console answers with the tokens it printed until Ctrl-C."""

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.xdist_group("e2e")


def test_demo_picks_different_variants_and_rejects_with_a_reason(tmp_path):
    summary = tmp_path / "summary.json"
    proc = demo_with_its_console(tmp_path, summary)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # nothing left unfinished at the end (a de-registration the stopping server never answered warned here)
    assert "never awaited" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    out = json.loads(summary.read_text())
    rows = {r["device"]: r for r in out["devices"]}
    assert rows["esp32s3-kitchen"]["model"] == "kws"
    assert rows["m4-fan-2"]["model"] == "vibration"
    # Nothing registered fitted m4-fan-2's 16 KB model partition: the service compiled a pruned variant for it.
    assert '"prune"' in rows["m4-fan-2"]["variant"]
    # the pump runs the vibration anomaly model: no alarm for normal windows, alarms (LwM2M Send, under OSCORE)
    # for faulty ones, each stored by the server
    assert rows["esp32-pump-7"]["model"] == "vibration-anomaly" and rows["esp32-pump-7"]["inferences"] == 10
    quiet, faulty = re.fullmatch(r"(\d)/5 normal, (\d)/5 faulty", rows["esp32-pump-7"]["alarms"]).groups()
    assert int(quiet) <= 1 and int(faulty) >= 1, rows["esp32-pump-7"]
    assert proc.stdout.count("alarm from esp32-pump-7 (LwM2M Send)") == int(quiet) + int(faulty)
    kws = {d["endpoint"]: d for d in out["deployments"]["kws"]["devices"]}
    assert kws["m4-fan-2"]["state"] == "failed" and "flash" in kws["m4-fan-2"]["reason"]
    # the ESP32 whose models run on an STM32F4 co-processor (the C firmware under QEMU on its UART)
    assert kws["esp32-stm32-line-3"]["state"] == "active"
    line = rows["esp32-stm32-line-3"]
    assert line["model"] == "kws" and line["profile"] == "esp32+stm32f4" and line["inferences"] == 5
    # esp32-pump-7 was bootstrapped (zero-touch) and is registered, managed and updated under OSCORE, the others NoSec
    assert "esp32-pump-7 bootstrapped: server account and fresh OSCORE keys" in proc.stdout
    assert rows["esp32-pump-7"]["security"] == "OSCORE"
    assert {r["security"] for d, r in rows.items() if d != "esp32-pump-7"} == {"NoSec"}
    assert "Summary" in proc.stdout and "demo finished" in proc.stdout


def http(url, token=None, body=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.geturl(), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, url, e.read().decode()


def demo_with_its_console(tmp_path, summary):
    """Run `tinymlaas demo --keep-running`; once it says it keeps running, look at its console with the tokens it
    printed, then Ctrl-C it. -> CompletedProcess."""
    with open(tmp_path / "stderr", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tinymlaas.cli", "demo", "--keep-running", "--summary-json",
                                 str(summary)], stdout=subprocess.PIPE, stderr=err, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        out = []
        try:
            while not out or "the demo keeps running" not in out[-1]:
                line = lines.get(timeout=600)
                assert line is not None, "".join(out)[-3000:]
                out.append(line)
            text = "".join(out)
            url, operator = re.search(r"console at (http://\S+): sign in with the operator token (tmla_\S+)", text).groups()
            viewer = re.search(r"or the viewer token (tmla_\S+)", text).group(1)
            status, final, page = http(url)                      # no token: the sign-in page
            assert status == 200 and "/console/login" in final
            status, _, page = http(url, operator)                # the fleet: every demo device
            assert status == 200 and all(ep in page for ep in ("esp32s3-kitchen", "esp32-pump-7", "m4-fan-2"))
            status, _, page = http(url + "console/devices/esp32-pump-7", viewer)   # its alarms, from LwM2M Send
            assert status == 200 and '<span class="badge bad">alarm</span>' in page
            status, _, listing = http(url + "api/deployments", viewer)
            assert status == 200 and [d["state"] for d in json.loads(listing)] == ["completed"] * 3
            status, _, refused = http(url + "api/deployments", viewer, {"model": "kws", "devices": ["m4-fan-2"]})
            assert status == 403 and "operator" in refused
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        while (line := lines.get(timeout=10)) is not None:
            out.append(line)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out), err.read())
