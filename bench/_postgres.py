"""A throw-away PostgreSQL cluster for benchmarks: initdb in a temporary directory, a Unix socket only, stopped
and removed on exit. (The tests have their own, as pytest fixtures: tests/service/conftest.py.)"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def _bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name), reverse=True):
        if Path(d, "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install -y postgresql)")
    return Path(found).parent


def _owner(cmd):
    # initdb and postgres refuse to run as root
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + [str(c) for c in cmd]


class Cluster:
    def __enter__(self):
        self.bin = _bindir()
        self.base = Path(tempfile.mkdtemp(prefix="tinymlaas-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        data = self.base / "data"
        subprocess.run(_owner([self.bin / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                               "--no-instructions"]), check=True, capture_output=True, timeout=120)
        opts = "-c listen_addresses='' -c unix_socket_directories=%s -c port=5432" % self.base
        subprocess.run(_owner([self.bin / "pg_ctl", "-D", data, "-l", self.base / "log", "-o", opts, "-w", "start"]),
                       check=True, capture_output=True, timeout=120)
        self.url = "postgresql://postgres@/postgres?host=%s&port=5432" % self.base
        return self

    def __exit__(self, *exc):
        subprocess.run(_owner([self.bin / "pg_ctl", "-D", self.base / "data", "-m", "fast", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(self.base, ignore_errors=True)
