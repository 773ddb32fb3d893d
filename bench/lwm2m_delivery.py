"""Time to deliver a ~333 KB install package over LwM2M, push (Block1 into /5/0/0) and pull (/5/0/1 Package URI,
Block2 from /fw/<sha256>), 1024-byte blocks, on clean loopback and through a seeded 10%-loss UDP proxy; and the
same clean push and pull to the MicroPython device under OSCORE (every block protected), as a ratio to NoSec
measured in the same run.

Peers: the MicroPython device client (lwm2m_client/tinyml_device.py in the unix port) and the CPython reference
client (aiocoap). The package is the MLPerf Tiny VWW model compiled to a blob, wrapped with 3 golden vectors
(333,088 bytes). Timings are wall-clock, printed, never asserted.

Then Q-Block (RFC 9177) against plain Block1/Block2 in the same run, for the KWS (~35 KB) and VWW packages at
0, 10 and 20 % loss each way, push and pull, with the ratio; and the device's live heap during a lossy Q-Block2
pull.

    python -m bench lwm2m_delivery          (or: python bench/lwm2m_delivery.py [--quick] [--q-block])
"""

import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time

from tinymlaas.lwm2m.lossy_proxy import LossyProxy
from tinymlaas.lwm2m.reference_client import ReferenceClient
from tinymlaas.lwm2m.server import LwM2MServer

LOSS = 0.10
LOSSY_ACK_TIMEOUT = 0.5  # seconds; the RFC 7252 default of 2 s is tuned for unknown paths, see docs


def mlperf_package(key="vww"):
    from tinymlaas.compiler import compile_tflite
    from tinymlaas.package import build_package
    from tinymlaas.paths import mlperf_model
    from tinymlaas.service.core import reference_vectors

    blob = compile_tflite(mlperf_model(key)).blob
    return build_package(blob, key, "1", reference_vectors(blob))


def vww_package():
    return mlperf_package("vww")


class Link:
    """Where the device sends: straight to the server, or through the lossy proxy."""

    def __init__(self, server, loss, seed):
        self.server, self.loss, self.seed, self.proxy = server, loss, seed, None

    async def __aenter__(self):
        if self.loss:
            self.proxy = await LossyProxy.start(("127.0.0.1", self.server.port), self.loss, self.seed)
        return self

    async def __aexit__(self, *exc):
        if self.proxy:
            self.proxy.close()

    @property
    def port(self):
        return self.proxy.address[1] if self.proxy else self.server.port

    def dropped(self):
        return (self.proxy.stats["dropped_up"] + self.proxy.stats["dropped_down"]) if self.proxy else 0


class Aborted(Exception):
    """The device went back to Idle with a failure Update Result (e.g. 4, connection lost)."""


async def wait_downloaded(server, ep, timeout=600):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            fw = await server.read(ep, "/5/0", timeout=10)
        except Exception:  # the device is busy downloading, or the poll itself was lost
            await asyncio.sleep(0.1)
            continue
        if fw.get((5, 0, 3)) == 2:
            return
        if fw.get((5, 0, 3)) == 0 and fw.get((5, 0, 5)) not in (0, 1):
            raise Aborted("update result %d" % fw[(5, 0, 5)])
        await asyncio.sleep(0.1)
    raise TimeoutError("device never reached Downloaded")


OSCORE_KEYS = None  # set in main: one DeviceKeys for the "bench" endpoint


