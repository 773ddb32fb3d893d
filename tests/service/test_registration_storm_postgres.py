"""A registration storm on PostgreSQL, with real processes: a throw-away PostgreSQL server, `tinymlaas serve --db
postgresql://...` and `tinymlaas fleet emulate` (200 MicroPython devices started at once).

Every device must have its capabilities (its TinyML object, read by the server after Register) long before its
first Update (lifetime 300 s: ~225 s), and the server's database work is batched: fewer commits than
registrations, counted by the server (/api/health "database"). Before, each Register, capability read,
telemetry sample and Device-object record was its own commit, synchronous on the event loop (4 per device)."""

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tinymlaas.db import Database
from tinymlaas.service.node_group import free_port, wait

_spec = importlib.util.spec_from_file_location("coap_bytes", Path(__file__).parents[1] / "lwm2m" / "coap_bytes.py")
coap_bytes = importlib.util.module_from_spec(_spec)  # hand-made datagrams (tests/lwm2m), not a package import here
_spec.loader.exec_module(coap_bytes)

COUNT = 200
LIFETIME = 300  # first Update at ~225 s: capabilities seen before that were not read at an Update

pytestmark = pytest.mark.xdist_group("e2e")


def serve(url, tmp_path):
    """`tinymlaas serve` on `url` -> (process, CoAP port, HTTP port), once its API is up."""
    coap_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinymlaas", "serve", "--db", url, "--data", str(tmp_path / "data"),
         "--coap-host", "127.0.0.1", "--coap-port", str(coap_port), "--http-port", str(http_port)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait(lambda: "API on" in log.read_text() or proc.poll() is not None, 60, "tinymlaas serve")
    assert proc.poll() is None, log.read_text()[-3000:]
    return proc, coap_port, http_port


def test_a_register_answered_is_stored_when_the_server_is_killed_at_once(db_url, tmp_path):
    """Writes go through a writer thread, but a Register is answered 2.01 only once committed: SIGKILL right after
    the answer loses nothing (SQLite file and PostgreSQL)."""
    url = db_url if "://" in db_url else "sqlite:///" + db_url
    proc, coap_port, _ = serve(url, tmp_path)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            for i in range(20):
                sock.sendto(coap_bytes.register(i + 1, ep="durable-%02d" % i, token=bytes([i + 1])),
                            ("127.0.0.1", coap_port))
            answered = set()
            while len(answered) < 20:
                answer = coap_bytes.parse(sock.recv(2048))
                if answer["code"].startswith("0."):  # the server reading the Device object of one registered
                    continue
                assert answer["code"] == "2.01", answer
                answered.add(answer["token"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    db = Database(url)
    try:
        rows = db.query("SELECT endpoint FROM devices ORDER BY endpoint")
        assert [r["endpoint"] for r in rows] == ["durable-%02d" % i for i in range(20)]
    finally:
        db.close()


def test_storm_on_postgresql_every_device_read_soon_and_commits_batched(postgres_url, tmp_path):
    serve_proc, coap_port, http_port = serve(postgres_url, tmp_path)
    fleet = None
    db = Database(postgres_url)

    def health():
        with urllib.request.urlopen("http://127.0.0.1:%d/api/health" % http_port, timeout=10) as r:
            return json.loads(r.read())

    def with_capabilities():
        return db.query_one("SELECT COUNT(*) AS n FROM devices WHERE capabilities IS NOT NULL")["n"]

    try:
        commits_before = health()["database"]["commits"]
        started = time.monotonic()
        fleet = subprocess.Popen(
            [sys.executable, "-m", "tinymlaas", "fleet", "emulate", "--server", "coap://127.0.0.1:%d" % coap_port,
             "--count", str(COUNT), "--prefix", "storm", "--lifetime", str(LIFETIME), "--per-process", str(COUNT),
             "--data-dir", str(tmp_path / "fleet")],
            stdout=open(tmp_path / "fleet.log", "w"), stderr=subprocess.STDOUT)
        wait(lambda: db.query_one("SELECT COUNT(*) AS n FROM devices")["n"] == COUNT, 40, "every device registered")
        # Bound: 60 s from the fleet's start, a quarter of the time to the first Update (no Update helps here)
        try:
            wait(lambda: with_capabilities() == COUNT, 60 - (time.monotonic() - started), "every device's capabilities")
        except AssertionError as e:
            raise AssertionError("%s: %d of %d read" % (e, with_capabilities(), COUNT)) from None
        assert db.query_one("SELECT COUNT(*) AS n FROM device_events WHERE event='updated'")["n"] == 0
        h = health()
        commits = h["database"]["commits"] - commits_before
        print("storm: %d devices, %d commits (%.2f per device), %d reads retried, all read in %.1f s"
              % (COUNT, commits, commits / COUNT, h["capability_reads"]["retries"], time.monotonic() - started))
        # Register + capabilities + telemetry sample + Device object were 4 commits per device, one at a time
        assert commits < COUNT, commits
        events = db.query_one("SELECT COUNT(*) AS n FROM device_events WHERE event='registered'")["n"]
        assert events >= COUNT  # every answered Register is stored (a device may register again after a loss)
    finally:
        for proc in (fleet, serve_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        db.close()
