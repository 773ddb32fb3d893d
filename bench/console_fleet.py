"""The fleet console at 1,000 devices: API and page latency, and the fleet page's first render in Chromium.

A real `tinymlaas serve --auth required` process; devices are CPython reference clients on aiocoap
(lwm2m/reference_client.py, one UDP socket each) in a child process of their own, registering over CoAP/UDP and
answering the server's reads of their Device (/3/0) and TinyML (/32770/0) objects, so every fleet row has a
board, capabilities and (for a third of them) an installed model; half are tagged. The peer of every row is the
same request at PEER devices, measured in the same run before the rest register: the ratio says how the cost
grows with the fleet. HTTP requests go over one keep-alive connection with a bearer token (http.client, this
process); the browser is Debian's headless chromium via chromium-driver, signed in with a session cookie.

    python -m bench console_fleet          (or: python bench/console_fleet.py [--devices N] [--quick])
"""

import asyncio
import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

DEVICES = 1000
PEER = 10
REPEAT = 200
PAGE_REPEAT = 40
RENDERS = 10
CLI = [sys.executable, "-c", "import sys; from tinymlaas.cli import main; sys.exit(main())"]
MODEL_SHA = "ab" * 32


def endpoint(i):
    return "bench-%04d" % i


async def run_devices(coap_uri, start, count):
    """The child: register endpoints start..start+count-1, print "registered", answer reads until stdin closes."""
    import aiocoap.error

    from tinymlaas.lwm2m.reference_client import ReferenceClient, default_values

    clients = []
    for i in range(start, start + count):
        values = default_values(endpoint(i))
        if i % 3 == 0:                                  # a third run a model, as the TinyML object reports it
            values.update({(32770, 0, 11): "kws", (32770, 0, 12): "1", (32770, 0, 13): MODEL_SHA,
                           (32770, 0, 16): "active"})
        clients.append(await ReferenceClient(endpoint(i), values, lifetime=86400).start(coap_uri))
    sem = asyncio.Semaphore(32)
    retried = []

    async def register(c):
        async with sem:
            for attempt in range(3):
                try:
                    resp = await asyncio.wait_for(c.register(), 30)
                    break
                except (asyncio.TimeoutError, aiocoap.error.NetworkError):
                    # About one run in two, one of 1,000 clients never sees the answer to its Register although
                    # the server registered it and read its objects (cause not found; the aiocoap client keeps
                    # retransmitting and holds later requests behind it): like a device that reboots, it
                    # starts again on a fresh socket (counted, printed with the results).
                    retried.append(c.endpoint)
                    await c.stop()
                    await c.start(coap_uri)
            else:
                raise RuntimeError("%s: three Registers went unanswered" % c.endpoint)
            assert resp.code.is_successful(), "%s: register answered %s" % (c.endpoint, resp.code)

    await asyncio.gather(*(register(c) for c in clients))
    print("registered", len(retried), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for c in clients:
        await c.stop()


def start_devices(coap_uri, start, count):
    child = subprocess.Popen([sys.executable, __file__, "--device-child", coap_uri, str(start), str(count)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().split()
    if line[:1] != ["registered"]:
        child.kill()
        raise RuntimeError("the devices did not register: %r" % line)
    child.retried = int(line[1])
    return child


def serve(data):
    token = subprocess.run(CLI + ["tokens", "new", "--role", "admin", "--name", "bench", "--data", data],
                           capture_output=True, text=True, check=True).stdout.split()[0]
    # serve prints a line per registration: into a file, since a pipe nobody reads would fill and stall it
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    proc = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-port", "0",
                                   "--auth", "required", "--data", data], stdout=log, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(r"LwM2M on (coap://\S+), API on (http://[\d.:]+)/", Path(log.name).read_text())
        if m:
            proc.log = log
            return proc, m.group(1), m.group(2), token
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("serve did not start: " + Path(log.name).read_text())


class Http:
    """One keep-alive connection with a bearer token."""

    def __init__(self, base, token):
        host, port = base.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Authorization": "Bearer " + token}

    def get(self, path):
        self.conn.request("GET", path, headers=self.headers)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("GET %s answered %d: %s" % (path, r.status, body[:200]))
        return body

    def post(self, path, obj):
        self.conn.request("POST", path, json.dumps(obj), dict(self.headers, **{"Content-Type": "application/json"}))
        r = self.conn.getresponse()
        body = r.read()
        if r.status >= 300:
            raise RuntimeError("POST %s answered %d: %s" % (path, r.status, body[:200]))
        return json.loads(body)

    def latency(self, path, repeat):
        """-> (p50 ms, p99 ms, bytes) of `repeat` GETs after a few to warm up."""
        for _ in range(3):
            self.get(path)
        out = []
        for _ in range(repeat):
            t = time.perf_counter()
            size = len(self.get(path))
            out.append(time.perf_counter() - t)
        out.sort()
        return out[len(out) // 2] * 1000, out[min(len(out) - 1, int(len(out) * 0.99))] * 1000, size


def wait_read(client, n, timeout=300):
    """Until n devices are registered and the server has read every one's TinyML object."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        devices = json.loads(client.get("/api/devices"))
        if len(devices) == n and all(d["capabilities"] for d in devices):
            return
        time.sleep(0.2)
    raise RuntimeError("the server did not read all %d devices' capabilities" % n)


def tag(client, first, count):
    eps = [endpoint(i) for i in range(first, first + count)]
    client.post("/api/tags", {"devices": eps[0::2], "add": ["line-1"]})
    client.post("/api/tags", {"devices": eps[1::4], "add": ["line-2", "canary"]})


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as Driver

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Driver(shutil.which("chromedriver") or "/usr/bin/chromedriver"))


FIRST_RENDER = """
const nav = performance.getEntriesByType("navigation")[0];
const fcp = performance.getEntriesByName("first-contentful-paint")[0];
return fcp && nav.loadEventEnd ? [nav.responseStart, nav.responseEnd, fcp.startTime, nav.domContentLoadedEventEnd,
                                  nav.loadEventEnd, document.querySelectorAll("#fleet tbody tr[data-endpoint]").length]
                               : null;
"""


def first_render(driver, base, path, rows, renders):
    """Medians over `renders` loads of `path` (showing `rows` rows): (first byte, last byte, first contentful
    paint, DOMContentLoaded, load) in ms from navigation start."""
    runs = []
    for _ in range(renders):
        driver.get(base + path)
        deadline = time.time() + 30
        while (m := driver.execute_script(FIRST_RENDER)) is None and time.time() < deadline:
            time.sleep(0.02)
        if m is None or m[5] != rows:
            raise RuntimeError("the fleet page did not render %d rows: %r" % (rows, m))
        runs.append(m[:5])
    return [sorted(col)[len(col) // 2] for col in zip(*runs)]


def sign_in(driver, client, base):
    client.conn.request("POST", "/api/session", json.dumps({"token": client.headers["Authorization"][7:]}),
                        {"Content-Type": "application/json"})
    r = client.conn.getresponse()
    r.read()
    sid = re.search(r"tinymlaas_session=([^;]+)", r.getheader("Set-Cookie")).group(1)
    driver.get(base + "/console/login")
    driver.add_cookie({"name": "tinymlaas_session", "value": sid, "path": "/", "httpOnly": True})


def measure(client, driver, base, n, repeat, page_repeat, renders):
    one = endpoint(3)      # runs a model, tagged
    rows = {}
    for label, path, times in (("GET /api/devices", "/api/devices", repeat),
                               ("GET /api/devices/<ep>", "/api/devices/" + quote(one), repeat),
                               ("GET /console/devices/<ep> (page)", "/console/devices/" + quote(one), page_repeat),
                               ("GET / (fleet page)", "/", page_repeat)):
        rows[label] = client.latency(path, times)
        print("  %5d devices  %-34s p50 %7.2f ms  p99 %7.2f ms  %8d B" % ((n, label) + rows[label]), flush=True)
    if driver is not None:
        from tinymlaas.console.pages import FLEET_PAGE     # the fleet page shows at most one page of rows

        fb, lb, fcp, dcl, load = first_render(driver, base, "/", min(n, FLEET_PAGE), renders)
        rows["chromium: fleet page first contentful paint"] = (fcp, None, None)
        print("  %5d devices  chromium /: first byte %.0f ms, last byte %.0f ms, first contentful paint %.0f ms, "
              "DOMContentLoaded %.0f ms, load %.0f ms (median of %d)" % (n, fb, lb, fcp, dcl, load, renders),
              flush=True)
    return rows


def main(argv):
    n = int(argv[argv.index("--devices") + 1]) if "--devices" in argv else DEVICES
    quick = "--quick" in argv
    repeat, page_repeat, renders = (30, 10, 3) if quick else (REPEAT, PAGE_REPEAT, RENDERS)
    data = Path(tempfile.mkdtemp(prefix="bench-console-"))
    proc, coap_uri, base, token = serve(data)
    children, driver = [], None
    try:
        client = Http(base, token)
        try:
            driver = browser()
            sign_in(driver, client, base)
        except Exception as e:  # noqa: BLE001 -- the HTTP rows still mean something without a browser
            print("  (no headless chromium: %s; the first-render rows are left out)" % str(e).splitlines()[0])
            driver = None
        t0 = time.perf_counter()
        children.append(start_devices(coap_uri, 0, PEER))
        wait_read(client, PEER)
        tag(client, 0, PEER)
        peer = measure(client, driver, base, PEER, repeat, page_repeat, renders)
        children.append(start_devices(coap_uri, PEER, n - PEER))
        wait_read(client, n)
        print("  %d devices registered and read over CoAP/UDP in %.1f s (%d Registers sent again after no answer)"
              % (n, time.perf_counter() - t0, sum(c.retried for c in children)), flush=True)
        tag(client, PEER, n - PEER)
        full = measure(client, driver, base, n, repeat, page_repeat, renders)
    finally:
        if driver is not None:
            driver.quit()
        for c in children:
            c.stdin.close()
        for c in children:
            try:
                c.wait(30)
            except subprocess.TimeoutExpired:
                c.kill()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)
    print()
    print("`tinymlaas serve --auth required`, one keep-alive connection with a bearer token; peer: %d devices" % PEER)
    print("| request | %d devices p50 ms | p99 ms | %d devices p50 ms | p99 ms | p50 ratio | body at %d |"
          % (PEER, n, n))
    print("|---|---|---|---|---|---|---|")
    for label, (p50, p99, size) in full.items():
        p50_peer, p99_peer, _ = peer[label]
        if p99 is None:
            print("| %s | %.0f | | %.0f | | %.1fx | |" % (label, p50_peer, p50, p50 / p50_peer))
        else:
            print("| %s | %.2f | %.2f | %.2f | %.2f | %.1fx | %d KB |"
                  % (label, p50_peer, p99_peer, p50, p99, p50 / p50_peer, size // 1024))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--device-child"]:
        asyncio.run(run_devices(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
