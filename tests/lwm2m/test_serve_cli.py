"""`tinymlaas serve` as a process, a device registering over UDP, and `tinymlaas devices` reading the HTTP API."""

import asyncio
import json
import re
import signal
import subprocess
import sys
import urllib.request

from tinymlaas.lwm2m.reference_client import ReferenceClient

# The installed entry point's code path (not `python -m tinymlaas.cli`, which would load cli.py twice).
CLI = [sys.executable, "-c", "import sys; from tinymlaas.cli import main; sys.exit(main())"]


def test_serve_and_devices(tmp_path):
    db = tmp_path / "t.db"
    proc = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1",
                             "--coap-port", "0", "--http-port", "0", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"coap://127\.0\.0\.1:(\d+).*http://127\.0\.0\.1:(\d+)", line)
        assert m, line + proc.stderr.read()
        coap_port, http_port = int(m.group(1)), int(m.group(2))

        async def device():
            c = await ReferenceClient("cli-dev").start("coap://127.0.0.1:%d" % coap_port)
            resp = await c.register()
            await asyncio.sleep(0.5)  # the server reads the TinyML object right after registering
            await c.stop()
            return resp

        assert asyncio.run(device()).code.dotted == "2.01"
        assert proc.stdout.readline().startswith("registered cli-dev 127.0.0.1:")

        out = subprocess.run(CLI + ["devices", "--json", "--server",
                              "http://127.0.0.1:%d" % http_port], capture_output=True, text=True, check=True).stdout
        [d] = json.loads(out)
        assert d["endpoint"] == "cli-dev" and re.match(r"127\.0\.0\.1:\d+$", d["address"])
        assert d["capabilities"]["Machine"] == "x64" and d["installed_model"] is None
        assert d["registered_at_utc"].endswith("Z")

        table = subprocess.run(CLI + ["devices", "--server",
                                "http://127.0.0.1:%d" % http_port], capture_output=True, text=True, check=True).stdout
        assert table.splitlines()[0].split()[:2] == ["ENDPOINT", "ADDRESS"] and "cli-dev" in table

        with urllib.request.urlopen("http://127.0.0.1:%d/api/health" % http_port) as r:
            assert json.loads(r.read())["devices"] == 1
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/api/devices/nobody" % http_port)
            raise AssertionError("expected 404")
        except urllib.error.HTTPError as e:
            assert e.code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    # The registration was persisted and is there for the next start.
    import sqlite3

    assert sqlite3.connect(db).execute("SELECT endpoint FROM devices").fetchall() == [("cli-dev",)]


def test_serve_rejects_busy_port(tmp_path):
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    r = subprocess.run(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port",
                        str(port), "--http-port", "0", "--db", str(tmp_path / "x.db")], capture_output=True, text=True,
                       timeout=30)
    s.close()
    assert r.returncode == 2 and "cannot bind CoAP" in r.stderr


def test_devices_without_a_server_is_a_clear_error():
    r = subprocess.run(CLI + ["devices", "--server", "http://127.0.0.1:1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "cannot reach http://127.0.0.1:1/api/devices" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
