"""Which task queue for a node group's jobs (rollouts, compiles, calls for another node's devices): procrastinate on
the PostgreSQL the nodes share against Celery and Dramatiq on a Redis server (Debian's redis-server, started
here as a process). Each queue runs the same trivial job in real worker processes (one job at a time each), and
the bench measures:

- idle latency: a job deferred while the worker waits, from defer() returning to the job starting (50 jobs,
  one after another);
- a burst: 200 jobs deferred at once, the time to defer them and until the last one ended (one worker);
- at-least-once: a 3 s job whose worker is SIGKILLed once it started; a second worker is started at once: is
  the job run again, and how long after the kill;
- a broker crash: with no worker running, 20 jobs deferred, 2 s later 20 more, then the broker dies at once
  (PostgreSQL: `pg_ctl stop -m immediate`; Redis: SIGKILL, with the append-only file fsynced every second, the
  durable setting its documentation gives for queues) and starts again; then a worker: how many of each batch run.

Configuration as the service uses them: procrastinate as tasks.RolloutQueue (LISTEN/NOTIFY, 1 s poll, 1 s
heartbeats, a job whose worker is silent 4 s retried by a live worker); Celery with acks_late and
reject_on_worker_lost (the documented at-least-once setup), a Redis visibility timeout of 5 s (default 1 h) and
kombu's sweep for unacknowledged messages every second (default: every 100 s);
Dramatiq's Redis broker with a 5 s heartbeat timeout (default 60 s) and maintenance on every fetch (default 1 in
1,000). Timings are printed, never asserted.

    python -m bench queue_choice   (or: python bench/queue_choice.py [--quick])
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUEUE = "bench"
LONG_JOB = 3.0
STALLED = 4.0           # procrastinate: seconds without a heartbeat before a live worker retries the job
VISIBILITY = 5          # Celery on Redis: seconds before an unacknowledged message is given to another worker
HEARTBEAT_MS = 5000     # Dramatiq on Redis: a worker silent this long is dead, its messages go back to the queue


def record(jobid, phase):
    with open(os.environ["BENCH_OUT"], "a") as f:
        f.write("%s %s %d %.6f\n" % (jobid, phase, os.getpid(), time.time()))


def bench_job(jobid, sleep):
    """The job of the two queues that run plain functions (procrastinate's worker runs a coroutine)."""
    record(jobid, "start")
    time.sleep(sleep)
    record(jobid, "end")


# ---- the three queues, each: an app with the job, a worker (in its own process), defer() -----------------------

class Procrastinate:
    name = "procrastinate (PostgreSQL)"
    server = "none (the nodes' PostgreSQL)"

    def __init__(self, url):
        import procrastinate

        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

        async def job(jobid, sleep):
            record(jobid, "start")
            await asyncio.sleep(sleep)
            record(jobid, "end")

        self.job = self.app.task(name="bench_job", queue=QUEUE, pass_context=False)(job)

    def setup(self):
        with self.app.open():
            self.app.schema_manager.apply_schema()

    def worker(self):
        async def run():
            async with self.app.open_async():
                reaper = asyncio.create_task(self._retry_stalled())
                await self.app.run_worker_async(queues=[QUEUE], concurrency=1, install_signal_handlers=False,
                                                update_heartbeat_interval=1.0, stalled_worker_timeout=STALLED,
                                                fetch_job_polling_interval=1.0)
                reaper.cancel()

        asyncio.run(run())

    async def _retry_stalled(self):      # as tasks.RolloutQueue._retry_stalled on every node
        while True:
            await asyncio.sleep(1.0)
            for job in await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED):
                await self.app.job_manager.retry_job(job)

    def open(self):
        self.app.open()

    def defer(self, jobid, sleep=0.0):
        self.job.defer(jobid=jobid, sleep=sleep)


