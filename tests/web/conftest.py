"""Fixtures: the LwM2M server and the web API on a real loopback port, in an event-loop thread of their own, so
tests talk to them with a blocking HTTP client (urllib) and real device processes."""

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest

from tinymlaas.lwm2m.server import LwM2MServer
from tinymlaas.web import build_api


class Web:
    """The API on a bare LwM2M server, or (data_dir given) on a whole Service: registry and deployments too."""

    def __init__(self, auth, data_dir=None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.svc = None
        if data_dir is None:
            self.server = self.call(LwM2MServer(":memory:", sweep_interval=0.2).start("127.0.0.1", 0))
        else:
            self.svc = self.call(self._service(data_dir))
            self.server = self.svc.server
        self.coap_uri = "coap://127.0.0.1:%d" % self.server.port
        self.api = build_api(self.server, self.svc, auth=auth)
        self.call(self.api.start("127.0.0.1", 0))
        self.base = "http://127.0.0.1:%d" % self.api.port

    @staticmethod
    async def _service(data_dir):
        from tinymlaas.service.core import Service

        return await Service(data_dir).start("127.0.0.1", 0)

    def call(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def token(self, role, name=""):
        return self.api.tokens.create(role, name)[1]

    def client(self, token=None, **headers):
        return Client(self.base, token, headers)

    def stop(self):
        self.call(self.api.stop())
        self.call(self.svc.stop() if self.svc else self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


NO_REDIRECTS = urllib.request.build_opener(_NoRedirects)


class Client:
    """A blocking JSON client: each call -> (status, decoded JSON body or raw bytes, headers). Redirects are
    answers, not followed."""

    def __init__(self, base, token=None, headers=None):
        self.base, self.headers = base, dict(headers or {})
        if token:
            self.headers["Authorization"] = "Bearer " + token

    def request(self, method, path, body=None, data=None, headers=None):
        if body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=dict(self.headers, **(headers or {})))
        try:
            with NO_REDIRECTS.open(req, timeout=60) as r:
                status, raw, hdrs = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, raw, hdrs = e.code, e.read(), e.headers
        try:
            return status, json.loads(raw), hdrs
        except ValueError:
            return status, raw, hdrs

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


@pytest.fixture
def web_open():
    """Auth off (a loopback service)."""
    w = Web(auth=False)
    yield w
    w.stop()


@pytest.fixture
def web_auth():
    """Auth required."""
    w = Web(auth=True)
    yield w
    w.stop()


@pytest.fixture
def service_auth(tmp_path):
    """A whole Service (registry, deployments) behind the API, auth required."""
    w = Web(auth=True, data_dir=tmp_path / "svc")
    yield w
    w.stop()
