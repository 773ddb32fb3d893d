"""Processes of a node group on one host, for tests and benchmarks: `tinymlaas serve --node NAME` subprocesses on
one PostgreSQL (docs/nodes.md), each with its HTTP API on a free loopback port."""

import json
import os
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


class NetworkHost:
    """A network namespace standing for a separate host: a veth pair, 10.x.N.1 on our side and 10.x.N.2 inside
    (root and `ip netns` needed). PostgreSQL's Unix socket is reachable from it: namespaces share the file system."""

    def __init__(self, number, prefix="tmla"):
        self.ns = "%s-%d-%d" % (prefix, os.getpid(), number)
        net = "10.%d.%d" % (100 + os.getpid() % 100, number)      # apart from another test session's hosts
        self.outer, self.inner = net + ".1", net + ".2"
        self._veth = "tv%d-%d" % (os.getpid() % 10000, number)

    def __enter__(self):
        def ip(*args):
            subprocess.run(["ip"] + list(args), check=True, capture_output=True, timeout=10)

        ip("netns", "add", self.ns)
        try:
            ip("link", "add", self._veth + "a", "type", "veth", "peer", "name", self._veth + "b")
            ip("link", "set", self._veth + "b", "netns", self.ns)
            ip("addr", "add", self.outer + "/24", "dev", self._veth + "a")
            ip("link", "set", self._veth + "a", "up")
            ip("netns", "exec", self.ns, "ip", "addr", "add", self.inner + "/24", "dev", self._veth + "b")
            ip("netns", "exec", self.ns, "ip", "link", "set", self._veth + "b", "up")
            ip("netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
            # a port without its node answers every datagram with ICMP port unreachable, as a host does after its
            # node process died once its 1/s ICMP rate limit is off; nginx ends a session on it (docs/nodes.md)
            ip("netns", "exec", self.ns, "sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0")
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=10)   # takes the veth pair

    def command(self, argv):
        return ["ip", "netns", "exec", self.ns] + list(argv)


class ServeNode:
    def __init__(self, name, url, data, coap_port, log_dir, reuse_port, host=None):
        self.name, self.url, self.data, self.coap_port, self.reuse_port = name, url, data, coap_port, reuse_port
        self.host = host            # a NetworkHost, or None: this host's loopback
        self.address = host.inner if host else "127.0.0.1"
        self.http_port = free_port(socket.SOCK_STREAM)
        self.log = log_dir / ("node-%s.log" % name)
        self.proc = None

    def start(self):
        out = open(self.log, "a")
        argv = [sys.executable, "-m", "tinymlaas", "serve", "--db", self.url, "--data", str(self.data), "--node",
                self.name, "--coap-host", self.address, "--coap-port", str(self.coap_port), "--http-port",
                str(self.http_port)] + (["--reuse-port"] if self.reuse_port else [])
        # `ip netns exec` execs the command: the process is the node itself (a SIGKILL reaches it)
        self.proc = subprocess.Popen(self.host.command(argv) if self.host else argv, stdout=out,
                                     stderr=subprocess.STDOUT)
        wait(lambda: "API on" in self.log.read_text() or self.proc.poll() is not None, 60, "node %s" % self.name)
        if self.proc.poll() is not None:
            raise RuntimeError("node %s exited: %s" % (self.name, self.log.read_text()[-3000:]))
        return self

    def api(self, path, body=None):
        if self.host:       # the API listens on the namespace's loopback: ask from inside it
            code = ("import sys, urllib.request; r = urllib.request.Request(sys.argv[1], "
                    "data=sys.argv[2].encode() or None, headers={'Content-Type': 'application/json'}); "
                    "print(urllib.request.urlopen(r, timeout=30).read().decode())")
            out = subprocess.run(self.host.command([sys.executable, "-c", code, "http://127.0.0.1:%d%s" % (
                self.http_port, path), json.dumps(body) if body is not None else ""]), capture_output=True,
                text=True, timeout=60, check=True).stdout
            return json.loads(out)
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
