"""Database fixtures: `db_url` runs a test on SQLite and on a real PostgreSQL server.

The PostgreSQL server is a throw-away cluster made with the installed binaries (Debian's postgresql package):
initdb into a temporary directory, listening only on a Unix socket there, one per test session (per xdist
worker), stopped at teardown. Each test gets its own fresh database in it. If the server cannot be started the
test fails with the reason; it is never skipped.
"""

import itertools
import os

import pytest

from pg_cluster import PORT as PG_PORT, Cluster, ClusterError

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server():
    """(socket directory, admin connection URL) of a running throw-away PostgreSQL cluster (pg_cluster.py)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed (pip install \"psycopg[binary]\")")
    try:
        with Cluster(durable=False) as cluster:
            yield cluster.base, cluster.url
    except ClusterError as e:
        pytest.fail(str(e))


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