async def run_once(peer, method, package, loss, seed, secure=False, q_block=None):
    """One delivery; q_block None: the rows of the first table (plain Block1/Block2, the server's defaults),
    True/False: Q-Block (RFC 9177) on both ends or off on both, with the same timeouts."""
    server = await LwM2MServer(read_capabilities=False).start("127.0.0.1", 0)
    if secure:
        server.add_oscore_device(OSCORE_KEYS)
    ack = LOSSY_ACK_TIMEOUT if loss else 2.0
    proc = client = None
    stack = contextlib.ExitStack()
    try:
        async with Link(server, loss, seed) as link:
            q = server.subscribe()
            if peer == "micropython":
                from tinymlaas.devices import unixport
                from tinymlaas.devices.emulated import trust_args
                from tinymlaas.paths import LWM2M_CLIENT

                flash = stack.enter_context(tempfile.TemporaryDirectory(prefix="lwm2m-bench-"))
                args = ["--server", "coap://127.0.0.1:%d" % link.port, "--endpoint", "bench",
                        "--data-dir", flash, "--ack-timeout-ms", str(int(ack * 1000)), *trust_args(),
                        "--q-window", "10" if q_block else "0"]
                if secure:
                    import json

                    args += ["--oscore", json.dumps(OSCORE_KEYS.device_config())]
                cmd = unixport.command(LWM2M_CLIENT / "tinyml_device.py", "1m", args)
                proc = subprocess.Popen(cmd, env=unixport.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                client = await ReferenceClient("bench", lifetime=3600, max_package=1 << 22).start("coap://127.0.0.1:%d" % link.port)
                await client.register()
            await asyncio.wait_for(q.get(), 60)
            t0 = time.perf_counter()
            resends = ""
            if method.startswith("push"):
                if q_block is not None:  # both modes: the device's ACK_TIMEOUT to start with, then measured
                    kw = dict(ack_timeout=ack, q_block=q_block)
                elif method == "push":  # library defaults: RFC 7252 ACK_TIMEOUT for block 0, then adaptive RTO
                    kw = dict(q_block=False)
                else:  # "push-fixed": the same fixed ACK_TIMEOUT as the devices use, no RTT estimate
                    kw = dict(ack_timeout=ack, adaptive=False, q_block=False)
                r = await server.push_package("bench", package, max_retransmit=8, block_retries=8, **kw)
                resends = r.block_resends
                assert q_block is None or r.method == ("q-block1" if q_block else "block1"), r.method
                if peer == "micropython":
                    await wait_downloaded(server, "bench")
            else:
                sha = server.packages.add(package)
                uri = "coap://127.0.0.1:%d/fw/%s" % (link.port, sha)
                if peer == "micropython":
                    # The device abandons a pull when one block exhausts its retransmissions (Update Result 4);
                    # the server then asks again, as a deployment would. Restarts are counted and reported.
                    restarts = 0
                    while True:
                        await server.write("bench", "/5/0/1", uri)
                        try:
                            await wait_downloaded(server, "bench")
                            break
                        except Aborted:
                            restarts += 1
                            if restarts > 5:
                                raise
                    resends = "%d restarts" % restarts if restarts else ""
                else:
                    from aiocoap import GET, Message

                    from tinymlaas.lwm2m.server import _Tuning

                    # Same ACK_TIMEOUT as the MicroPython device gets; aiocoap's follow-up Block2 requests copy it.
                    msg = Message(code=GET, uri=uri, transport_tuning=_Tuning(ack, 8))
                    resp = await client.context.request(msg).response
                    assert resp.payload == package, "pulled package differs"
            dt = time.perf_counter() - t0
            if peer == "reference" and method == "push":
                assert client.package == package, "pushed package differs"
            return dt, resends, link.dropped()
    finally:
        if client:
            await client.stop()
        if proc:
            proc.terminate()
            proc.wait(10)
        stack.close()
        await server.stop()


def q_block_table(quick):
    """Q-Block (RFC 9177) against plain Block1/Block2 in the same run: push and pull of the KWS and VWW packages
    to the MicroPython device at 0, 10 and 20 % loss each way (seed 1), the same timeouts for both modes."""
    print("Q-Block1/Q-Block2 vs Block1/Block2, MicroPython device, ACK_TIMEOUT 0.5 s on lossy links (2 s clean)")
    rows = []
    for key in ("kws",) if quick else ("kws", "vww"):
        package = mlperf_package(key)
        for method in ("push", "pull"):
            for loss in (0.0, 0.1, 0.2):
                q = asyncio.run(run_once("micropython", method, package, loss, 1, q_block=True))
                b = asyncio.run(run_once("micropython", method, package, loss, 1, q_block=False))
                rows.append((key, len(package), method, loss, q, b))
                print("  %-4s %-5s %3d%%  Q-Block %7.2f s  Block %7.2f s  Block/Q-Block %6.1fx"
                      % (key, method, loss * 100, q[0], b[0], b[0] / q[0]), flush=True)
    print()
    print("| package | method | loss each way | Q-Block s | Block s | Block / Q-Block | Q-Block resends | "
          "Block resends / pull restarts | datagrams dropped (Q / plain) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, size, method, loss, q, b in rows:
        print("| %s %d B | %s | %d %% | %.2f | %.2f | %.1fx | %s | %s | %d / %d |" % (
            key.upper(), size, method, loss * 100, q[0], b[0], b[0] / q[0], q[1], b[1], q[2], b[2]))
    print()
    device_heap_during_pull(mlperf_package("vww"))


def device_heap_during_pull(package):
    """The device's live heap over idle while it pulls with Q-Block2 (tests/client/mpy/measure_qpull.py)."""
    from pathlib import Path

    from tinymlaas.devices import unixport

    script = Path(__file__).resolve().parents[1] / "tests" / "client" / "mpy" / "measure_qpull.py"

    async def one(loss):
        server = await LwM2MServer(read_capabilities=False).start("127.0.0.1", 0)
        try:
            async with Link(server, loss, 1) as link:
                uri = "coap://127.0.0.1:%d/fw/%s" % (link.port, server.packages.add(package))
                proc = await asyncio.create_subprocess_exec(
                    *unixport.command(script, "256k", [uri]), env=unixport.env(), stdout=asyncio.subprocess.PIPE)
                return (await proc.communicate())[0].decode().split()
        finally:
            await server.stop()

    print("| loss each way | live heap over idle, peak (bytes) | blocks | requests | receive timeouts |")
    print("|---|---|---|---|---|")
    for loss in (0.0, 0.1, 0.2):
        err, n, _, peak, blocks, requests, timeouts, _ = asyncio.run(one(loss))
        assert err == "None" and int(n) == len(package), (err, n)
        print("| %d %% | %s | %s | %s | %s |" % (loss * 100, peak, blocks, requests, timeouts))


def main(argv):
    quick = "--quick" in argv
    if "--q-block" in argv:  # only the Q-Block comparison
        q_block_table(quick)
        return 0
    package = vww_package()
    blocks = -(-len(package) // 1024)
    print("package: MLPerf Tiny VWW blob + 3 golden vectors = %d bytes, %d blocks of 1024" % (len(package), blocks))
    print("lossy link: %d%% of datagrams dropped each way (seeded). push: server defaults (2 s for block 0, then"
          " adaptive RTO >= 0.25 s); push-fixed: fixed ACK_TIMEOUT %.1f s; pull: device/client ACK_TIMEOUT %.1f s"
          % (LOSS * 100, LOSSY_ACK_TIMEOUT, LOSSY_ACK_TIMEOUT))
    rows = []
    for peer in ("micropython", "reference"):
        for method in ("push", "push-fixed", "pull"):
            for loss in (0.0, LOSS):
                if method == "push-fixed" and not loss:
                    continue
                runs = 1 if (loss or quick) else 3
                results = [asyncio.run(run_once(peer, method, package, loss, seed)) for seed in range(1, runs + 1)]
                t = statistics.median(r[0] for r in results)
                rows.append((peer, method, "10% loss" if loss else "clean", t, len(package) / 1024 / t,
                             results[0][1], results[0][2], runs))
                print("  %-11s %-10s %-8s %7.2f s" % rows[-1][:4], flush=True)
    global OSCORE_KEYS
    from tinymlaas.lwm2m.oscore import DeviceKeys

    OSCORE_KEYS = DeviceKeys("bench", bytes(range(16)), device_id=b"\x02", server_id=b"\x01")
    plain = {(r[0], r[1], r[2]): r[3] for r in rows}
    for method in ("push", "pull"):
        runs = 1 if quick else 3
        results = [asyncio.run(run_once("micropython", method, package, 0.0, seed, secure=True))
                   for seed in range(1, runs + 1)]
        t = statistics.median(r[0] for r in results)
        rows.append(("micropython", method + " OSCORE", "clean", t, len(package) / 1024 / t, results[0][1],
                     results[0][2], runs))
        print("  %-11s %-10s %-8s %7.2f s  (OSCORE / NoSec: %.2fx)"
              % (rows[-1][:4] + (t / plain[("micropython", method, "clean")],)), flush=True)
    print()
    print("| peer | method | link | seconds | KiB/s | block resends / pull restarts | datagrams dropped | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for peer, method, link, t, rate, res, dropped, runs in rows:
        print("| %s | %s | %s | %.2f | %.0f | %s | %s | %d (median) |" % (peer, method, link, t, rate, res, dropped, runs))
    print()
    q_block_table(quick)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
