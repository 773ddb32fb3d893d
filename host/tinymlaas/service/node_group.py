"""Processes of a node group on one host, for tests and benchmarks: `tinymlaas serve --node NAME` subprocesses on
one PostgreSQL (docs/nodes.md), each with its HTTP API on a free loopback port."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout, what):
    """pred()'s first true value, polled every 0.2 s; AssertionError after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("timed out (%g s) waiting for %s" % (timeout, what))
        time.sleep(0.2)


class ServeNode:
    def __init__(self, name, url, data, coap_port, log_dir, reuse_port):
        self.name, self.url, self.data, self.coap_port, self.reuse_port = name, url, data, coap_port, reuse_port
        self.http_port = free_port(socket.SOCK_STREAM)
        self.log = log_dir / ("node-%s.log" % name)
        self.proc = None

    def start(self):
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinymlaas", "serve", "--db", self.url, "--data", str(self.data), "--node",
             self.name, "--coap-host", "127.0.0.1", "--coap-port", str(self.coap_port), "--http-port",
             str(self.http_port)] + (["--reuse-port"] if self.reuse_port else []), stdout=out, stderr=subprocess.STDOUT)
        wait(lambda: "API on" in self.log.read_text() or self.proc.poll() is not None, 60, "node %s" % self.name)
        if self.proc.poll() is not None:
            raise RuntimeError("node %s exited: %s" % (self.name, self.log.read_text()[-3000:]))
        return self

    def api(self, path, body=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port, path),
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


def fleet_process(server_port, count, prefix, lifetime, data_dir, log_path, per_process=None):
    """`tinymlaas fleet emulate` of `count` devices (in one micropython process unless per_process is given)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tinymlaas", "fleet", "emulate", "--server", "coap://127.0.0.1:%d" % server_port,
         "--count", str(count), "--prefix", prefix, "--lifetime", str(lifetime), "--per-process", str(per_process or count),
         "--data-dir", str(data_dir)], stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def stop_fleet(fleet):
    if fleet is not None and fleet.poll() is None:
        fleet.send_signal(signal.SIGTERM)
        try:
            fleet.wait(30)
        except subprocess.TimeoutExpired:
            fleet.kill()
