"""The service's HTTP side on aiohttp, in the asyncio loop the LwM2M server runs in.

    api = Api(db, auth=True)
    api.route("GET", "/api/devices/{endpoint}", one_device, "viewer")    # role: viewer|operator|admin|None
    await api.start("127.0.0.1", 0)                                      # api.port
    ...
    await api.stop()

A handler is `async def handler(request) -> web.StreamResponse` (usually `reply(obj, status)`); it may raise
`HttpError(status, message)`, which becomes `{"error": message}`. Every request passes three middlewares:

- audit (outermost): each non-GET request by an identified caller is written to the audit log with its status;
- errors: JSON error bodies for everything (404, 405, 413 from aiohttp too), a 30 s limit per request (not
  for `stream=True` routes) answered 504, and a logged 500 for a handler's bug;
- auth: sets `request[IDENTITY]` (tokens.Identity) from `Authorization: Bearer <token>` or the console's
  session cookie, checks the route's role, the CSRF token of cookie-authenticated state-changing requests and
  the cross-site rules. With auth off (loopback only) every caller is `tokens.LOCAL` (an admin), but the
  request must name a loopback Host (no DNS rebinding) and state-changing ones must not come from another
  site's page.

Limits: request line and each header 16 KiB, body 1 MiB (`request.read()`/`json_body`); routes that take
larger bodies (uploads) read `request.content` themselves against their own limit.
"""

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from .audit import AuditLog
from .auth import SAFE_METHODS, Throttle, cross_site_reason, host_of, is_loopback
from .tokens import LOCAL, ROLES, SESSION_LIFETIME, TokenStore, allows

log = logging.getLogger("tinymlaas.web")

MAX_BODY = 1 << 20
MAX_HEAD_LINE = 16 * 1024
REQUEST_TIMEOUT = 30.0
SESSION_COOKIE = "tinymlaas_session"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PAGE = "/console/login"
IDENTITY = web.RequestKey("identity", object)   # tokens.Identity of the caller, or None on a public route
RESULT = web.RequestKey("result", str)          # the error a failed request answered, for the audit log


class _OneLine(logging.Filter):
    """aiohttp logs each malformed request (a port scanner's, a fuzzer's) as an error with a traceback; it is
    the client's fault, so one warning line says it (handlers' own failures are logged by the error middleware)."""

    def filter(self, record):
        if record.exc_info:
            record.msg = "%s: %s" % (record.getMessage(), " ".join(str(record.exc_info[1]).split()))
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


PROTOCOL_LOG = logging.getLogger("tinymlaas.web.protocol")
PROTOCOL_LOG.addFilter(_OneLine())


class HttpError(Exception):
    """Answered as {"error": message, **extra} with `status` (and `headers`)."""

    def __init__(self, status, message, headers=None, extra=None):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers, extra or {}


def dumps(obj):
    # compact: json's C encoder (indent= falls back to the pure-Python one, ~10x slower on /api/devices)
    return json.dumps(obj, default=str, separators=(",", ":"))


def reply(obj, status=200, headers=None):
    return web.json_response(obj, status=status, headers=headers, dumps=dumps)


async def json_body(request):
    """The request's body as a JSON object (an empty body is {}); 400 for anything else, 413 over 1 MiB."""
    raw = await request.read()
    try:
        obj = json.loads(raw or b"{}")
    except ValueError as e:
        raise HttpError(400, "body must be a JSON object: %s" % e) from None
    if not isinstance(obj, dict):
        raise HttpError(400, "body must be a JSON object, not %s" % type(obj).__name__)
    return obj


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    role: str | None      # None: reachable without credentials
    stream: bool = False  # long-lived (SSE, uploads): no request time limit
    page: bool = False    # an HTML page: unauthenticated callers are sent to the login page, not given a 401


