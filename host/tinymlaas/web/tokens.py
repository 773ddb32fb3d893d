"""API tokens and console sessions, in the service's database (component "web").

A token is `tmla_<id>_<secret>`: `id` is 8 hex characters, public, shown in listings and used to revoke; `secret`
is 32 random bytes (urlsafe base64). Only the SHA-256 of the whole token is stored, and it is compared in constant
time — a token is shown once, when it is made, and cannot be read back. The secret's 256 bits make an offline
search of the hash hopeless, so a slow password hash would add nothing but latency to every request.

A console session is a random id (32 bytes) in an HttpOnly cookie; the database keeps its SHA-256, the token it
was opened with (so revoking the token ends its sessions), a CSRF token and an expiry.
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..db import migration
from ..errors import UserError

ROLES = ("viewer", "operator", "admin")   # each can do what the ones before it can
PREFIX = "tmla_"
SESSION_LIFETIME = 12 * 3600
LAST_USED_RESOLUTION = 60.0     # seconds: a token's last use is recorded to the minute

migration("web", 1,
          """CREATE TABLE api_tokens (
              id            TEXT PRIMARY KEY,
              name          TEXT NOT NULL,
              role          TEXT NOT NULL,
              secret_sha256 TEXT NOT NULL,
              created_at    REAL NOT NULL,
              created_by    TEXT NOT NULL,
              last_used_at  REAL,
              revoked_at    REAL)""",
          """CREATE TABLE web_sessions (
              id_sha256  TEXT PRIMARY KEY,
              token_id   TEXT NOT NULL REFERENCES api_tokens(id),
              csrf       TEXT NOT NULL,
              created_at REAL NOT NULL,
              expires_at REAL NOT NULL)""")


def allows(role, needed):
    """True when `role` may do what `needed` may (viewer < operator < admin)."""
    return ROLES.index(role) >= ROLES.index(needed)


def _sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    """Who makes a request: `token_id` None for the unauthenticated local mode (auth off, loopback only)."""
    token_id: str | None
    name: str
    role: str
    via: str                      # "bearer", "session" or "local"
    csrf: str | None = None       # the session's CSRF token (via == "session")
    session: str | None = None    # the session id's SHA-256 (via == "session")

    @property
    def actor(self):
        return self.name if self.token_id is None else "token %s (%s)" % (self.token_id, self.name)


LOCAL = Identity(None, "local", "admin", "local")


class TokenStore:
    def __init__(self, db):
        self.db = db

    def create(self, role, name="", created_by="cli"):
        """-> (row, token). The token string exists only in the return value."""
        if role not in ROLES:
            raise UserError("role must be one of %s, got %r" % (", ".join(ROLES), role))
        if len(name) > 100:
            raise UserError("token name longer than 100 characters")
        while True:
            tid = secrets.token_hex(4)
            if self.db.query_one("SELECT 1 FROM api_tokens WHERE id=?", (tid,)) is None:
                break
        token = "%s%s_%s" % (PREFIX, tid, secrets.token_urlsafe(32))
        self.db.execute("INSERT INTO api_tokens (id, name, role, secret_sha256, created_at, created_by) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (tid, name or tid, role, _sha256(token), time.time(), created_by))
        return self.get(tid), token

    def get(self, tid):
        row = self.db.query_one("SELECT id, name, role, created_at, created_by, last_used_at, revoked_at "
                                "FROM api_tokens WHERE id=?", (tid,))
        if row is None:
            raise UserError("no API token %r (see `tinymlaas tokens list`)" % tid)
        return row

    def list(self):
        return self.db.query("SELECT id, name, role, created_at, created_by, last_used_at, revoked_at "
                             "FROM api_tokens ORDER BY created_at, id")

    def revoke(self, tid):
        row = self.get(tid)
        if row["revoked_at"] is None:
            with self.db.transaction() as tx:
                tx.execute("UPDATE api_tokens SET revoked_at=? WHERE id=?", (time.time(), tid))
                tx.execute("DELETE FROM web_sessions WHERE token_id=?", (tid,))
        return self.get(tid)

    def any_active(self):
        return self.db.query_one("SELECT 1 FROM api_tokens WHERE revoked_at IS NULL") is not None

    def check(self, token):
        """The Identity of a valid, unrevoked token, else None."""
        if not token.startswith(PREFIX) or len(token) > 100:
            return None
        tid = token[len(PREFIX):].split("_", 1)[0]
        row = self.db.query_one("SELECT id, name, role, secret_sha256, last_used_at FROM api_tokens "
                                "WHERE id=? AND revoked_at IS NULL", (tid,))
        # Compared even when the id is unknown, so the answer takes as long either way.
        stored = row["secret_sha256"] if row else "0" * 64
        if not hmac.compare_digest(stored, _sha256(token)) or row is None:
            return None
        now = time.time()
        if (row["last_used_at"] or 0) < now - LAST_USED_RESOLUTION:     # not a database write per request
            self.db.execute("UPDATE api_tokens SET last_used_at=? WHERE id=?", (now, tid))
        return Identity(row["id"], row["name"], row["role"], "bearer")

    # -- console sessions ---------------------------------------------------------------------------------
    def open_session(self, identity, lifetime=SESSION_LIFETIME):
        """-> (session id for the cookie, csrf token)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        self.db.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
        self.db.execute("INSERT INTO web_sessions (id_sha256, token_id, csrf, created_at, expires_at) "
                        "VALUES (?, ?, ?, ?, ?)", (_sha256(sid), identity.token_id, csrf, now, now + lifetime))
        return sid, csrf

    def session(self, sid):
        """The Identity of an open, unexpired session whose token is not revoked, else None."""
        if not sid or len(sid) > 100:
            return None
        row = self.db.query_one(
            "SELECT s.id_sha256, s.csrf, t.id, t.name, t.role FROM web_sessions s JOIN api_tokens t "
            "ON t.id = s.token_id WHERE s.id_sha256=? AND s.expires_at > ? AND t.revoked_at IS NULL",
            (_sha256(sid), time.time()))
        if row is None:
            return None
        return Identity(row["id"], row["name"], row["role"], "session", csrf=row["csrf"], session=row["id_sha256"])

    def close_session(self, identity):
        self.db.execute("DELETE FROM web_sessions WHERE id_sha256=?", (identity.session,))
