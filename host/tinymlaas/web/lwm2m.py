"""Device management over HTTP, any registered device (with or without the TinyML object), any path:

    GET    /api/devices/{ep}/lwm2m/{path}            Read            ?format=tlv|senml-json|senml-cbor|text|opaque
                                                                     &raw=1 (the answer's bytes, hex)   viewer
    PUT    /api/devices/{ep}/lwm2m/{path}            Write (replace) {"value": v} | {"values": {path: v}}, "format"
    POST   /api/devices/{ep}/lwm2m/{o}               Create          {"values": {"/o/i/r": v}, "format"}
    POST   /api/devices/{ep}/lwm2m/{o}/{i}           Write (partial update) {"values": {...}, "format"}
    POST   /api/devices/{ep}/lwm2m/{o}/{i}/{r}       Execute         {"args": "..."} (or no body)
    DELETE /api/devices/{ep}/lwm2m/{path}            Delete
    GET    /api/devices/{ep}/lwm2m/{path}/discover   Discover: the device's links and attributes        viewer
    PUT    /api/devices/{ep}/lwm2m/{path}/attributes Write-Attributes {"pmin": 5, "pmax": 60, ...}
    POST   /api/devices/{ep}/lwm2m/{path}/observe    Observe: the first values; notifications go to /api/events
    DELETE /api/devices/{ep}/lwm2m/{path}/observe    cancel it
    GET    /api/devices/{ep}/observations            the observations this API started, with their last values
    GET    /api/events                               Server-Sent Events: registrations and notifications   viewer

The HTTP method is the CoAP method LwM2M uses for the operation (docs/lwm2m-server.md). Everything not marked
viewer needs an operator. Values are JSON: strings, numbers, booleans; Opaque as hex, Objlnk as "3:0". A
value written is typed by the object model when it knows the resource, and checked before anything is sent.
A device's own refusal answers 502 with its LwM2M code (`"code": "4.04"`); no answer in time is 504.
"""

import asyncio
import json
import logging
import math
import time

from aiohttp import web

from ..lwm2m import codecs as C
from ..lwm2m import paths as P
from ..lwm2m import values as V
from ..lwm2m.server import DeviceError, DeviceUnreachable, NotRegistered
from .app import HttpError, json_body, reply

log = logging.getLogger("tinymlaas.web.lwm2m")

PATH = r"{path:\d+(?:/\d+){0,3}}"
ATTRIBUTES = ("pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge", "con", "hqmax")
SSE_QUEUE = 1000          # events a slow reader may fall behind before it is disconnected
SSE_KEEPALIVE = 15.0


# -- values <-> JSON --------------------------------------------------------------------------------------
def value_json(model, path, value):
    typ = model.type_of(path) or V.guess_type(value)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).hex()
    elif isinstance(value, V.ObjLink):
        value = str(value)
    elif isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    return {"path": P.fmt(path), "type": typ, "value": value}


def values_json(model, values):
    return [value_json(model, p, v) for p, v in sorted(values.items())]


def value_from_json(model, path, value):
    """A JSON value for `path` as the Python value its LwM2M type takes; HttpError 400 if it cannot be one."""
    typ = model.type_of(path)
    try:
        if typ == V.OPAQUE or (typ is None and isinstance(value, dict) and "hex" in value):
            value = bytes.fromhex(value["hex"] if isinstance(value, dict) else value)
            typ = V.OPAQUE
        elif typ == V.OBJLNK:
            oid, _, iid = str(value).partition(":")
            value = V.ObjLink(int(oid), int(iid))
        elif typ == V.FLOAT and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if typ is None:
            typ = V.guess_type(value)
        V.check_value(typ, value)
    except (ValueError, TypeError, KeyError) as e:
        raise HttpError(400, "%s: %s" % (P.fmt(path), e)) from None
    return value


def _path(request):
    try:
        return P.parse("/" + request.match_info["path"])
    except P.PathError as e:
        raise HttpError(400, str(e)) from None


def _format(value):
    if value is None:
        return None
    try:
        return C.content_format(int(value) if str(value).isdigit() else value)
    except C.CodecError as e:
        raise HttpError(400, str(e)) from None


