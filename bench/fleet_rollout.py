"""Rollout time: the MLPerf Tiny KWS package (~35 KB) to 1,000 emulated devices (`tinymlaas fleet emulate`, the
real MicroPython client and installer, each device self-testing the model on its golden vectors), staged 1 / 10 /
50 / 100 %, at several per-node concurrencies in the same run, on a clean loopback and through the fleet's seeded
lossy link (`--loss`, each way).

The service runs in this process (its LwM2M server on the event loop, SQLite), the fleet is a `tinymlaas fleet
emulate` process tree, its devices starting within 10 s (`--ramp 10`). Concurrency 1 installs one device after
another: it runs on the first `--serial` devices
only (its rate is per device), the others on the whole fleet. Fleets of 50 devices per process and of the
default 250 (the process size trades memory per device against CPU per install). Timings are wall-clock,
printed, never asserted.

    python -m bench fleet_rollout      (or: python bench/fleet_rollout.py [--count N] [--serial N] [--quick]
                                        [--loss-only] [--concurrency C ...])
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinymlaas.paths import mlperf_model
from tinymlaas.service.core import Service

CLI = [sys.executable, "-c", "import sys; from tinymlaas.cli import main; sys.exit(main())"]
STAGES = [1, 10, 50, 100]
TICK = os.sysconf("SC_CLK_TCK")


async def until(pred, timeout, what):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise RuntimeError("timed out waiting for " + what)
        await asyncio.sleep(0.2)


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def tree(root):
    """A process and all its descendants (the fleet: its supervisor and micropython processes)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    pids, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in pids} - pids
        pids |= more
        grew = bool(more)
    return pids


def tree_cpu(root):
    """CPU seconds (user + system) of a process tree so far."""
    total = 0
    for p in tree(root):
        try:
            fields = Path("/proc/%d/stat" % p).read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, ValueError, IndexError):
            pass
    return total


def tree_rss(root):
    """RSS bytes of a process tree."""
    total = 0
    for p in tree(root):
        try:
            for line in Path("/proc/%d/status" % p).read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


async def capabilities_read(svc, count, timeout=300):
    """Wait until every device's TinyML object was read; read again (16 at once) those whose read at registration
    timed out in the storm (the server would read them at their next Update, minutes later)."""
    end = time.monotonic() + timeout
    sem = asyncio.Semaphore(16)

    async def read(endpoint):
        async with sem:
            await svc.server.refresh_capabilities(endpoint)

    while True:
        await asyncio.sleep(5)
        missing = [r.endpoint for r in svc.server.devices() if not r.capabilities]
        if not missing and len(svc.server.devices()) >= count:
            return
        if time.monotonic() > end:
            raise RuntimeError("%d devices never reported their capabilities" % len(missing))
        await asyncio.gather(*(read(e) for e in missing))


async def rollout(svc, names, concurrency, max_failed, fleet_pid):
    cpu0, fleet0, t0 = cpu_seconds(), tree_cpu(fleet_pid), time.monotonic()
    dep_id = svc.create_deployment("kws", names, stages=STAGES, concurrency=concurrency, max_failed=max_failed)
    dep = await svc.engine.run(dep_id)
    took = time.monotonic() - t0
    counts, why = {}, {}
    for d in dep["devices"]:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
        if d["state"] == "failed":
            reason = "%s: %s" % (d["failure"], d["reason"][:70])
            why[reason] = why.get(reason, 0) + 1
    for reason, n in sorted(why.items(), key=lambda kv: -kv[1])[:5]:
        print("  %d failed: %s" % (n, reason), flush=True)
    return {"devices": len(names), "concurrency": concurrency, "seconds": took, "per_s": len(names) / took,
            "state": dep["state"], "active": counts.get("active", 0), "failed": counts.get("failed", 0),
            "server_cpu_ms": 1000 * (cpu_seconds() - cpu0) / len(names),
            "fleet_cpu_ms": 1000 * (tree_cpu(fleet_pid) - fleet0) / len(names),
            "peak": max(s["counts"].get("peak_in_flight", 0) for s in dep["stage_list"]),
            "stages": ["%s %.1fs" % (s["label"], s["finished_at"] - s["started_at"]) for s in dep["stage_list"]
                       if s["finished_at"]]}


