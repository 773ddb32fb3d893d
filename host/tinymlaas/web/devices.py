"""Routes for the devices registered with the LwM2M server:

    GET  /api/health                      CoAP port, device count, datagram guard counters
    GET  /api/devices                     every registration (device_view), by endpoint; ?after=EP&limit=N: one
                                          page of at most N (1-10,000) after endpoint EP (the previous page's last)
    GET  /api/devices/{endpoint}          one
    POST /api/devices/{endpoint}/refresh  read the TinyML object again (409 for a device without one)
    GET  /api/devices/{endpoint}/reports  what it sent with LwM2M Send (alarms of anomaly models), newest first;
                                          ?kind=alarm|report, ?limit=N (1-1,000, default 100)
"""

import bisect
import time

from ..lwm2m.server import LwM2MError, NoTinyMLObject
from .app import HttpError, reply


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


def registration(server, request):
    ep = request.match_info["endpoint"]
    reg = server.find(ep)
    if reg is None:
        raise HttpError(404, "no registered device %r" % ep)
    return reg


MAX_PAGE = 10000


def page(regs, query):
    """The registrations (sorted by endpoint) of one page: those after ?after=, at most ?limit=. A fleet of
    100,000 is 78 MB of JSON in one answer (docs/benchmarks.md); a client pages through it instead."""
    limit = query.get("limit")
    if limit is not None:
        try:
            limit = int(limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE:
            raise HttpError(400, "limit must be a whole number from 1 to %d" % MAX_PAGE)
    if "after" in query:
        regs = regs[bisect.bisect_right([r.endpoint for r in regs], query["after"]):]
    return regs[:limit] if limit is not None else regs


def device_routes(api, server):
    async def list_devices(request):
        return reply([device_view(r, server) for r in page(server.devices(), request.query)])

    async def one_device(request):
        return reply(device_view(registration(server, request), server))

    async def refresh(request):
        ep = registration(server, request).endpoint
        try:
            await server.fetch_capabilities(ep)
        except NoTinyMLObject as e:
            raise HttpError(409, str(e)) from None
        except LwM2MError as e:     # what the device answered, or that it did not
            raise HttpError(502, str(e)) from None
        return reply(device_view(server.device(ep), server))

    async def reports(request):
        try:
            limit = int(request.query.get("limit", 100))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise HttpError(400, "limit must be a whole number from 1 to 1000")
        kind = request.query.get("kind")
        if kind not in (None, "alarm", "report"):
            raise HttpError(400, "kind is alarm or report")
        return reply(server.reports.recent(request.match_info["endpoint"], limit, kind))

    async def health(request):
        return reply({"coap_port": server.port, "devices": len(server.devices()),
                      "datagrams": server.guard_stats.as_dict() if server.guard_stats else None,
                      "database": {"kind": server.store.db.kind, "commits": server.store.db.commits},
                      "capability_reads": server.capability_reads.stats()})

    api.route("GET", "/api/health", health, "viewer")
    api.route("GET", "/api/devices", list_devices, "viewer")
    api.route("GET", "/api/devices/{endpoint}", one_device, "viewer")
    api.route("POST", "/api/devices/{endpoint}/refresh", refresh, "operator")
    api.route("GET", "/api/devices/{endpoint}/reports", reports, "viewer")
    return api
