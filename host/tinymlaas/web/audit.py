"""The audit log: every state-changing call — who, what, when, result — in the service's database.

Written by the web layer's middleware for each authenticated non-GET request (whatever its outcome) and by
the local CLI commands that change who may use the API (`tokens new`, `tokens revoke`). Requests refused
before anyone is identified (no or a bad token) are logged as warnings instead, so an anonymous client cannot
fill the database; the throttle in auth.py slows those down.
"""

import time

from ..db import migration

migration("web", 2,
          """CREATE TABLE audit_log (
              id       INTEGER PRIMARY KEY,
              at       REAL NOT NULL,
              actor    TEXT NOT NULL,
              token_id TEXT,
              role     TEXT,
              action   TEXT NOT NULL,
              status   INTEGER NOT NULL,
              result   TEXT NOT NULL,
              remote   TEXT)""",
          "CREATE INDEX audit_log_at ON audit_log(at)")

MAX_RESULT = 500


class AuditLog:
    def __init__(self, db):
        self.db = db

    def record(self, identity, action, status, result="", remote=None):
        """`action` e.g. "POST /api/deployments" or "cli: tokens revoke ab12cd34"; `status` the HTTP status
        (0 for a local command); `result` "ok" or the error the caller got."""
        self.db.execute("INSERT INTO audit_log (at, actor, token_id, role, action, status, result, remote) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (time.time(), identity.actor, identity.token_id, identity.role, action[:300], status,
                         (result or "")[:MAX_RESULT], remote))

    def entries(self, limit=100, before=None):
        """Newest first; `before` an id to page back from."""
        limit = max(1, min(int(limit), 1000))
        if before is None:
            return self.db.query("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        return self.db.query("SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?", (int(before), limit))