class Api:
    def __init__(self, db, *, auth=False, secure_cookies=False):
        self.db = db
        db.migrate()        # the web tables, when the database was opened before this module was imported
        self.auth = auth
        self.secure_cookies = secure_cookies
        self.tokens = TokenStore(db)
        self.audit = AuditLog(db)
        self.throttle = Throttle()
        self.routes = {}           # aiohttp route -> RouteInfo
        self._public = set()       # static resources
        self.app = web.Application(client_max_size=MAX_BODY,
                                   middlewares=[self._audit_middleware, self._error_middleware, self._auth_middleware])
        self._runner = None
        self.port = None

    # -- building -------------------------------------------------------------------------------------------
    def route(self, method, path, handler, role, *, stream=False, page=False):
        if role is not None and role not in ROLES:
            raise ValueError("role %r" % role)
        r = self.app.router.add_route(method, path, handler)
        self.routes[r] = RouteInfo(method, path, role, stream, page)
        return r

    def static(self, prefix, directory):
        """Files under `directory` at `prefix`, reachable without credentials."""
        self._public.add(self.app.router.add_static(prefix, directory))

    def info(self, request):
        return self.routes.get(request.match_info.route)

    # -- running --------------------------------------------------------------------------------------------
    async def start(self, host="127.0.0.1", port=8080, ssl_context=None):
        self._runner = web.AppRunner(self.app, access_log=logging.getLogger("tinymlaas.web.access"),
                                     logger=PROTOCOL_LOG, max_line_size=MAX_HEAD_LINE, max_field_size=MAX_HEAD_LINE,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self):
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    # -- identities -----------------------------------------------------------------------------------------
    def session_identity(self, request):
        """The console session's Identity from the cookie, or None (no throttling: for public pages)."""
        if not self.auth:
            return LOCAL
        return self.tokens.session(request.cookies.get(SESSION_COOKIE))

    def check_token(self, request, token):
        """Identity of `token`, counting a bad one against the caller's address; HttpError 429 when throttled."""
        remote = request.remote or "?"
        wait = self.throttle.retry_after(remote)
        if wait:
            raise HttpError(429, "too many bad credentials from %s; retry in %d s" % (remote, wait),
                            {"Retry-After": str(wait)})
        identity = self.tokens.check(token)
        if identity is None:
            self.throttle.failed(remote)
            log.warning("bad API credentials from %s for %s %s", remote, request.method, request.path)
        return identity

    def open_session(self, response, identity):
        sid, csrf = self.tokens.open_session(identity)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", secure=self.secure_cookies,
                            path="/", max_age=SESSION_LIFETIME)
        return csrf

    def close_session(self, response, identity):
        self.tokens.close_session(identity)
        response.del_cookie(SESSION_COOKIE, path="/")

    def _identify(self, request):
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise HttpError(401, "Authorization must be 'Bearer <token>'", {"WWW-Authenticate": "Bearer"})
            return self.check_token(request, token.strip())
        # A session id is as unguessable as a token, and a stale cookie (its token revoked) is no attack: not
        # counted by the throttle, just not signed in.
        return self.session_identity(request)

    # -- middlewares ----------------------------------------------------------------------------------------
    @web.middleware
    async def _auth_middleware(self, request, handler):
        info = self.info(request)
        public = request.match_info.route.resource in self._public or (info is not None and info.role is None)
        unsafe = request.method not in SAFE_METHODS
        request[IDENTITY] = None
        if not self.auth:
            if not is_loopback(host_of(request.host)):
                raise HttpError(403, "this service answers only to loopback names while authentication is off "
                                "(Host %r)" % request.host)
            request[IDENTITY] = LOCAL
        elif not public:
            identity = self._identify(request)
            if identity is None:
                if info is not None and info.page:
                    raise web.HTTPSeeOther("%s?next=%s" % (LOGIN_PAGE, quote(request.path, safe="/")))
                raise HttpError(401, "authentication required: send 'Authorization: Bearer <token>' "
                                "(`tinymlaas tokens new`)", {"WWW-Authenticate": "Bearer"})
            request[IDENTITY] = identity
        if unsafe:
            why = cross_site_reason(request)
            if why:
                raise HttpError(403, why)
        identity = request[IDENTITY]
        if identity is not None and identity.via == "session" and unsafe:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), identity.csrf.encode()):
                raise HttpError(403, "missing or wrong %s header (the console page's CSRF token)" % CSRF_HEADER)
        needed = info.role if info is not None else (None if public else "viewer")
        if needed is not None and identity is not None and not allows(identity.role, needed):
            raise HttpError(403, "this needs the %s role; %s is a %s" % (needed, identity.actor, identity.role))
        return await handler(request)

    @web.middleware
    async def _error_middleware(self, request, handler):
        info = self.info(request)
        try:
            if info is not None and info.stream:
                return await handler(request)
            if (request.content_length or 0) > MAX_BODY:     # said up front: answered without reading it
                raise HttpError(413, "body larger than %d bytes" % MAX_BODY)
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await handler(request)
        except HttpError as e:
            request[RESULT] = e.message
            return reply(dict(e.extra, error=e.message), e.status, e.headers)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            message = e.text if e.text and not e.text.startswith("%d:" % e.status) else e.reason
            request[RESULT] = message
            return reply({"error": message}, e.status, {k: v for k, v in e.headers.items() if k == "Allow"})
        except TimeoutError:
            request[RESULT] = "timed out"
            return reply({"error": "timed out after %d s" % REQUEST_TIMEOUT}, 504)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            request[RESULT] = "internal error"
            return reply({"error": "internal error (see the service's log)"}, 500)

    @web.middleware
    async def _audit_middleware(self, request, handler):
        try:
            response = await handler(request)    # the error middleware has turned failures into responses
        except web.HTTPException as e:           # redirects
            self._audit(request, e.status)
            raise
        self._audit(request, response.status)
        return response

    def _audit(self, request, status):
        identity = request.get(IDENTITY)
        if request.method not in SAFE_METHODS and identity is not None:
            self.audit.record(identity, "%s %s" % (request.method, request.path), status,
                              "ok" if status < 400 else request.get(RESULT, ""), request.remote)
