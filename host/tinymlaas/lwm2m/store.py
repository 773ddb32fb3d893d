"""SQLite persistence with ordered schema migrations.

`schema_version` holds one row per applied migration. `MIGRATIONS` is an ordered list of (version, name, SQL);
`Store.open()` applies the missing ones in order, each in its own transaction. Other layers (the service's
model registry and deployments) add theirs with `register_migration()` before opening; versions are global
and must increase, so pick a fresh number (this module uses 1..99).
"""

import json
import sqlite3
import threading
import time

MIGRATIONS = [
    (
        1,
        "devices",
        """
        CREATE TABLE devices (
            endpoint       TEXT PRIMARY KEY,
            registration   TEXT NOT NULL UNIQUE,
            address        TEXT NOT NULL,
            lifetime       INTEGER NOT NULL,
            lwm2m_version  TEXT NOT NULL,
            binding        TEXT NOT NULL,
            objects        TEXT NOT NULL,      -- JSON list of registered object links ("/3/0", ...)
            registered_at  REAL NOT NULL,
            updated_at     REAL NOT NULL,
            capabilities   TEXT                -- JSON: TinyML object values read after registration
        );
        """,
    ),
    (
        2,
        "device history",
        """
        CREATE TABLE device_events (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            endpoint  TEXT NOT NULL,
            event     TEXT NOT NULL,            -- registered, updated, deregistered, expired
            at        REAL NOT NULL,
            address   TEXT
        );
        CREATE INDEX device_events_endpoint ON device_events(endpoint, at);
        """,
    ),
]


def register_migration(version, name, sql):
    """Add a migration (for layers above the LwM2M server). Idempotent for the same (version, name)."""
    for v, n, _ in MIGRATIONS:
        if v == version:
            if n != name:
                raise ValueError("migration %d already registered as %r" % (version, n))
            return
    MIGRATIONS.append((version, name, sql))
    MIGRATIONS.sort(key=lambda m: m[0])


class Store:
    def __init__(self, path):
        self.path = str(path)
        # One connection shared by the event loop thread and the HTTP API thread; sqlite3 serialises access
        # with its own mutex when check_same_thread is off, and the lock keeps multi-statement writes atomic.
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.Lock()
        if self.path != ":memory:":
            # WAL + synchronous=NORMAL: a commit is durable across process crashes; only a power cut can lose the
            # last few registrations, which devices redo on their next Update (they get 4.04 and re-register).
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.migrate()

    def migrate(self):
        with self.lock:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            done = {r[0] for r in self.db.execute("SELECT version FROM schema_version")}
            for version, name, sql in MIGRATIONS:
                if version in done:
                    continue
                self.db.execute("BEGIN")
                try:
                    for stmt in sql.split(";"):
                        if stmt.strip():
                            self.db.execute(stmt)
                    self.db.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (version, name, time.time()))
                    self.db.execute("COMMIT")
                except Exception:
                    self.db.execute("ROLLBACK")
                    raise

    def schema_version(self):
        with self.lock:
            return self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]

    # ---- devices -------------------------------------------------------------------------------------------

    def save_device(self, reg, event):
        with self.lock:
            self.db.execute("BEGIN")
            self.db.execute(
                """INSERT INTO devices (endpoint, registration, address, lifetime, lwm2m_version, binding, objects,
                                        registered_at, updated_at, capabilities)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(endpoint) DO UPDATE SET registration=excluded.registration, address=excluded.address,
                     lifetime=excluded.lifetime, lwm2m_version=excluded.lwm2m_version, binding=excluded.binding,
                     objects=excluded.objects, registered_at=excluded.registered_at, updated_at=excluded.updated_at,
                     capabilities=excluded.capabilities""",
                (reg.endpoint, reg.id, reg.address, reg.lifetime, reg.lwm2m_version, reg.binding,
                 json.dumps(reg.objects), reg.registered_at, reg.updated_at,
                 json.dumps(reg.capabilities) if reg.capabilities is not None else None),
            )
            self.db.execute("INSERT INTO device_events (endpoint, event, at, address) VALUES (?, ?, ?, ?)",
                            (reg.endpoint, event, time.time(), reg.address))
            self.db.execute("COMMIT")

    def delete_device(self, endpoint, event):
        with self.lock:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM devices WHERE endpoint = ?", (endpoint,))
            self.db.execute("INSERT INTO device_events (endpoint, event, at) VALUES (?, ?, ?)", (endpoint, event, time.time()))
            self.db.execute("COMMIT")

    def set_capabilities(self, endpoint, capabilities):
        with self.lock:
            self.db.execute("UPDATE devices SET capabilities = ? WHERE endpoint = ?", (json.dumps(capabilities), endpoint))

    def devices(self):
        with self.lock:
            rows = self.db.execute("SELECT * FROM devices ORDER BY endpoint").fetchall()
        return [dict(r, objects=json.loads(r["objects"]),
                     capabilities=json.loads(r["capabilities"]) if r["capabilities"] else None) for r in rows]

    def events(self, endpoint):
        with self.lock:
            return [dict(r) for r in self.db.execute("SELECT event, at, address FROM device_events WHERE endpoint = ? ORDER BY id", (endpoint,))]

    def close(self):
        with self.lock:
            self.db.close()
