"""The API's device requests in a node group go to the node that owns the device (docs/nodes.md).

Only the node a device's datagrams reach (its owner, `devices.node`) can talk to it: behind nginx the device's
session is that node's, in a SO_REUSEPORT group the kernel hands the device's answers to that node's socket. So a
request for a device made on another node (LwM2M Read, Write, Create, Execute, Delete, Discover,
Write-Attributes, infer, refresh) is not made there: the middleware below, after the role checks and inside the
audit log of the node that got it, hands it to the owner as an `api_call` job on that node's queue (the same path
as the rollout engine's `device_call`, tasks.RolloutQueue.ask), whose worker runs the same route handler on a
`OwnedRequest` and writes its status and JSON body back. A dead owner's device is served here, as before (in a
reuse-port group its datagrams come here now). Observe and its cancel are routed too, and the observations list:
the owner observes, and its notifications reach this node's /api/events readers through PostgreSQL LISTEN/NOTIFY
(service/node_events.py, started here for every node). Not routed: what the database answers on every node
(listings, telemetry, reports).
"""

import json

from aiohttp import web

from ..lwm2m import paths as P
from ..service.deployments import DeliveryError
from .app import REQUEST_TIMEOUT, HttpError, dumps
from .learning import DEVICE_ROUTES as LEARNING_ROUTES
from .lwm2m import PATH

LWM2M = "/api/devices/{endpoint}/lwm2m/" + PATH
ROUTED = {("GET", LWM2M), ("PUT", LWM2M), ("POST", LWM2M), ("DELETE", LWM2M), ("GET", LWM2M + "/discover"),
          ("PUT", LWM2M + "/attributes"), ("POST", LWM2M + "/observe"), ("DELETE", LWM2M + "/observe"),
          ("GET", "/api/devices/{endpoint}/observations"), ("POST", "/api/devices/{endpoint}/infer"),
          ("POST", "/api/devices/{endpoint}/refresh")} | set(LEARNING_ROUTES)
STREAM_TIMEOUT = 300.0      # a batch inference (a stream route: no 30 s request limit)


class OwnedRequest:
    """What the routed handlers read of a request, made again on the owner from the job's arguments."""

    def __init__(self, method, match_info, query, body):
        self.method = method
        self.match_info = match_info
        self.query = query
        self._body = body

    async def read(self):
        return self._body


async def answer(handler, method, match_info, query, body):
    """Run a route handler on the owner -> (HTTP status, JSON text), its HttpError as the error middleware says it."""
    try:
        response = await handler(OwnedRequest(method, match_info, query, body))
        return response.status, response.text
    except HttpError as e:
        return e.status, dumps(dict(e.extra, error=e.message))


def route_to_owner(api, svc):
    """Install the routing for a node (`svc.queue` set): this node's handlers become the ones its api_call jobs
    run, and its requests for devices owned by a live other node go there."""
    queue, server = svc.queue, svc.server
    handlers = {(info.method, info.path): route.handler for route, info in api.routes.items()
                if (info.method, info.path) in ROUTED}
    missing = ROUTED - set(handlers)
    if missing:
        raise RuntimeError("owner routing: no such routes %s" % sorted(missing))
    queue.api_answer = lambda method, route, match_info, query, body: answer(handlers[(method, route)], method,
                                                                             match_info, query, body)

    @web.middleware
    async def to_owner(request, handler):
        info = api.info(request)
        endpoint = request.match_info.get("endpoint")
        if info is None or endpoint is None or (info.method, info.path) not in ROUTED:
            return await handler(request)
        owner = server.owner_elsewhere(endpoint)
        if owner is None or not queue.alive(owner):
            return await handler(request)
        body = await request.read()
        try:
            status, text = await queue.ask_api(owner, endpoint, info.method, info.path, dict(request.match_info),
                                               dict(request.query), body,
                                               STREAM_TIMEOUT if info.stream else REQUEST_TIMEOUT)
        except DeliveryError as e:
            raise HttpError(504, "device %s is served by node %s: %s" % (endpoint, owner, e)) from None
        if status >= 400:      # as the owner said it, and in this node's audit log
            error = json.loads(text)
            raise HttpError(status, error.pop("error", "error"), extra=error)
        if info.path == LWM2M + "/observe":     # its end is told here even if the owner dies
            path = P.fmt(P.parse("/" + request.match_info["path"]))
            if info.method == "POST":
                api.node_events.watch(owner, endpoint, path)
            else:
                api.node_events.unwatch(endpoint, path)
        return web.Response(status=status, text=text, content_type="application/json",
                            headers={"X-Tinymlaas-Node": owner})

    api.app.middlewares.append(to_owner)
    relay_events(api, svc, queue.alive)
    return api


def relay_events(api, svc, alive):
    """Every node's SSE readers see the group's events (the owner's notifications of an observation asked here)."""
    from ..service.node_events import NodeEvents

    events = NodeEvents(api.hub, svc.queue.db_url, svc.node, alive)

    async def start(app):
        await events.start()

    async def stop(app):
        await events.stop()

    api.app.on_startup.append(start)
    api.app.on_cleanup.append(stop)
    api.node_events = events
