"""Database fixtures: `db_url` runs a test on SQLite and on a real PostgreSQL server.

The PostgreSQL server is a throw-away cluster made with the installed binaries (Debian's postgresql package):
initdb into a temporary directory, listening only on a Unix socket there, one per test session (per xdist
worker), stopped at teardown. Each test gets its own fresh database in it. If the server cannot be started the
test fails with the reason; it is never skipped.
"""

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_PORT = 5432          # only names the socket file: the server has no TCP listener
_db_numbers = itertools.count(1)


def _pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name))
    for d in reversed(dirs):
        if Path(d, "initdb").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("PostgreSQL server binaries not found (apt-get install -y postgresql)")


def _as_owner(cmd):
    # initdb and postgres refuse to run as root: run them as the postgres system user the package created.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + [str(c) for c in cmd]
    return [str(c) for c in cmd]


def _run(cmd, what):
    proc = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail("PostgreSQL: %s failed (exit %d): %s" % (what, proc.returncode, (proc.stderr or proc.stdout)[-2000:]))
    return proc


def _stop_abandoned(bindir):
    """Stop clusters left by a test run that was killed before its teardown (its owner process is gone)."""
    for base in Path(tempfile.gettempdir()).glob("tinymlaas-pg-*"):
        try:
            os.kill(int((base / "owner.pid").read_text()), 0)
            continue                    # its test session is still running
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue                    # not ours to judge (no owner recorded yet, or not readable)
        subprocess.run(_as_owner([bindir / "pg_ctl", "-D", base / "data", "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """(socket directory, admin connection URL) of a running throw-away PostgreSQL cluster."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed (pip install \"psycopg[binary]\")")
    bindir = _pg_bindir()
    _stop_abandoned(bindir)
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="tinymlaas-pg-"))
    (base / "owner.pid").write_text(str(os.getpid()))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    _run([bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8",
          "--no-sync", "--no-instructions"], "initdb")
    # Durability is pointless for a throw-away cluster; without it the whole suite stays fast.
    opts = ("-c listen_addresses='' -c unix_socket_directories=%s -c port=%d -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=30" % (base, PG_PORT))
    _run([bindir / "pg_ctl", "-D", data, "-l", base / "server.log", "-o", opts, "-w", "-t", "30", "start"],
         "pg_ctl start (log: %s)" % (base / "server.log"))
    try:
        yield base, "postgresql://postgres@/postgres?host=%s&port=%d" % (base, PG_PORT)
    finally:
        subprocess.run(_as_owner([bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"]), capture_output=True,
                       timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A postgresql:// URL of a new, empty database. Its default collation is ICU en-US (not bytewise), so a test
    also shows that tinymlaas's ordering does not depend on the database's locale."""
    import psycopg

    base, admin = postgres_server
    name = "t%d_%d" % (os.getpid(), next(_db_numbers))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE %s TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                     % name)
    yield "postgresql://postgres@/%s?host=%s&port=%d" % (name, base, PG_PORT)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The same test on both engines: a SQLite file path, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "tinymlaas.db")
    return request.getfixturevalue("postgres_url")
