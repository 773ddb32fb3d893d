"""GET /api/devices with 50 registered devices: the aiohttp API (web/) against the hand-written HTTP/1.1 server
it replaced (lwm2m/http_api.py, read from git history at PEER_COMMIT), same route, same JSON, same process.

The servers run in a child process, in one event loop with a real LwM2M server and 50 CPython reference
clients registered over UDP; the client (http.client) runs in this process, so the two do not share a GIL. Rows: a new connection per request (the old server closed every connection), the same with a bearer
token (auth on), and aiohttp on one keep-alive connection (the old server cannot). Then 8 concurrent clients
(threads) for 2 s each: requests per second. Printed, never asserted; the ratio is aiohttp / old.

    python -m bench http_api          (or: python bench/http_api.py [--quick])
"""

import asyncio
import http.client
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

from tinymlaas.lwm2m.server import LwM2MServer
from tinymlaas.web import build_api

PEER_COMMIT = "d3b8f46^"          # the last commit with lwm2m/http_api.py
DEVICES = 50
REPEAT = 400
CONCURRENCY = 8


def old_server_module():
    """The replaced server's source from git history, as a module (None without git or history)."""
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["git", "-C", str(root), "show", PEER_COMMIT + ":host/tinymlaas/lwm2m/http_api.py"],
                       capture_output=True, text=True)
    if r.returncode:
        return None
    mod = types.ModuleType("old_http_api")
    exec(compile(r.stdout, "old_http_api.py", "exec"), mod.__dict__)
    return mod


async def registered_server():
    from tinymlaas.lwm2m.reference_client import ReferenceClient

    server = await LwM2MServer(":memory:", read_capabilities=False).start("127.0.0.1", 0)
    clients = [await ReferenceClient("bench-%02d" % i).start("coap://127.0.0.1:%d" % server.port)
               for i in range(DEVICES)]
    for c in clients:
        await c.register()
    return server, clients


def one_request(port, headers, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/devices", headers=headers)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and body.count(b'"endpoint"') == DEVICES, (r.status, body[:200])
    if conn is None:
        c.close()


def latencies(port, headers, repeat, keep_alive=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10) if keep_alive else None
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        one_request(port, headers, conn)
        out.append(time.perf_counter() - t)
    out.sort()
    return out[len(out) // 2] * 1000, out[int(len(out) * 0.95)] * 1000


def throughput(port, headers, seconds, keep_alive=False):
    done = [0] * CONCURRENCY
    end = time.perf_counter() + seconds

    def worker(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10) if keep_alive else None
        while time.perf_counter() < end:
            one_request(port, headers, conn)
            done[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


async def serve_all():
    """The child: every server on one loop; prints their ports and the token, runs until killed."""
    server, clients = await registered_server()
    new_api = await build_api(server).start("127.0.0.1", 0)
    authed = build_api(server, auth=True)
    await authed.start("127.0.0.1", 0)
    token = authed.tokens.create("viewer", "bench")[1]
    old = old_server_module()
    old_port = 0
    if old is not None:
        old_port = (await old.device_routes(old.HttpApi(), server).start("127.0.0.1", 0)).port
    print(old_port, new_api.port, authed.port, token, flush=True)
    await asyncio.Event().wait()


def main(argv):
    repeat, seconds = (100, 0.5) if "--quick" in argv else (REPEAT, 2.0)
    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    rows = []
    try:
        old_port, new_port, auth_port, token = child.stdout.readline().split()
        bearer = {"Authorization": "Bearer " + token}
        targets = [("aiohttp, new connection", int(new_port), {}, False),
                   ("aiohttp + bearer token", int(auth_port), bearer, False),
                   ("aiohttp, keep-alive", int(new_port), {}, True)]
        if int(old_port):
            targets.insert(0, ("hand-written (old)", int(old_port), {}, False))
        else:
            print("  (no git history here: the old server is not measured)")
        for label, port, headers, keep in targets:
            latencies(port, headers, 20, keep)                          # warm up
            p50, p95 = latencies(port, headers, repeat, keep)
            rate = throughput(port, headers, seconds, keep)
            rows.append((label, p50, p95, rate))
            print("  %-26s p50 %6.2f ms  p95 %6.2f ms  %6.0f req/s (%d clients)"
                  % (label, p50, p95, rate, CONCURRENCY), flush=True)
    finally:
        child.kill()
        child.wait(10)
    if int(old_port):
        base = rows[0]
        for label, p50, p95, rate in rows[1:]:
            print("  %-26s p50 x%.2f, req/s x%.2f of the old server" % (label, p50 / base[1], rate / base[3]))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        asyncio.run(serve_all())
    sys.exit(main(sys.argv[1:]))
