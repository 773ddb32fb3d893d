"""A UDP load balancer in front of a node group: Debian's nginx with its stream module, started as our own process.

nginx keeps one UDP "session" per device address (its own socket towards the chosen node, `hash $remote_addr
consistent` so a device sticks to a node and only the dead node's devices move when one goes). The node sees the
session socket's address as the device's: requests the node starts (Read, Write, Execute, Observe notifications)
go back through that session while it lives, which is why `proxy_timeout` must outlast the devices' Update
interval. nginx (open source) has no active health checks: a dead node is found on a device's datagram and skipped
for `fail_timeout` (30 s: measured, 5 s kept sending the dead node's devices back to it); reloading nginx to drop
a node renews every session and breaks the live nodes' requests until each device sends again, so the node list is
written once. Measured facts and the gaps (no transparent proxying without TPROXY) are in docs/nodes.md.
"""

import shutil
import subprocess
import time
from pathlib import Path

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
# longer than any Update interval we use (lifetime 300 s -> Updates every ~150 s at most)
SESSION_TIMEOUT = "10m"


def nginx_config(prefix, listen, nodes, session_timeout=SESSION_TIMEOUT, fail_timeout=30, key="$remote_addr"):
    """nginx.conf text: UDP `listen` (host:port) balanced over `nodes` (host:port of each CoAP socket). key: what
    the consistent hash takes; the device's address by default (it keeps its node when NAT changes its port);
    "$remote_addr:$remote_port" when many devices share one address (an emulated fleet on loopback)."""
    servers = "\n".join("        server %s max_fails=1 fail_timeout=%ds;" % (n, fail_timeout) for n in nodes)
    return """load_module %(module)s;
daemon off;
master_process on;
worker_processes 1;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log notice;
events { worker_connections 4096; }
stream {
    upstream lwm2m_nodes {
        hash %(key)s consistent;
%(servers)s
    }
    log_format udp '$remote_addr:$remote_port -> $upstream_addr $status $session_time';
    access_log %(prefix)s/access.log udp;
    server {
        listen %(listen)s udp reuseport;
        proxy_pass lwm2m_nodes;
        proxy_timeout %(timeout)s;
        proxy_next_upstream on;
        proxy_connect_timeout 1s;
    }
}
""" % {"module": STREAM_MODULE, "prefix": prefix, "servers": servers, "listen": listen, "timeout": session_timeout,
       "key": key}


class Nginx:
    """nginx -p PREFIX -c nginx.conf in the foreground; stop() ends it (SIGQUIT, then kill)."""

    def __init__(self, prefix, listen, nodes, **options):
        self.prefix = Path(prefix)
        self.listen = listen
        self.nodes = list(nodes)
        self.options = options
        self.proc = None

    @staticmethod
    def binary():
        path = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(path).exists() or not Path(STREAM_MODULE).exists():
            raise RuntimeError("nginx with its stream module is not installed (apt-get install nginx-light "
                               "libnginx-mod-stream)")
        return path

    def start(self, timeout=10):
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(nginx_config(self.prefix, self.listen, self.nodes, **self.options))
        self.proc = subprocess.Popen([self.binary(), "-p", str(self.prefix), "-c", str(conf), "-e",
                                      str(self.prefix / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.prefix / "stderr.log", "w"))
        end = time.monotonic() + timeout
        while not (self.prefix / "nginx.pid").exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("nginx did not start: %s" % (self.prefix / "stderr.log").read_text()[-2000:])
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
