"""Persistence of registrations: the `devices` and `device_events` tables, through `tinymlaas.db.Database`.

The schema lives in the project's migration mechanism (`tinymlaas.db.migration`, component "lwm2m"): ordered
versions recorded in `schema_migrations`, each applied once in its own transaction. The service layer's tables
(models, deployments) use the same mechanism, so one database file (or PostgreSQL URL) holds everything and
is brought forward on start. Add a version here, never edit a released one. (IF NOT EXISTS: databases made
before the LwM2M tables joined `schema_migrations` already have them.)
"""

import json
import time
from pathlib import Path

from ..db import Database, migration

COMPONENT = "lwm2m"

migration(
    COMPONENT,
    1,
    """CREATE TABLE IF NOT EXISTS devices (
        endpoint       TEXT PRIMARY KEY,
        registration   TEXT NOT NULL UNIQUE,
        address        TEXT NOT NULL,
        lifetime       INTEGER NOT NULL,
        lwm2m_version  TEXT NOT NULL,
        binding        TEXT NOT NULL,
        objects        TEXT NOT NULL,
        registered_at  REAL NOT NULL,
        updated_at     REAL NOT NULL,
        capabilities   TEXT)""",
)
migration(
    COMPONENT,
    2,
    """CREATE TABLE IF NOT EXISTS device_events (
        endpoint  TEXT NOT NULL,
        event     TEXT NOT NULL,
        at        REAL NOT NULL,
        address   TEXT)""",
    "CREATE INDEX IF NOT EXISTS device_events_endpoint ON device_events(endpoint, at)",
)
# Requests after a restart still go to the device's alternate path, in the data format it announced.
migration(
    COMPONENT,
    3,
    "ALTER TABLE devices ADD COLUMN root_path TEXT NOT NULL DEFAULT '/'",
    "ALTER TABLE devices ADD COLUMN content_formats TEXT NOT NULL DEFAULT '[]'",
)

# Several service nodes on one database (docs/nodes.md): the node whose socket the device's datagrams reach.
migration(COMPONENT, 4, "ALTER TABLE devices ADD COLUMN node TEXT")
# ... and the node a Send reaches looks its sender's address up there (send.sender)
migration(COMPONENT, 5, "CREATE INDEX IF NOT EXISTS devices_address ON devices(address)")


def is_file_path(db):
    """True when `db` names a database file (not :memory:, a URL or a Database object)."""
    return isinstance(db, (str, Path)) and str(db) != ":memory:" and "://" not in str(db)


class Store:
    def __init__(self, db, node=None):
        """db: a tinymlaas.db.Database to share, or a path / sqlite:/// / postgresql:// URL to open; node: this
        service node's name, written beside each registration it receives."""
        self.node = node
        self.owned = not isinstance(db, Database)
        self.db = Database(db) if self.owned else db
        if self.owned and self.db.kind == "sqlite":
            # A commit per registration: with WAL, synchronous=NORMAL keeps commits durable across process crashes
            # (only a power cut can lose the last few, which devices redo: their next Update gets 4.04 and they
            # register again) and is ~3x faster than FULL under a registration storm (see the docs).
            self.db.conn.execute("PRAGMA synchronous=NORMAL")

    def schema_version(self):
        return self.db.schema_versions().get(COMPONENT, 0)

    # Each change is a job `fn(tx)`: run now in its own transaction (the sync methods), or queued to the database's
    # writer thread (the async ones: the event loop does not wait for a round trip, and a storm's registrations
    # share commits; they return once committed, so a Register is answered 2.01 only when it is stored).

    def _save_job(self, reg, event):
        caps = json.dumps(reg.capabilities) if reg.capabilities is not None else None
        row = (reg.endpoint, reg.id, reg.address, reg.lifetime, reg.lwm2m_version, reg.binding, json.dumps(reg.objects),
               reg.registered_at, reg.updated_at, caps, reg.root_path, json.dumps(reg.content_formats), self.node)
        at = time.time()

        def job(tx):
            tx.execute(
                """INSERT INTO devices (endpoint, registration, address, lifetime, lwm2m_version, binding, objects,
                                        registered_at, updated_at, capabilities, root_path, content_formats, node)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(endpoint) DO UPDATE SET registration=excluded.registration, address=excluded.address,
                     lifetime=excluded.lifetime, lwm2m_version=excluded.lwm2m_version, binding=excluded.binding,
                     objects=excluded.objects, registered_at=excluded.registered_at, updated_at=excluded.updated_at,
                     capabilities=excluded.capabilities, root_path=excluded.root_path,
                     content_formats=excluded.content_formats, node=excluded.node""", row)
            tx.execute("INSERT INTO device_events (endpoint, event, at, address) VALUES (?, ?, ?, ?)",
                       (reg.endpoint, event, at, reg.address))
        return job

    @staticmethod
    def _delete_job(endpoint, event):
        at = time.time()

        def job(tx):
            tx.execute("DELETE FROM devices WHERE endpoint = ?", (endpoint,))
            tx.execute("INSERT INTO device_events (endpoint, event, at) VALUES (?, ?, ?)", (endpoint, event, at))
        return job

    @staticmethod
    def _capabilities_job(endpoint, capabilities):
        text = json.dumps(capabilities)
        return lambda tx: tx.execute("UPDATE devices SET capabilities = ? WHERE endpoint = ?", (text, endpoint))

    def _now(self, job):
        with self.db.transaction() as tx:
            job(tx)

    def save_device(self, reg, event):
        self._now(self._save_job(reg, event))

    def delete_device(self, endpoint, event):
        self._now(self._delete_job(endpoint, event))

    def set_capabilities(self, endpoint, capabilities):
        self._now(self._capabilities_job(endpoint, capabilities))

    async def saved(self, reg, event):
        await self.db.write(self._save_job(reg, event))

    async def deleted(self, endpoint, event):
        await self.db.write(self._delete_job(endpoint, event))

    async def capabilities_saved(self, endpoint, capabilities, also=()):
        """The capabilities, and `also` (more jobs: what listeners keep of the read), in one transaction."""
        jobs = [self._capabilities_job(endpoint, capabilities)] + list(also)

        def job(tx):
            for one in jobs:
                one(tx)
        await self.db.write(job)

    def device(self, endpoint=None, registration=None):
        """One device's row (by endpoint or registration id), or None."""
        column, value = ("endpoint", endpoint) if endpoint is not None else ("registration", registration)
        rows = self.db.query("SELECT * FROM devices WHERE %s = ?" % column, (value,))
        return self._decoded(rows)[0] if rows else None

    def devices(self):
        return self._decoded(self.db.query("SELECT * FROM devices ORDER BY endpoint"))

    @staticmethod
    def _decoded(rows):
        return [dict(r, objects=json.loads(r["objects"]), content_formats=json.loads(r["content_formats"]),
                     capabilities=json.loads(r["capabilities"]) if r["capabilities"] else None) for r in rows]

    def events(self, endpoint):
        return self.db.query("SELECT event, at, address FROM device_events WHERE endpoint = ? ORDER BY at", (endpoint,))

    def close(self):
        if self.owned:
            self.db.close()