async def _device_call(coro):
    """Await a device operation; its failures as HTTP errors."""
    try:
        return await coro
    except NotRegistered as e:
        raise HttpError(404, str(e)) from None
    except DeviceUnreachable as e:
        raise HttpError(504, str(e)) from None
    except DeviceError as e:
        raise HttpError(502, str(e), extra={"code": e.code}) from None
    except (ValueError, C.CodecError) as e:          # paths, formats, values the codecs refuse
        raise HttpError(400, str(e)) from None


def _written(body, model, path):
    if "value" in body:
        return {path: value_from_json(model, path, body["value"])}
    values = body.get("values")
    if not isinstance(values, dict) or not values:
        raise HttpError(400, "give 'value' (for the path itself) or 'values' ({path: value})")
    out = {}
    for key, v in values.items():
        try:
            p = P.parse(key)
        except P.PathError as e:
            raise HttpError(400, str(e)) from None
        if p[:len(path)] != path:
            raise HttpError(400, "%s is not under %s" % (key, P.fmt(path)))
        out[p] = value_from_json(model, p, v)
    return out


# -- events ----------------------------------------------------------------------------------------------
class EventHub:
    """Fans the server's registration events and the API's observation notifications out to SSE readers."""

    def __init__(self, server):
        self.readers = set()
        self.relays = []        # f(kind, data) for each event published here: a node group's (service/node_events.py)
        server.on_event(lambda ev: self.publish(ev.kind, {"endpoint": ev.endpoint, "address": ev.registration.address}))

    def publish(self, kind, data):
        data = dict(data, at=time.time())
        self.deliver(kind, data)
        for relay in self.relays:
            relay(kind, data)

    def deliver(self, kind, data):
        """To this node's readers only (what another node relayed)."""
        for q in list(self.readers):
            try:
                q.put_nowait((kind, data))
            except asyncio.QueueFull:        # a reader that does not keep up is dropped, not waited for
                self.readers.discard(q)

    async def stream(self, request):
        only = request.query.get("endpoint")
        q = asyncio.Queue(SSE_QUEUE)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        self.readers.add(q)
        try:
            await response.write(b": tinymlaas events\n\n")
            while q in self.readers or not q.empty():
                try:
                    kind, data = await asyncio.wait_for(q.get(), SSE_KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if only is None or data.get("endpoint") == only:
                    await response.write(("event: %s\ndata: %s\n\n" % (kind, json.dumps(data, default=str))).encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.readers.discard(q)
        return response


class Observing:
    """The observations started through the API: one per (endpoint, path), shared by every reader."""

    def __init__(self, server, hub):
        self.server, self.hub = server, hub
        self.entries = {}       # (endpoint, path) -> dict

    def _callback(self, endpoint, path):
        def on_values(values, obs):
            key = (endpoint, path)
            if values is None:
                if self.entries.get(key, {}).get("observation") is obs:
                    del self.entries[key]
                self.hub.publish("observation-ended", {"endpoint": endpoint, "path": P.fmt(path)})
                return
            entry = self.entries.setdefault(key, {"observation": obs, "since": time.time()})
            entry["values"] = values_json(self.server.model, values)
            entry["at"] = time.time()
            self.hub.publish("notification", {"endpoint": endpoint, "path": P.fmt(path), "values": entry["values"],
                                              "count": obs.notifications})
        return on_values

    async def start(self, endpoint, path, fmt):
        entry = self.entries.get((endpoint, path))
        if entry is None or not entry["observation"].active:
            self.entries.pop((endpoint, path), None)
            await self.server.observe(endpoint, path, self._callback(endpoint, path), fmt)
        return self.view(endpoint, path)

    def cancel(self, endpoint, path):
        entry = self.entries.pop((endpoint, path), None)
        if entry is None:
            raise HttpError(404, "no observation of %s on %s started here" % (P.fmt(path), endpoint))
        entry["observation"].cancel()

    def view(self, endpoint, path):
        e = self.entries.get((endpoint, path))
        if e is None:       # the device answered without starting one (RFC 7641 §3.1)
            return {"endpoint": endpoint, "path": P.fmt(path), "active": False}
        return {"endpoint": endpoint, "path": P.fmt(path), "active": e["observation"].active, "since": e["since"],
                "notifications": e["observation"].notifications, "values": e.get("values"), "at": e.get("at")}

    def of(self, endpoint):
        return [self.view(ep, p) for ep, p in sorted(self.entries) if ep == endpoint]


def lwm2m_routes(api, server):
    hub = EventHub(server)
    observing = Observing(server, hub)
    model = server.model

    async def read(request):
        ep, path = request.match_info["endpoint"], _path(request)
        fmt = _format(request.query.get("format"))
        cf, payload, values = await _device_call(server.read_answer(ep, path, fmt))
        answer = {"endpoint": ep, "path": P.fmt(path), "format": C.NAMES.get(cf, cf), "values": values_json(model, values)}
        if request.query.get("raw") in ("1", "true", "yes"):
            answer["content_format"], answer["raw"] = cf, payload.hex()
        return reply(answer)

    async def write(request):
        ep, path = request.match_info["endpoint"], _path(request)
        body = await json_body(request)
        code = await _device_call(server.write(ep, path, _written(body, model, path), _format(body.get("format"))))
        return reply({"endpoint": ep, "path": P.fmt(path), "code": code})

    async def post(request):
        ep, path = request.match_info["endpoint"], _path(request)
        body = await json_body(request)
        fmt = _format(body.get("format"))
        if len(path) == 1:
            location = await _device_call(server.create(ep, path, _written(body, model, path), fmt))
            return reply({"endpoint": ep, "path": P.fmt(path), "code": "2.01",
                          "location": "/" + "/".join(location) if location else None}, 201)
        if len(path) == 2:
            code = await _device_call(server.write(ep, path, _written(body, model, path), fmt, replace=False))
            return reply({"endpoint": ep, "path": P.fmt(path), "code": code})
        if len(path) == 3:
            args = body.get("args")
            if args is not None and not isinstance(args, str):
                raise HttpError(400, "'args' must be a string (LwM2M Execute arguments, e.g. \"0='x',1\")")
            code = await _device_call(server.execute(ep, path, args))
            return reply({"endpoint": ep, "path": P.fmt(path), "code": code})
        raise HttpError(400, "POST is Create on /o, a partial Write on /o/i or Execute on /o/i/r; not for %s"
                        % P.fmt(path))

    async def delete(request):
        ep, path = request.match_info["endpoint"], _path(request)
        code = await _device_call(server.delete(ep, path))
        return reply({"endpoint": ep, "path": P.fmt(path), "code": code})

    async def discover(request):
        ep, path = request.match_info["endpoint"], _path(request)
        links = await _device_call(server.discover(ep, path))
        return reply({"endpoint": ep, "path": P.fmt(path),
                      "links": [{"uri": l.uri, "attributes": l.params} for l in links]})

    async def attributes(request):
        ep, path = request.match_info["endpoint"], _path(request)
        body = await json_body(request)
        bad = sorted(set(body) - set(ATTRIBUTES))
        if bad or not body:
            raise HttpError(400, "notification attributes are %s%s" % (", ".join(ATTRIBUTES),
                                                                       "; not %s" % ", ".join(bad) if bad else ""))
        code = await _device_call(server.write_attributes(ep, path, **body))
        return reply({"endpoint": ep, "path": P.fmt(path), "code": code})

    async def observe(request):
        ep, path = request.match_info["endpoint"], _path(request)
        body = await json_body(request)
        return reply(await _device_call(observing.start(ep, path, _format(body.get("format")))), 201)

    async def cancel(request):
        ep, path = request.match_info["endpoint"], _path(request)
        observing.cancel(ep, path)
        return reply({"endpoint": ep, "path": P.fmt(path), "active": False})

    async def observations(request):
        ep = request.match_info["endpoint"]
        if server.find(ep) is None:
            raise HttpError(404, "no registered device %r" % ep)
        return reply(observing.of(ep))

    base = "/api/devices/{endpoint}/lwm2m/" + PATH
    api.route("GET", base, read, "viewer")
    api.route("PUT", base, write, "operator")
    api.route("POST", base, post, "operator")
    api.route("DELETE", base, delete, "operator")
    api.route("GET", base + "/discover", discover, "viewer")
    api.route("PUT", base + "/attributes", attributes, "operator")
    api.route("POST", base + "/observe", observe, "operator")
    api.route("DELETE", base + "/observe", cancel, "operator")
    api.route("GET", "/api/devices/{endpoint}/observations", observations, "viewer")
    api.route("GET", "/api/events", hub.stream, "viewer", stream=True)
    api.hub = hub
    return api
