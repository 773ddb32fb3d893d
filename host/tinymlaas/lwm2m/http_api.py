"""A small JSON-over-HTTP/1.1 API on asyncio streams (no web framework): routes are (method, regex, handler).

Handlers are `async def handler(match, body) -> (status, obj)`; obj is sent as JSON. Requests are bounded
(request line + headers 16 KiB, body 1 MiB) and every connection is closed after one response.
"""

import asyncio
import json
import logging
import re
import time

log = logging.getLogger("tinymlaas.lwm2m.http")

MAX_HEAD = 16 * 1024
MAX_BODY = 1 << 20
REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway", 504: "Gateway Timeout"}


class HttpApi:
    def __init__(self):
        self.routes = []
        self._server = None
        self.port = None

    def route(self, method, pattern, handler):
        self.routes.append((method, re.compile(pattern + r"\Z"), handler))

    async def start(self, host="127.0.0.1", port=8080):
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader, writer):
        status, obj = 500, {"error": "internal error"}
        try:
            status, obj = await asyncio.wait_for(self._respond(reader), 30)
        except (asyncio.LimitOverrunError, ValueError):
            status, obj = 400, {"error": "request head too long or malformed"}
        except asyncio.TimeoutError:
            status, obj = 504, {"error": "timed out"}
        except Exception:
            log.exception("HTTP handler failed")
        body = json.dumps(obj, indent=1, default=str).encode()
        head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
            status, REASONS.get(status, ""), len(body))
        try:
            writer.write(head.encode() + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _respond(self, reader):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, {"error": "bad request line"}
        method, target = parts[0], parts[1].split("?", 1)[0]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                if not value.strip().isdigit():
                    return 400, {"error": "bad Content-Length"}
                length = int(value)
        if length > MAX_BODY:
            return 413, {"error": "body larger than %d bytes" % MAX_BODY}
        body = await reader.readexactly(length) if length else b""
        allowed = False
        for m, rx, handler in self.routes:
            match = rx.match(target)
            if match:
                if m == method:
                    return await handler(match, body)
                allowed = True
        return (405, {"error": "method not allowed"}) if allowed else (404, {"error": "no such resource"})


def device_view(reg, server=None):
    """What /api/devices shows for one registration (also used by `tinymlaas devices --json`). `security` is
    "oscore" for an endpoint the server only talks to under OSCORE, else "nosec"."""
    caps = reg.capabilities or {}
    model = None
    if caps.get("Model Name") or caps.get("Model SHA256"):
        model = {"name": caps.get("Model Name"), "version": caps.get("Model Version"),
                 "sha256": caps.get("Model SHA256"), "state": caps.get("Model State")}
    return {
        "endpoint": reg.endpoint,
        "address": reg.address,
        "registration": reg.id,
        "registered_at": reg.registered_at,
        "registered_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reg.registered_at)),
        "updated_at": reg.updated_at,
        "lifetime": reg.lifetime,
        "expires_in": max(0, round(reg.expires_at() - time.time(), 1)),
        "lwm2m_version": reg.lwm2m_version,
        "binding": reg.binding,
        "objects": reg.objects,
        "capabilities": reg.capabilities,
        "installed_model": model,
        "security": "oscore" if server is not None and server.oscore.for_endpoint(reg.endpoint) else "nosec",
    }


def device_routes(api, server):
    """GET /api/devices, GET /api/devices/<endpoint>, POST /api/devices/<endpoint>/refresh, GET /api/health."""

    async def list_devices(match, body):
        return 200, [device_view(r, server) for r in server.devices()]

    async def one_device(match, body):
        reg = server.find(match.group(1))
        return (200, device_view(reg, server)) if reg else (404, {"error": "no registered device %r" % match.group(1)})

    async def refresh(match, body):
        ep = match.group(1)
        if server.find(ep) is None:
            return 404, {"error": "no registered device %r" % ep}
        caps = await server.refresh_capabilities(ep)
        return (200, device_view(server.device(ep), server)) if caps is not None else (502, {"error": "device did not answer"})

    async def health(match, body):
        return 200, {"coap_port": server.port, "devices": len(server.devices()),
                     "datagrams": server.guard_stats.as_dict() if server.guard_stats else None}

    api.route("GET", r"/api/devices/?", list_devices)
    api.route("GET", r"/api/devices/([^/]+)", one_device)
    api.route("POST", r"/api/devices/([^/]+)/refresh", refresh)
    api.route("GET", r"/api/health", health)
    return api
