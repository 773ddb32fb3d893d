"""Database access: SQLite by default (no server to install), PostgreSQL when given a postgresql:// URL.

Every component that stores state declares ordered migrations; `Database.migrate()` applies the ones not yet
recorded in `schema_migrations`, each in its own transaction, so a database created by any earlier version of
tinymlaas is brought forward on start. SQL is written once with `?` placeholders and translated for the driver.
"""

import sqlite3
import threading
from pathlib import Path

# (component, version, statements). Versions are ordered per component; never edit a released migration, add one.
MIGRATIONS = []


def migration(component, version, *statements):
    MIGRATIONS.append((component, version, statements))


class DatabaseError(RuntimeError):
    pass


class Database:
    def __init__(self, url):
        self.url = str(url)
        self._lock = threading.RLock()
        if self.url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError as e:
                raise DatabaseError("a PostgreSQL URL needs the psycopg package (pip install psycopg)") from e
            self.conn = psycopg.connect(self.url, autocommit=False)
            self.placeholder = "%s"
            self.kind = "postgresql"
        else:
            path = self.url[len("sqlite:///"):] if self.url.startswith("sqlite:///") else self.url
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: the service's HTTP thread and asyncio loop share one connection behind _lock.
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL keeps every commit durable across a process crash (only a power cut can lose the
            # last few) and is ~3x faster than FULL under a registration storm (docs/lwm2m-server.md).
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.placeholder = "?"
            self.kind = "sqlite"
        self.migrate()

    def _sql(self, sql):
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def execute(self, sql, params=()):
        with self._lock:
            cur = self.conn.cursor()
            cur.execute(self._sql(sql), tuple(params))
            if self.kind == "postgresql":
                self.conn.commit()
            return cur

    def query(self, sql, params=()):
        with self._lock:
            cur = self.conn.cursor()
            cur.execute(self._sql(sql), tuple(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    def query_one(self, sql, params=()):
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def transaction(self):
        return _Transaction(self)

    def migrate(self):
        with self._lock:
            self.conn.cursor().execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, "
                "PRIMARY KEY (component, version))"
            )
            if self.kind == "postgresql":
                self.conn.commit()
            done = {(r["component"], r["version"]) for r in self.query("SELECT component, version FROM schema_migrations")}
            for component, version, statements in sorted(MIGRATIONS, key=lambda m: (m[0], m[1])):
                if (component, version) in done:
                    continue
                with self.transaction() as tx:
                    for stmt in statements:
                        tx.execute(stmt)
                    tx.execute("INSERT INTO schema_migrations (component, version) VALUES (?, ?)", (component, version))

    def schema_versions(self):
        rows = self.query("SELECT component, MAX(version) AS v FROM schema_migrations GROUP BY component")
        return {r["component"]: r["v"] for r in rows}

    def close(self):
        with self._lock:
            self.conn.close()


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db._lock.acquire()
        if self.db.kind == "sqlite":
            self.db.conn.execute("BEGIN IMMEDIATE")
        return self

    def execute(self, sql, params=()):
        cur = self.db.conn.cursor()
        cur.execute(self.db._sql(sql), tuple(params))
        return cur

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.db.conn.commit() if self.db.kind == "postgresql" else self.db.conn.execute("COMMIT")
            else:
                self.db.conn.rollback() if self.db.kind == "postgresql" else self.db.conn.execute("ROLLBACK")
        finally:
            self.db._lock.release()
        return False
