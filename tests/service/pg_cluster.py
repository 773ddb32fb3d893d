"""A throw-away PostgreSQL cluster made with the installed binaries (Debian's postgresql package): initdb into a
temporary directory, listening only on a Unix socket there, stopped and removed at the end. The tests' database
fixtures (conftest.py) and the benchmarks (bench/fleet_scale.py, bench/fleet_nodes.py) both start theirs here."""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PORT = 5432          # only names the socket file: the server has no TCP listener
PREFIX = "tinymlaas-pg-"
# Durability is pointless for a test cluster (without it the suite stays fast); a benchmark keeps it, since what it
# measures includes the commits' flushes.
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=30"


class ClusterError(RuntimeError):
    pass


def bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name))
    for d in reversed(dirs):
        if Path(d, "initdb").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ClusterError("PostgreSQL server binaries not found (apt-get install -y postgresql)")


def as_owner(cmd):
    # initdb and postgres refuse to run as root: run them as the postgres system user the package created.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + [str(c) for c in cmd]
    return [str(c) for c in cmd]


def _run(cmd, what):
    proc = subprocess.run(as_owner(cmd), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ClusterError("PostgreSQL: %s failed (exit %d): %s"
                           % (what, proc.returncode, (proc.stderr or proc.stdout)[-2000:]))


def _stop(bin_dir, base):
    subprocess.run(as_owner([bin_dir / "pg_ctl", "-D", base / "data", "-m", "immediate", "stop"]),
                   capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


def stop_abandoned(bin_dir):
    """Stop clusters left by a run that was killed before its teardown (its owner process is gone)."""
    for base in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            os.kill(int((base / "owner.pid").read_text()), 0)
            continue                    # its run is still going
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue                    # not ours to judge (no owner recorded yet, or not readable)
        _stop(bin_dir, base)


class Cluster:
    """`with Cluster() as pg:` a running cluster; pg.base (its socket directory), pg.url (admin connection URL).
    Raises ClusterError with the reason when it cannot start."""

    def __init__(self, durable=True):
        self.options = "" if durable else FAST

    def __enter__(self):
        self.bin = bindir()
        stop_abandoned(self.bin)
        # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
        self.base = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.base / "owner.pid").write_text(str(os.getpid()))
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        data = self.base / "data"
        try:
            _run([self.bin / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync", "--no-instructions"], "initdb")
            self._start()
        except BaseException:
            _stop(self.bin, self.base)
            raise
        self.url = "postgresql://postgres@/postgres?host=%s&port=%d" % (self.base, PORT)
        return self

    def _start(self):
        opts = "-c listen_addresses='' -c unix_socket_directories=%s -c port=%d %s" % (self.base, PORT, self.options)
        _run([self.bin / "pg_ctl", "-D", self.base / "data", "-l", self.base / "server.log", "-o", opts, "-w", "-t",
              "30", "start"], "pg_ctl start (log: %s)" % (self.base / "server.log"))

    def crash_and_start(self):
        """Stop the server as a crash would (`-m immediate`: no checkpoint, every process aborted), then start it
        again: it recovers from its write-ahead log (bench/queue_choice.py: what a broker crash loses)."""
        _run([self.bin / "pg_ctl", "-D", self.base / "data", "-m", "immediate", "-w", "stop"], "pg_ctl stop")
        self._start()

    def __exit__(self, *exc):
        _stop(self.bin, self.base)
