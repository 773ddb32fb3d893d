"""The API's security rules, each shown failing the way it must: 401 without a token on every route, roles
(a viewer cannot deploy), bad tokens throttled, oversized and malformed bodies refused with nothing changed,
no cross-site state changes (CSRF token for cookie sessions, Origin/Sec-Fetch-Site, loopback Host when auth is
off), sessions that end with sign-out and with their token, tokens stored hashed and never in logs."""

import hashlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request

from tinymlaas.web.auth import Throttle

SAMPLES = {"endpoint": "dev", "path": "3/0", "id": "1", "name": "m", "model": "m"}
CLI = [sys.executable, "-c", "import sys; from tinymlaas.cli import main; sys.exit(main())"]


def every_route(api):
    for route, info in api.routes.items():
        fixed = route.resource.get_info()
        yield info, fixed["formatter"].format(**SAMPLES) if "formatter" in fixed else fixed["path"]


def test_without_a_token_every_route_answers_401(service_auth):
    w = service_auth
    anonymous = w.client()
    checked = 0
    for info, url in every_route(w.api):
        if info.role is None:
            continue
        status, body, headers = anonymous.request(info.method, url, data=b"{}")
        if info.page:                                              # a console page: to the sign-in page
            assert status == 303 and headers["Location"].startswith("/console/login?next="), (info, status)
        else:
            assert status == 401, (info, status, body)
            assert headers["WWW-Authenticate"] == "Bearer" and "token" in body["error"]
        checked += 1
    assert checked >= 25
    assert anonymous.get("/api/no-such-thing")[0] == 401          # unknown paths do not reveal themselves
    assert anonymous.get("/api/devices", headers={"Authorization": "Basic eDp5"})[0] == 401
    assert w.client(w.token("viewer")).get("/api/no-such-thing")[0] == 404


def test_roles_viewer_operator_admin(service_auth):
    w = service_auth
    viewer, operator, admin = (w.client(w.token(r, r)) for r in ("viewer", "operator", "admin"))
    status, err, _ = viewer.post("/api/deployments", {"model": "m", "devices": ["d"]})
    assert status == 403 and "operator role" in err["error"]
    assert operator.post("/api/deployments", {"model": "m", "devices": ["d"]})[0] == 400   # allowed; no model m
    assert viewer.get("/api/deployments")[1] == [] and viewer.get("/api/models")[0] == 200
    assert operator.get("/api/tokens")[0] == 403 and operator.post("/api/tokens", {"role": "admin"})[0] == 403
    assert operator.get("/api/audit")[0] == 403
    status, made, _ = admin.post("/api/tokens", {"role": "viewer", "name": "ci"})
    assert status == 201 and made["token"].startswith("tmla_%s_" % made["id"]) and made["role"] == "viewer"
    assert w.client(made["token"]).get("/api/devices")[0] == 200
    assert admin.delete("/api/tokens/" + made["id"])[1]["revoked_at"]
    assert w.client(made["token"]).get("/api/devices")[0] == 401              # revoked at once

    audit = admin.get("/api/audit")[1]
    rows = {(a["role"], a["action"], a["status"]): a for a in audit}
    assert "operator role" in rows["viewer", "POST /api/deployments", 403]["result"]
    assert "unknown model 'm'" in rows["operator", "POST /api/deployments", 400]["result"]
    revoked = rows["admin", "DELETE /api/tokens/" + made["id"], 200]
    assert revoked["result"] == "ok" and revoked["actor"] == "token %s (admin)" % revoked["token_id"]
    assert revoked["remote"] == "127.0.0.1" and revoked["at"] > 0
    assert not [a for a in audit if a["action"].startswith("GET")]           # reads are not state changes


def test_bad_tokens_are_throttled(web_auth):
    w = web_auth
    good = w.token("viewer")
    forged = "tmla_%s_%s" % (good.split("_")[1], "x" * 43)                   # a real id, a wrong secret
    for bad in ["tmla_00000000_guess", forged, "nonsense", forged, forged]:
        assert w.client(bad).get("/api/devices")[0] == 401
    status, err, headers = w.client(good).get("/api/devices")                 # even the right one, for a while
    assert status == 429 and int(headers["Retry-After"]) >= 1 and "too many" in err["error"]
    assert w.client().post("/api/session", {"token": good})[0] == 429         # sign-in is counted the same way


def test_throttle_window():
    now = [0.0]
    t = Throttle(limit=3, window=60, clock=lambda: now[0], max_addresses=2)
    for _ in range(3):
        assert t.retry_after("a") == 0
        t.failed("a")
    assert t.retry_after("a") == 61 and t.retry_after("b") == 0
    now[0] = 30
    assert t.retry_after("a") == 31
    now[0] = 60.5                                       # the first failure left the window
    assert t.retry_after("a") == 0
    t.failed("b"), t.failed("c")                        # bounded: the oldest address is forgotten
    assert set(t._failures) == {"b", "c"}


