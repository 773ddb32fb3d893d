"""JSON routes the console's pages use beyond the service's API:

    GET  /api/devices/{endpoint}/telemetry      samples and kept results                            viewer
    GET  /api/devices/{endpoint}/telemetry.csv  ?kind=samples|results, as CSV                       viewer
    GET  /api/telemetry.csv                     every device's samples (?kind=results: results)     viewer
    POST /api/devices/{endpoint}/telemetry/results  keep an inference result                        operator
    POST /api/tags                              {"devices": [...], "add": [...], "remove": [...]}   operator
    GET  /api/deployments/{id}/events           Server-Sent Events: the deployment each time it changes,
                                                then `event: end` once it is no longer running        viewer
    POST /api/deployments/{id}/halt             skip the devices not started yet (one installing finishes)  operator
    POST /api/deployments/{id}/rollback         reinstall the previous model where it made one active      operator
"""

import asyncio
import json
import re

from aiohttp import web

from ..service.deployments import DeploymentError
from ..web.app import IDENTITY, HttpError, json_body, reply

TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
EVENT_POLL = 0.25       # seconds between looks at a running deployment
KEEPALIVE = 15.0        # an SSE comment this often, so proxies keep the stream open


def _kind(request):
    kind = request.query.get("kind", "samples")
    if kind not in ("samples", "results"):
        raise HttpError(400, "kind must be samples or results, not %r" % kind)
    return kind


def _csv(text, filename):
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="%s"' % filename})


def _known(svc, endpoint):
    if svc.server.find(endpoint) is None and not svc.telemetry.samples(endpoint):
        raise HttpError(404, "no device %r" % endpoint)
    return endpoint


def _deployment_id(svc, request):
    try:
        dep_id = int(request.match_info["id"])
        svc.deployments.get(dep_id)
    except (ValueError, DeploymentError) as e:
        raise HttpError(404, str(e)) from None
    return dep_id


def console_api_routes(api, svc):
    async def telemetry(request):
        ep = _known(svc, request.match_info["endpoint"])
        return reply({"endpoint": ep, "retention_days": svc.telemetry.retention_days,
                      "samples": svc.telemetry.samples(ep), "results": svc.telemetry.results(ep)})

    async def telemetry_csv(request):
        ep = _known(svc, request.match_info["endpoint"])
        kind = _kind(request)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", ep)
        return _csv(svc.telemetry.csv(ep, kind), "%s-%s.csv" % (safe, kind))

    async def fleet_csv(request):
        kind = _kind(request)
        return _csv(svc.telemetry.csv(None, kind), "fleet-%s.csv" % kind)

    async def keep_result(request):
        ep = _known(svc, request.match_info["endpoint"])
        body = await json_body(request)
        scores = body.get("scores")
        if not isinstance(body.get("model"), str) or not isinstance(scores, list) or \
                not all(isinstance(s, (int, float)) for s in scores):
            raise HttpError(400, "'model' (a name) and 'scores' (a list of numbers) are required")
        rid = svc.telemetry.keep_result(ep, body["model"], body.get("class"), body.get("label"), scores,
                                        body.get("latency_us"))
        return reply({"id": rid}, 201)

    async def tags(request):
        body = await json_body(request)
        devices, add, remove = body.get("devices"), body.get("add") or [], body.get("remove") or []
        for name, value in (("devices", devices), ("add", add), ("remove", remove)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise HttpError(400, "'%s' must be a list of strings" % name)
        if not devices or not (add or remove):
            raise HttpError(400, "give 'devices' and at least one tag to 'add' or 'remove'")
        bad = [t for t in add + remove if not TAG.match(t)]
        if bad:
            raise HttpError(400, "tags are 1-64 letters, digits and . _ : - (starting with a letter or digit): %r"
                            % bad[0])
        unknown = sorted(set(devices) - {r.endpoint for r in svc.server.devices()})
        if unknown:
            raise HttpError(404, "unknown device(s): %s" % ", ".join(unknown))
        for ep in devices:
            svc.tag(ep, *add)
            svc.untag(ep, *remove)
        return reply({ep: svc.tags(ep) for ep in devices})

    async def deployment_events(request):
        dep_id = _deployment_id(svc, request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        last, quiet = None, 0.0
        try:
            while True:
                dep = svc.deployment_view(dep_id)
                dep["history"] = svc.deployments.history(dep_id)
                text = json.dumps(dep, default=str)   # one line: an SSE data field ends at a newline
                if text != last:
                    await response.write(("data: %s\n\n" % text).encode())
                    last, quiet = text, 0.0
                if dep["state"] != "running":
                    await response.write(b"event: end\ndata: {}\n\n")
                    break
                await asyncio.sleep(EVENT_POLL)
                quiet += EVENT_POLL
                if quiet >= KEEPALIVE:
                    await response.write(b": keep-alive\n\n")
                    quiet = 0.0
        except ConnectionResetError:
            pass   # the page was closed
        return response

    async def halt(request):
        dep_id = _deployment_id(svc, request)
        try:
            svc.engine.halt(dep_id, "halted by %s" % request[IDENTITY].actor)
        except DeploymentError as e:
            raise HttpError(409, str(e)) from None
        return reply(svc.deployment_view(dep_id))

    async def rollback(request):
        dep_id = _deployment_id(svc, request)
        try:
            devices = await svc.engine.rollback(dep_id, "by %s" % request[IDENTITY].actor)
        except DeploymentError as e:
            raise HttpError(409, str(e)) from None
        return reply(dict(svc.deployment_view(dep_id), rolled_back=devices))

    api.route("GET", "/api/devices/{endpoint}/telemetry", telemetry, "viewer")
    api.route("GET", "/api/devices/{endpoint}/telemetry.csv", telemetry_csv, "viewer")
    api.route("GET", "/api/telemetry.csv", fleet_csv, "viewer")
    api.route("POST", "/api/devices/{endpoint}/telemetry/results", keep_result, "operator")
    api.route("POST", "/api/tags", tags, "operator")
    api.route("GET", "/api/deployments/{id}/events", deployment_events, "viewer", stream=True)
    api.route("POST", "/api/deployments/{id}/halt", halt, "operator")
    api.route("POST", "/api/deployments/{id}/rollback", rollback, "operator", stream=True)   # installs take long
    return api
