"""The command line as a user drives it: models add -> serve -> a device registers -> explain -> deploy ->
deployments, each a separate `tinymlaas` process sharing one data directory."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinymlaas.devices.emulated import EmulatedDevice

CLI = [sys.executable, "-m", "tinymlaas.cli"]
MODEL = Path(__file__).resolve().parents[1] / "corpus" / "models" / "conv_same_dilated.tflite"

pytestmark = pytest.mark.xdist_group("e2e")


def tml(*args, timeout=300):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def test_models_serve_explain_deploy(tmp_path):
    data = tmp_path / "data"
    r = tml("models", "add", MODEL, "--name", "conv", "--task", "demo", "--data", data, "--json")
    assert r.returncode == 0, r.stderr
    added = json.loads(r.stdout)
    assert {v["runtime"] for v in added["variants"]} == {"tinyml-mpy", "tflm"}
    assert tml("models", "add", tmp_path, "--name", "x", "--data", data).returncode == 2   # not a model

    serve = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-port", "0",
                                    "--data", data], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dev = None
    try:
        line = serve.stdout.readline()
        m = re.search(r"coap://127\.0\.0\.1:(\d+), API on (http://127\.0\.0\.1:\d+)", line)
        assert m, line
        coap, api = int(m.group(1)), m.group(2)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % coap, "cli-dev", profile="esp32", data_dir=tmp_path / "dev").start()
        dev.wait_registered(60)
        for _ in range(100):                  # capabilities are read right after registration
            r = tml("explain", "--model", "conv", "--device", "cli-dev", "--server", api, "--json")
            if r.returncode != 2:
                break
            time.sleep(0.2)
        assert r.returncode == 0, r.stderr
        ex = json.loads(r.stdout)
        chosen = [v for v in ex["variants"] if v["chosen"]]
        assert len(chosen) == 1 and chosen[0]["runtime"] == "tinyml-mpy"

        r = tml("deploy", "--model", "conv", "--devices", "cli-dev", "--server", api, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        dep = json.loads(r.stdout)
        assert dep["state"] == "completed" and dep["devices"][0]["state"] == "active"
        r = tml("deployments", str(dep["id"]), "--server", api)
        assert r.returncode == 0 and "self-test passed on device" in r.stdout
        r = tml("deployments", str(dep["id"]), "--halt", "--server", api)       # finished: nothing to halt
        assert r.returncode == 2 and "is completed, not running" in r.stderr, r.stderr
        r = tml("deployments", str(dep["id"]), "--rollback", "--server", api)   # no model before it: kept
        assert r.returncode == 0 and "cli-dev: kept: it ran no model" in r.stdout, r.stdout + r.stderr
        r = tml("deploy", "--model", "nope", "--devices", "cli-dev", "--server", api)
        assert r.returncode == 2 and "unknown model 'nope'" in r.stderr
    finally:
        if dev:
            dev.stop()
        serve.terminate()
        serve.wait(10)


def test_oscore_keys_serve_and_device_emulate(tmp_path):
    """oscore-keys new -> serve --oscore-keys -> device emulate --oscore-keys: the device registers under OSCORE,
    `devices` says so; the same endpoint without the keys is not registered."""
    keys = tmp_path / "keys.json"
    assert tml("oscore-keys", "new", keys, "--endpoint", "sec-cli").returncode == 0
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    serve = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-port", "0",
                                    "--data", tmp_path / "data", "--oscore-keys", keys],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    devs = []
    try:
        m = re.search(r"coap://127\.0\.0\.1:(\d+), API on (http://127\.0\.0\.1:\d+)", serve.stdout.readline())
        coap, api = "coap://127.0.0.1:%s" % m.group(1), m.group(2)
        devs.append(subprocess.Popen(CLI + ["device", "emulate", "--server", coap, "--endpoint", "sec-cli",
                                            "--data-dir", tmp_path / "d1", "--oscore-keys", keys],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for line in devs[0].stdout:
            if "registered" in line:
                break
        r = tml("devices", "--server", api)
        assert r.returncode == 0 and re.search(r"sec-cli .* OSCORE", r.stdout), r.stdout
        # the same name without keys: the server refuses it (4.01), the registration stays the secured one
        devs.append(subprocess.Popen(CLI + ["device", "emulate", "--server", coap, "--endpoint", "sec-cli",
                                            "--data-dir", tmp_path / "d2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for line in devs[1].stdout:
            if "register failed" in line:
                break
        assert "4.01" in line, line
        r = tml("devices", "--server", api, "--json")
        [d] = json.loads(r.stdout)
        assert d["endpoint"] == "sec-cli" and d["security"] == "oscore"
    finally:
        for p in devs:
            p.terminate()
            p.wait(30)
        serve.terminate()
        serve.wait(30)


def test_serve_with_a_bootstrap_server_and_a_device_that_knows_only_it(tmp_path):
    serve = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-port", "0",
                                    "--data", tmp_path / "data", "--bootstrap-port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dev = None
    try:
        api = re.search(r"API on (http://127\.0\.0\.1:\d+)", serve.stdout.readline()).group(1)
        bs = re.search(r"Bootstrap-Server on (coap://127\.0\.0\.1:\d+)", serve.stdout.readline()).group(1)
        dev = subprocess.Popen(CLI + ["device", "emulate", "--bootstrap", bs, "--endpoint", "zt-1",
                                      "--data-dir", tmp_path / "dev"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in dev.stdout:
            if "registered" in line:
                break
        r = tml("devices", "--server", api, "--json")
        [d] = json.loads(r.stdout)
        assert d["endpoint"] == "zt-1" and d["security"] == "oscore"
    finally:
        if dev:
            dev.terminate()
            dev.wait(30)
        serve.terminate()
        serve.wait(30)
