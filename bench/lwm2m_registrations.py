"""Registrations per second: many clients (one UDP socket each) registering with a `tinymlaas serve` process.

The server runs as its own process (so the load generator does not share its interpreter); the load generator
keeps WINDOW registrations outstanding, each a CON POST /rd from a distinct socket with a unique endpoint name,
and counts 2.01 answers. Run with the device table in memory and in a SQLite file (one commit per
registration). Then every client sends an Update and a De-register, measured the same way.

    python -m bench lwm2m_registrations     (or: python bench/lwm2m_registrations.py [--clients N])
"""

import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time

CLIENTS = 2000
WINDOW = 64
CLI = [sys.executable, "-c", "import sys; from tinymlaas.cli import main; sys.exit(main())"]


def coap(code, mid, token, path, queries=(), payload=b""):
    out = bytearray([0x40 | len(token), code, mid >> 8, mid & 0xFF]) + token
    prev = 0
    opts = [(11, p.encode()) for p in path] + ([(12, b"\x28")] if payload else []) + [(15, q.encode()) for q in queries]
    for number, value in opts:
        d, n = number - prev, len(value)
        out += bytes([(d << 4) | n]) if n < 13 else bytes([(d << 4) | 13, n - 13])
        out += value
        prev = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.transport = None
        self.waiter = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if self.waiter and not self.waiter.done():
            self.waiter.set_result(data)

    async def exchange(self, data, server, timeout=2.0, tries=5):
        for _ in range(tries):
            self.waiter = asyncio.get_running_loop().create_future()
            self.transport.sendto(data, server)
            try:
                return await asyncio.wait_for(self.waiter, timeout)
            except asyncio.TimeoutError:
                continue
        raise TimeoutError("no answer")


async def load(port, n):
    loop = asyncio.get_running_loop()
    server = ("127.0.0.1", port)
    clients = []
    for _ in range(n):
        _, c = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
        clients.append(c)
    sem = asyncio.Semaphore(WINDOW)
    locations = [None] * n
    latencies = []

    async def one(i, make, check):
        async with sem:
            t = time.perf_counter()
            reply = await clients[i].exchange(make(i), server)
            latencies.append(time.perf_counter() - t)
            check(i, reply)

    def reg_msg(i):
        return coap(2, i & 0xFFFF, i.to_bytes(4, "big"), ["rd"], ["ep=bench-%05d" % i, "lt=3600", "lwm2m=1.1", "b=U"],
                    b"</1/0>,</3/0>,</5/0>")

    def reg_check(i, reply):
        assert reply[1] == 0x41, "register %d answered %d.%02d" % (i, reply[1] >> 5, reply[1] & 31)
        # Location-Path options: "rd", "<id>" (option 8, first delta 8)
        loc = re.findall(rb"rd.([0-9a-f]{8})", reply)
        locations[i] = loc[0].decode()

    def upd_msg(i):
        return coap(2, (i + 20000) & 0xFFFF, i.to_bytes(4, "big"), ["rd", locations[i]], ["lt=3600"])

    def del_msg(i):
        return coap(4, (i + 40000) & 0xFFFF, i.to_bytes(4, "big"), ["rd", locations[i]])

    results = {}
    for name, make, code in (("register", reg_msg, None), ("update", upd_msg, 0x44), ("de-register", del_msg, 0x42)):
        latencies.clear()
        check = reg_check if code is None else (lambda i, r, c=code: None if r[1] == c else (_ for _ in ()).throw(
            AssertionError("%s %d answered %d.%02d" % (name, i, r[1] >> 5, r[1] & 31))))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, make, check) for i in range(n)))
        dt = time.perf_counter() - t0
        lat = sorted(latencies)
        results[name] = (n / dt, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000)
    for c in clients:
        c.transport.close()
    return results


def serve(db):
    # serve prints one line per registration event: send it to a file, a pipe nobody reads would fill and stall it.
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")
    proc = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-port", "0",
                                   "--db", db], stdout=log, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(log.name) as f:
            m = re.search(r"coap://127\.0\.0\.1:(\d+)", f.readline())
        if m:
            proc.log = log
            return proc, int(m.group(1))
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("serve did not start")


def main(argv):
    n = int(argv[argv.index("--clients") + 1]) if "--clients" in argv else CLIENTS
    rows = []
    for label in ("SQLite file (WAL)", "in memory"):
        db = tempfile.mktemp(suffix=".db") if label.startswith("SQLite") else ":memory:"
        proc, port = serve(db)
        try:
            res = asyncio.run(load(port, n))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        for op, (rate, p50, p99) in res.items():
            rows.append((label, op, rate, p50, p99))
            print("  %-18s %-11s %7.0f /s" % (label, op, rate), flush=True)
    print()
    print("%d clients (one UDP socket each), %d requests outstanding, server = `tinymlaas serve` process" % (n, WINDOW))
    print("| device table | operation | per second | median latency ms | p99 latency ms |")
    print("|---|---|---|---|---|")
    for label, op, rate, p50, p99 in rows:
        print("| %s | %s | %.0f | %.1f | %.1f |" % (label, op, rate, p50, p99))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