async def one_link(count, loss, concurrencies, serial, per_process):
    tmp = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    # one key store for the service that signs and the fleet that trusts it (the fleet command's devices trust
    # $TINYMLAAS_KEYS, docs/manifest.md)
    os.environ["TINYMLAAS_KEYS"] = str(tmp / "keys")
    svc = await Service(tmp / "svc").start("127.0.0.1", 0)
    model, errors = svc.catalog.add(mlperf_model("kws"), "kws", "1", builds=[("tmlb-int8", "tinyml-mpy", {})])
    assert not errors, errors
    size = len(svc.package(model, svc.registry.variants(model)[0]))
    fleet = subprocess.Popen(CLI + ["fleet", "emulate", "--server", "coap://127.0.0.1:%d" % svc.server.port,
                                    "--count", str(count), "--prefix", "ro", "--loss", str(loss),
                                    "--per-process", str(per_process), "--ramp", "10"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = []
    try:
        await until(lambda: len(svc.server.devices()) >= count, 300, "the fleet's registrations")
        await capabilities_read(svc, count)
        names = sorted(r.endpoint for r in svc.server.devices())
        rss = tree_rss(fleet.pid) / count
        for c in concurrencies:
            targets = names[:serial] if c == 1 else names
            row = await rollout(svc, targets, c, 5 if loss else 0, fleet.pid)
            if row["active"] == 0:
                raise RuntimeError("no device took the model: %s" % svc.deployments.devices(
                    svc.deployments.list()[-1]["id"])[0]["reason"])
            row.update(loss=loss, package=size, per_process=per_process, rss_kb=rss / 1024)
            print("loss %g %%, %d per process (%.0f KB RSS/device), concurrency %d: %d devices in %.1f s "
                  "(%.1f/s), %s, %d active, %d failed, CPU per device: server %.1f ms, fleet %.1f ms; "
                  "most at once %d; %s" % (
                      loss, per_process, row["rss_kb"], c, row["devices"], row["seconds"], row["per_s"],
                      row["state"], row["active"], row["failed"], row["server_cpu_ms"], row["fleet_cpu_ms"],
                      row["peak"], ", ".join(row["stages"])), flush=True)
            out.append(row)
    finally:
        fleet.send_signal(signal.SIGTERM)
        try:
            fleet.wait(60)
        except subprocess.TimeoutExpired:
            fleet.kill()
        await svc.stop()
    return out


def table(rows):
    lines = ["| loss each way | devices per process (RSS per device) | concurrency | devices | time s | devices/s | "
             "vs concurrency 1 | active | failed | CPU ms/device server + fleet | most at once | stages |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {r["loss"]: r["per_s"] for r in rows if r["concurrency"] == 1}
    for r in rows:
        ratio = r["per_s"] / base[r["loss"]] if r["loss"] in base else None
        lines.append("| %g %% | %d (%.0f KB) | %d | %d | %.1f | %.1f | %s | %d | %d | %.1f + %.1f | %d | %s |" % (
            r["loss"], r["per_process"], r["rss_kb"], r["concurrency"], r["devices"], r["seconds"], r["per_s"],
            "%.1fx" % ratio if ratio else "–", r["active"], r["failed"], r["server_cpu_ms"], r["fleet_cpu_ms"],
            r["peak"],
            ", ".join(r["stages"])))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--serial", type=int, default=100, help="devices of the concurrency-1 rollout (default 100)")
    ap.add_argument("--quick", action="store_true", help="100 devices, concurrency 1 and 32, no loss")
    ap.add_argument("--loss-only", action="store_true", help="only the 10 %% loss rollout")
    ap.add_argument("--concurrency", type=int, action="append",
                    help="only clean-link rollouts of the whole fleet at these concurrencies (repeatable)")
    args = ap.parse_args(argv)
    # (loss %, devices per micropython process, concurrencies): the fleet's process size is the other lever
    # (docs/benchmarks.md, "Rollouts")
    if args.quick:
        runs = [(0, 50, (1, 32))]
        args.count, args.serial = 100, 20
    else:
        runs = [(0, 50, (1, 8, 32, 64)), (10, 50, (32,)), (0, 250, (32,))]
        if args.loss_only:
            runs = runs[1:2]
        elif args.concurrency:
            runs = [(0, 50, tuple(args.concurrency))]
    rows = []
    for loss, per_process, concurrencies in runs:
        rows += asyncio.run(one_link(args.count, loss, concurrencies, args.serial, per_process))
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