class Celery:
    name = "Celery 5 (Redis)"
    server = "Redis"

    def __init__(self, url):
        from celery import Celery as App

        self.app = App("bench", broker=url)
        self.app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                             task_default_queue=QUEUE,
                             # an unacknowledged message goes back after VISIBILITY s; kombu's sweep for them runs
                             # every unacked_restore_interval x unacked_restore_throttle s (default 10 x 10)
                             broker_transport_options={"visibility_timeout": VISIBILITY,
                                                       "unacked_restore_interval": 1,
                                                       "unacked_restore_throttle": 1},
                             worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)

        self.job = self.app.task(name="bench_job")(bench_job)

    def setup(self):
        pass

    def worker(self):
        self.app.worker_main(["worker", "--pool=solo", "--concurrency=1", "--loglevel=WARNING", "-Q", QUEUE,
                              "--without-gossip", "--without-mingle"])

    def open(self):
        pass

    def defer(self, jobid, sleep=0.0):
        self.job.delay(jobid, sleep)


class Dramatiq:
    name = "Dramatiq 2 (Redis)"
    server = "Redis"

    def __init__(self, url):
        import dramatiq
        from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker

        self.broker = RedisBroker(url=url, heartbeat_timeout=HEARTBEAT_MS, maintenance_chance=MAINTENANCE_SCALE)
        dramatiq.set_broker(self.broker)

        self.job = dramatiq.actor(bench_job, queue_name=QUEUE, max_retries=0, time_limit=600_000)

    def setup(self):
        pass

    def worker(self):
        import dramatiq

        w = dramatiq.Worker(self.broker, worker_threads=1)
        w.start()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        w.stop()

    def open(self):
        pass

    def defer(self, jobid, sleep=0.0):
        self.job.send(jobid, sleep)


KINDS = {"procrastinate": Procrastinate, "celery": Celery, "dramatiq": Dramatiq}


# ---- measuring -----------------------------------------------------------------------------------------------

