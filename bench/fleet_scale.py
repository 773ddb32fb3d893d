"""Fleets at scale: real emulated devices (the MicroPython client and installer) against `tinymlaas serve`.

1. Memory per emulated device: one `tinymlaas device emulate` per device (a CPython supervisor + a micropython
   process each) against `tinymlaas fleet emulate` (one supervisor, 250 devices per micropython process) at 50,
   200 and 1,000 devices; RSS and PSS (shared library pages divided among their users) of the whole process tree.
2. One node, 1,000 devices: registration storms (all starting at once, and spread over 10 s), timed from the
   fleet command's start to the server's last Register and last capability read (each device's TinyML object);
   then steady state at a 60 s lifetime (an Update every 45 s); the server's RSS and CPU per device; and the same
   storm on PostgreSQL, with the database checked afterwards: every device stored with its capabilities, every
   one de-registered and its events recorded.

    python -m bench fleet_scale            (or: python bench/fleet_scale.py [--quick] [--count N] [--steady S]
                                                                      [--plots DIR])
Plots (matplotlib, the `bench` extra): docs/images/fleet-registrations.png and fleet-memory.png after a full run.
"""

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tinymlaas.db import Database
from tinymlaas.devices.fleet import proc_memory

CLI = [sys.executable, "-c", "import sys; from tinymlaas.cli import main; sys.exit(main())"]
TICK = os.sysconf("SC_CLK_TCK")
READ_FAILED = "reading capabilities of"  # the server's warning when a device did not answer the read in time
BEFORE_DEVICES = 5  # `device emulate` processes: enough for a per-device figure, cheap enough to run


def cpu_seconds(pid):
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def tree(pid):
    """pid and all its descendants."""
    children = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_memory(pids):
    total = {"rss": 0, "pss": 0}
    for root in pids:
        for p in tree(root):
            try:
                m = proc_memory(p)
            except OSError:
                continue
            total["rss"] += m["rss"]
            total["pss"] += m["pss"]
    return total