def test_oversized_and_malformed_bodies_change_nothing(service_auth):
    w = service_auth
    admin = w.client(w.token("admin"))
    def tokens():
        return [(t["id"], t["role"], t["revoked_at"]) for t in admin.get("/api/tokens")[1]]

    before = tokens()
    status, err, _ = admin.post("/api/tokens", data=b'{"role": "admin", "name": "' + b"x" * (2 << 20) + b'"}')
    assert status == 413 and "1048576" in err["error"]
    for bad in (b"{", b"[1]", b"\xff\xfe", b'{"role": "root"}', b'{"role": "viewer", "name": 5}'):
        assert admin.post("/api/tokens", data=bad)[0] == 400, bad
    assert tokens() == before
    for bad in (b"{", b'{"model": 1}', b'{"model": "m", "devices": "d"}', b'{"model": "m", "canary": [1]}'):
        assert admin.post("/api/deployments", data=bad)[0] == 400, bad
    assert admin.get("/api/deployments")[1] == []


def sign_in(w, token):
    """-> (client carrying the session cookie, csrf, the Set-Cookie header)."""
    status, me, headers = w.client().post("/api/session", {"token": token})
    assert status == 200 and me["via"] == "session"
    cookie = headers["Set-Cookie"]
    return w.client(Cookie=cookie.split(";")[0]), me["csrf"], cookie


def test_console_session_needs_its_csrf_token_and_ends(web_auth):
    w = web_auth
    token = w.token("operator", "console")
    session, csrf, cookie = sign_in(w, token)
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
    assert "secure" not in attrs                                         # loopback: the browser is plain http
    assert token not in cookie and csrf not in cookie
    assert session.get("/api/session")[1]["role"] == "operator"
    refresh = "/api/devices/none/refresh"
    assert session.post(refresh)[0] == 403                               # a cookie alone changes nothing
    assert session.post(refresh, headers={"X-CSRF-Token": "x" * len(csrf)})[0] == 403
    assert session.post(refresh, headers={"X-CSRF-Token": csrf})[0] == 404   # allowed: no such device
    assert session.post(refresh, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})[0] == 403
    assert session.post(refresh, headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"})[0] == 403
    assert session.delete("/api/session", headers={"X-CSRF-Token": csrf})[1] == {"signed_out": True}
    assert session.get("/api/session")[0] == 401                         # the server forgot it

    session, csrf, _ = sign_in(w, token)
    w.api.tokens.revoke(token.split("_")[1])
    assert session.get("/api/session")[0] == 401                         # revoking the token ends its sessions
    assert w.client().post("/api/session", {"token": token})[0] == 401


def test_without_auth_only_loopback_same_site_callers(web_open):
    w = web_open
    c = w.client()
    assert c.get("/api/session")[1] == {"auth": False, "token_id": None, "name": "local", "role": "admin",
                                        "via": "local", "csrf": None}
    assert c.get("/api/devices", headers={"Host": "localhost:%d" % w.api.port})[0] == 200
    status, err, _ = c.get("/api/devices", headers={"Host": "rebound.example:%d" % w.api.port})
    assert status == 403 and "loopback" in err["error"]                  # DNS rebinding
    assert c.post("/api/devices/x/refresh", headers={"Origin": "http://evil.example"})[0] == 403
    assert c.post("/api/devices/x/refresh", headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert c.post("/api/devices/x/refresh", headers={"Origin": "null"})[0] == 403
    same = "http://127.0.0.1:%d" % w.api.port
    assert c.post("/api/devices/x/refresh", headers={"Origin": same, "Sec-Fetch-Site": "same-origin"})[0] == 404
    assert c.post("/api/session", {"token": "tmla_x"})[0] == 400          # nothing to sign in to


def test_tokens_are_stored_hashed_and_never_logged(tmp_path):
    data = tmp_path / "data"
    made = subprocess.run(CLI + ["tokens", "new", "--role", "admin", "--name", "ops", "--data", data],
                          capture_output=True, text=True, check=True).stdout
    token = made.splitlines()[0]
    assert re.fullmatch(r"tmla_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", token)
    serve = subprocess.Popen(CLI + ["serve", "-v", "--coap-host", "127.0.0.1", "--coap-port", "0", "--http-port",
                                    "0", "--auth", "required", "--data", data],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = serve.stdout.readline()
        base = re.search(r"API on (http://127\.0\.0\.1:\d+)", line).group(1)
        assert "API tokens required" in line

        def call(method, path, tok, body=None):
            req = urllib.request.Request(base + path, method=method, data=body,
                                         headers={"Authorization": "Bearer " + tok})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert call("GET", "/api/devices", token)[0] == 200
        assert call("GET", "/api/devices", token[:-4] + "AAAA")[0] == 401
        status, answer = call("POST", "/api/tokens", token, b'{"role": "viewer"}')
        second = json.loads(answer)["token"]
        assert status == 201 and call("GET", "/api/health", second)[0] == 200
        session = subprocess.run(["curl", "-s", "-i", "-X", "POST", base + "/api/session", "-d",
                                  '{"token": "%s"}' % second], capture_output=True, text=True).stdout
        sid = re.search(r"tinymlaas_session=([^;]+)", session).group(1)
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=10)
    logged = line + out + err
    assert "GET /api/devices" in logged and "bad API credentials from 127.0.0.1" in logged   # it does log
    for secret in (token, token.split("_", 2)[2], second, second.split("_", 2)[2], sid):
        assert secret not in logged
    dump = "\n".join(sqlite3.connect(data / "tinymlaas.db").iterdump())
    # a token's secret is everything after its id (token_urlsafe secrets may hold "_" themselves)
    for secret in (token, token.split("_", 2)[2], second, second.split("_", 2)[2], sid):
        assert secret not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump            # what is kept instead