class Run:
    def __init__(self, kind, url, tmp):
        self.kind, self.url = kind, url
        self.out = tmp / ("%s.log" % kind)
        self.out.touch()
        os.environ["BENCH_OUT"] = str(self.out)
        self.queue = KINDS[kind](url)
        self.queue.setup()
        self.queue.open()
        self.workers = []

    def lines(self):
        rows = []
        for line in self.out.read_text().splitlines():
            jobid, phase, pid, at = line.split()
            rows.append((jobid, phase, int(pid), float(at)))
        return rows

    def when(self, jobid, phase, pid=None, timeout=60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for j, p, who, at in self.lines():
                if j == jobid and p == phase and (pid is None or who == pid):
                    return at
            time.sleep(0.002)
        return None

    def start_worker(self):
        proc = subprocess.Popen([sys.executable, __file__, "--worker", self.kind, "--url", self.url],
                                env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(proc)
        return proc

    def stop(self):
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def latency(self, n):
        out = []
        for i in range(n):
            jobid = "lat-%d" % i
            self.queue.defer(jobid)
            t = time.time()
            started = self.when(jobid, "start")
            if started is None:
                raise RuntimeError("%s: job %s never started" % (self.kind, jobid))
            out.append(started - t)
            time.sleep(0.05)
        return out

    def burst(self, n):
        t0 = time.time()
        for i in range(n):
            self.queue.defer("burst-%d" % i)
        deferred = time.time() - t0
        last = self.when("burst-%d" % (n - 1), "end", timeout=300)
        while len([r for r in self.lines() if r[0].startswith("burst-") and r[1] == "end"]) < n:
            time.sleep(0.01)
        return deferred, max(last, max(r[3] for r in self.lines() if r[0].startswith("burst-"))) - t0

    def killed_worker(self, first):
        self.queue.defer("long", LONG_JOB)
        if self.when("long", "start", first.pid) is None:
            raise RuntimeError("%s: the long job did not start" % self.kind)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.time()
        second = self.start_worker()
        again = self.when("long", "start", second.pid, timeout=90)
        ended = again is not None and self.when("long", "end", second.pid, timeout=LONG_JOB + 10) is not None
        return (again - killed) if again else None, ended


    def broker_crash(self, crash, n=20):
        self.stop()
        early = ["early-%d" % i for i in range(n)]
        late = ["late-%d" % i for i in range(n)]
        for jobid in early:
            self.queue.defer(jobid)
        time.sleep(2.0)
        for jobid in late:
            self.queue.defer(jobid)
        crash()
        self.start_worker()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            ran = {r[0] for r in self.lines() if r[1] == "start"}
            if ran >= set(early + late):
                break
            time.sleep(0.2)
        ran = {r[0] for r in self.lines() if r[1] == "start"}
        return len(ran & set(early)), len(ran & set(late)), n


class RedisServer:
    """redis-server on a free loopback port, its append-only file fsynced every second; crash() = SIGKILL and
    start again on the same files."""

    def __init__(self, folder):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def crash(self):
        self.proc.kill()
        self.proc.wait()
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def measure(kind, url, tmp, n_latency, n_burst, crash):
    run = Run(kind, url, tmp)
    try:
        first = run.start_worker()
        run.queue.defer("warm-up")
        if run.when("warm-up", "end", timeout=60) is None:
            raise RuntimeError("%s: the worker never ran a job" % kind)
        lat = sorted(run.latency(n_latency))
        deferred, burst = run.burst(n_burst)
        again, ended = run.killed_worker(first)
        starts = [r for r in run.lines() if r[1] == "start" and not r[0].startswith("long")]
        ran_twice = len(starts) - len({r[0] for r in starts})
        early, late, n_crash = run.broker_crash(crash)
        return {"name": run.queue.name, "server": run.queue.server, "p50": statistics.median(lat),
                "p90": lat[int(0.9 * (len(lat) - 1))], "max": lat[-1], "defer_ms": 1000 * deferred / n_burst,
                "burst": burst, "n_burst": n_burst, "again": again, "ended": ended, "twice": ran_twice,
                "crash": "%d + %d of %d + %d" % (early, late, n_crash, n_crash)}
    finally:
        run.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 latency jobs and a burst of 50")
    ap.add_argument("--only", choices=sorted(KINDS), action="append")
    ap.add_argument("--worker", choices=sorted(KINDS), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args(argv)
    if args.worker:
        KINDS[args.worker](args.url).worker()
        return 0
    if not shutil.which("redis-server"):  # Debian's (host/scripts/setup.sh)
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    n_latency, n_burst = (10, 50) if args.quick else (50, 200)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))
    from pg_cluster import Cluster   # the tests' throw-away PostgreSQL cluster (durable, as the nodes' is)

    rows = []
    with Cluster() as pg, tempfile.TemporaryDirectory(prefix="tinymlaas-bench-queues-") as tmp:
        for kind in args.only or ("procrastinate", "celery", "dramatiq"):
            redis = None
            if kind != "procrastinate":     # an empty Redis for each
                folder = Path(tmp) / ("redis-" + kind)
                folder.mkdir()
                redis = RedisServer(folder).start()
            try:
                r = measure(kind, redis.url if redis else pg.url, Path(tmp), n_latency, n_burst,
                            redis.crash if redis else pg.crash_and_start)
            finally:
                if redis:
                    redis.stop()
            rows.append(r)
            print("%s: idle latency p50 %.1f ms, p90 %.1f ms, max %.1f ms; %d jobs: %.2f ms per defer, all done "
                  "in %.2f s; worker SIGKILLed in a job: %s; jobs run twice: %d; run after a broker crash: %s" % (
                      r["name"], 1000 * r["p50"], 1000 * r["p90"], 1000 * r["max"], r["n_burst"], r["defer_ms"],
                      r["burst"], "run again %.1f s after the kill%s" % (r["again"], "" if r["ended"] else
                                                                          " (did not end)")
                      if r["again"] is not None else "never run again (90 s)", r["twice"], r["crash"]), flush=True)
    print("\n| queue | one more server | idle latency p50 / p90 / max | %d jobs: per defer, all done | "
          "worker SIGKILLed mid-job | jobs run twice | broker crash: jobs run (2 s before + just before) |" % n_burst)
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %.1f / %.1f / %.1f ms | %.2f ms, %.2f s | %s | %d | %s |" % (
            r["name"], r["server"], 1000 * r["p50"], 1000 * r["p90"], 1000 * r["max"], r["defer_ms"], r["burst"],
            "run again after %.1f s" % r["again"] if r["again"] is not None else "lost (not run again in 90 s)",
            r["twice"], r["crash"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