class Lines:
    """A process whose output lines are read as they come: counts and times of each line's first word."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.seen = collections.defaultdict(list)  # first word -> [monotonic time of each]
        self.text = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.text.append(line.rstrip())
                self.seen[line.split(" ", 1)[0]].append(time.monotonic())
                self.cond.notify_all()

    def wait(self, word, n, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while len(self.seen[word]) < n:
                if time.monotonic() > end or self.proc.poll() is not None:
                    raise RuntimeError("%d of %d %r lines; last output:\n%s" % (len(self.seen[word]), n, word,
                                                                              "\n".join(self.text[-15:])))
                self.cond.wait(0.5)
            return self.seen[word][n - 1]

    def count(self, word):
        with self.cond:
            return len(self.seen[word])

    def lines_with(self, text):
        with self.cond:
            return sum(text in line for line in self.text)

    def stop(self, timeout=60):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)


class Serve(Lines):
    """`tinymlaas serve`: it prints one line per registration event (registered, capabilities, updated, ...)."""

    def __init__(self, db, data):
        super().__init__(CLI + ["serve", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-port", "0",
                                "--db", db, "--data", data])
        self.wait("tinymlaas", 1, 60)
        self.port = int(re.search(r"coap://127\.0\.0\.1:(\d+)", self.text[0]).group(1))
        self.uri = "coap://127.0.0.1:%d" % self.port


def memory_before(serve):
    """RSS/PSS per device of one `device emulate` (supervisor + micropython) per device."""
    base = serve.count("registered")
    devices = [subprocess.Popen(CLI + ["device", "emulate", "--server", serve.uri, "--endpoint", "solo-%d" % i],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(BEFORE_DEVICES)]
    try:
        serve.wait("capabilities", serve.count("capabilities") + BEFORE_DEVICES, 120)
        serve.wait("registered", base + BEFORE_DEVICES, 10)
        time.sleep(2)
        m = tree_memory([d.pid for d in devices])
    finally:
        for d in devices:
            d.send_signal(signal.SIGTERM)
        for d in devices:
            d.wait(30)
    return {k: v / BEFORE_DEVICES for k, v in m.items()}


def storm(serve, count, prefix, ramp=0.0, lifetime=300, steady=0.0, settle=2.0, during=None):
    """Start `fleet emulate`, wait for every Register and capability read at the server, optionally hold a steady
    state, stop it; -> figures. during(): called with the whole fleet registered (its result is "during")."""
    reg0, caps0, upd0 = serve.count("registered"), serve.count("capabilities"), serve.count("updated")
    failed0 = serve.lines_with(READ_FAILED)
    cpu0, mem0 = cpu_seconds(serve.proc.pid), proc_memory(serve.proc.pid)
    t0 = time.monotonic()
    fleet = Lines(CLI + ["fleet", "emulate", "--server", serve.uri, "--count", str(count), "--prefix", prefix,
                         "--ramp", str(ramp), "--lifetime", str(lifetime)])
    out = {"count": count, "ramp": ramp}
    try:
        first = serve.wait("registered", reg0 + 1, 120)
        out["registered_s"] = serve.wait("registered", reg0 + count, 300) - t0
        out["storm_s"] = out["registered_s"] - (first - t0)
        out["capabilities_s"] = serve.wait("capabilities", caps0 + count, 300) - t0
        out["reads_failed"] = serve.lines_with(READ_FAILED) - failed0
        time.sleep(settle)
        cpu1, mem1 = cpu_seconds(serve.proc.pid), proc_memory(serve.proc.pid)
        out["server_cpu_ms"] = 1000 * (cpu1 - cpu0) / count
        out["server_rss_kb"] = (mem1["rss"] - mem0["rss"]) / 1024 / count
        out["server_rss_total_mb"] = mem1["rss"] / 2 ** 20
        m = tree_memory([fleet.proc.pid])
        out["device_rss_kb"], out["device_pss_kb"] = m["rss"] / 1024 / count, m["pss"] / 1024 / count
        if steady:
            u0, c0, s0 = serve.count("updated"), cpu_seconds(serve.proc.pid), time.monotonic()
            time.sleep(steady)
            dt = time.monotonic() - s0
            out["updates_per_s"] = (serve.count("updated") - u0) / dt
            out["expected_updates_per_s"] = count / (lifetime * 0.75)
            out["steady_cpu_pct"] = 100 * (cpu_seconds(serve.proc.pid) - c0) / dt
            out["expired"] = serve.count("expired")
        if during:
            out["during"] = during()
        dereg0 = serve.count("deregistered")
    finally:
        fleet.stop()
    time.sleep(1)
    out["deregistered"] = serve.count("deregistered") - dereg0
    out["updates"] = serve.count("updated") - upd0
    return out


def stored(url, prefix):
    """(devices in the table with their capabilities, {event: distinct endpoints}) of one fleet."""
    db = Database(url)
    try:
        like = prefix + "-%"
        rows = db.query("SELECT COUNT(*) AS n FROM devices WHERE endpoint LIKE ? AND capabilities IS NOT NULL",
                        (like,))
        events = db.query("SELECT event, COUNT(DISTINCT endpoint) AS n FROM device_events WHERE endpoint LIKE ? "
                          "GROUP BY event", (like,))
        return rows[0]["n"], {r["event"]: r["n"] for r in events}
    finally:
        db.close()


def fresh(db, data, run):
    """run(serve) on a `tinymlaas serve` of its own (its RSS growth is then the fleet's alone)."""
    serve = Serve(db, data)
    try:
        return run(serve)
    finally:
        serve.stop()


def main(argv):
    quick = "--quick" in argv
    count = int(argv[argv.index("--count") + 1]) if "--count" in argv else (200 if quick else 1000)
    steady = float(argv[argv.index("--steady") + 1]) if "--steady" in argv else (0.0 if quick else 100.0)
    sizes = [n for n in (50, 200) if n < count]
    work = Path(tempfile.mkdtemp(prefix="tinymlaas-bench-fleet-"))
    sqlite = str(work / "fleet.db")

    def checked(url, **kw):
        def run(serve):
            r = storm(serve, count, "db", during=lambda: stored(url, "db")[0], **kw)
            r["stored"] = r["during"], stored(url, "db")[1]
            return r
        return run

    def smaller(serve):
        return [memory_before(serve)] + [storm(serve, n, "m%d" % n) for n in sizes]

    before, *small = fresh(sqlite, str(work / "small"), smaller)
    storms = [("SQLite", fresh(sqlite, str(work / "s1"), checked(sqlite, lifetime=60, steady=steady))),
              ("SQLite", fresh(sqlite, str(work / "s2"), lambda s: storm(s, count, "ramp", ramp=10.0)))]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))
    from pg_cluster import Cluster   # the tests' throw-away PostgreSQL cluster (durable: commits are measured)

    with Cluster() as pg:
        storms.append(("PostgreSQL", fresh(pg.url, str(work / "pg"), checked(pg.url))))

    print("\nMemory per emulated device (RSS / PSS of the whole process tree, registered and idle):")
    print("| devices | how | RSS per device | PSS per device |")
    print("|---|---|---|---|")
    print("| %d | one `device emulate` each | %.1f MB | %.1f MB |" % (BEFORE_DEVICES, before["rss"] / 2 ** 20,
                                                                   before["pss"] / 2 ** 20))
    for r in small + [storms[0][1]]:
        print("| %d | `fleet emulate` | %.0f KB | %.0f KB |" % (r["count"], r["device_rss_kb"], r["device_pss_kb"]))
    print("\nRegistration storms, %d devices (times from the fleet command's start; storm = first to last "
          "Register at the server):" % count)
    print("| database | start | all registered | storm | all capabilities read | failed read attempts (each "
          "tried again after 2..60 s) | server CPU per device | server RSS per device | de-registered |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in storms:
        print("| %s | %s | %.1f s | %.1f s | %.1f s | %d | %.2f ms | %.1f KB | %d |" % (
            label, "all at once" if not r["ramp"] else "over %g s" % r["ramp"], r["registered_s"], r["storm_s"],
            r["capabilities_s"], r["reads_failed"], r["server_cpu_ms"], r["server_rss_kb"], r["deregistered"]))
    steady_run = storms[0][1]
    if steady:
        print("\nSteady state, %d devices, lifetime 60 s, %.0f s: %.1f Updates/s (expected %.1f), server CPU %.1f %% "
              "of a core (%.1f µs per device-second), %d expired" % (
                  count, steady, steady_run["updates_per_s"], steady_run["expected_updates_per_s"],
                  steady_run["steady_cpu_pct"], 1e4 * steady_run["steady_cpu_pct"] / count, steady_run["expired"]))
    for label, r in (storms[0], storms[2]):
        rows, events = r["stored"]
        print("%s: %d of %d devices stored with capabilities during the storm; events afterwards: %s" % (
            label, rows, count, ", ".join("%s %d" % kv for kv in sorted(events.items()))))
    plots = argv[argv.index("--plots") + 1] if "--plots" in argv else (None if quick else str(IMAGES))
    if plots:
        plot(Path(plots), before, small + [storms[0][1]], storms)
    return 0


IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


def plot(where, before, fleets, storms):
    """fleet-registrations.png (registrations/s against fleet size) and fleet-memory.png (memory per device)."""
    try:
        import matplotlib
    except ImportError:
        print("(no matplotlib: pip install -e .[bench] for the plots)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where.mkdir(parents=True, exist_ok=True)
    counts = [r["count"] for r in fleets]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    ax.plot(counts, [r["count"] / r["registered_s"] for r in fleets], "o-",
            label="SQLite, all at once: from `fleet emulate`'s start")
    ax.plot(counts, [r["count"] / max(r["storm_s"], 0.05) for r in fleets], "s--",
            label="SQLite, all at once: first to last Register")
    for label, r in storms[1:]:
        if not r["ramp"]:   # a storm spread over 10 s is paced by its ramp, not by the server: in the table only
            ax.plot([r["count"]], [r["count"] / r["registered_s"]], "D", label="%s, all at once: from the start" % label)
    log_counts(ax, counts)
    ax.set_xlabel("emulated devices (one `tinymlaas serve`, 2-core machine)")
    ax.set_ylabel("registrations / s")
    ax.set_title("Registration storms")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(where / "fleet-registrations.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    ax.plot(counts, [r["device_rss_kb"] for r in fleets], "o-", label="`fleet emulate`: RSS per device")
    ax.plot(counts, [r["device_pss_kb"] for r in fleets], "s-", label="`fleet emulate`: PSS per device")
    ax.axhline(before["rss"] / 1024, color="C3", ls="--", label="one `device emulate` each: RSS per device")
    ax.axhline(before["pss"] / 1024, color="C3", ls=":", label="one `device emulate` each: PSS per device")
    ax.plot(counts, [r["server_rss_kb"] for r in fleets], "^-", color="C2", label="server: RSS growth per device")
    log_counts(ax, counts)
    ax.set_yscale("log")
    ax.set_xlabel("emulated devices")
    ax.set_ylabel("KB per device")
    ax.set_title("Memory per emulated device")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(where / "fleet-memory.png")
    plt.close(fig)
    print("plots: %s, %s" % (where / "fleet-registrations.png", where / "fleet-memory.png"))


def log_counts(ax, counts):
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_xticks(counts)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
