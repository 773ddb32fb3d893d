"""The console's pages: server-rendered HTML (Jinja2, autoescaped) on the service's aiohttp app.

Every page needs a signed-in viewer (audit, tokens and keys: an admin); actions on a page call the JSON API with the
session's CSRF token (static/console.js). Pages answer with a Content-Security-Policy that allows this service's
own script and style only: no inline script, no inline style, nothing from another origin.
"""

import time

import aiohttp_jinja2
from aiohttp import web

from ..commands.explain import explain_rows
from ..lwm2m.server import NotRegistered
from ..registry import RegistryError
from ..service.core import normalize_capabilities
from ..service.deployments import DeploymentError
from ..web.app import IDENTITY, LOGIN_PAGE, HttpError
from ..web.tokens import ROLES, allows
from . import charts, views

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
FLEET_PAGE = 200   # rows of the fleet page
NAV = [("/", "Fleet", "fleet"), ("/console/models", "Models", "models"), ("/console/deployments", "Deployments", "deployments")]
ADMIN_NAV = [("/console/audit", "Audit log", "audit"), ("/console/tokens", "Tokens", "tokens"),
             ("/console/keys", "Keys", "keys")]
DEPLOYMENT_BADGES = {"running": "busy", "completed": "ok", "halted": "bad", "failed": "bad",
                     "queued": "idle", "delivering": "busy", "verifying": "busy", "active": "ok",
                     "rolled_back": "idle", "skipped": "idle", "waiting": "idle",
                     # stages
                     "pending": "idle", "passed": "ok", "done": "ok"}


def render(request, template, page, section, **context):
    identity = request.get(IDENTITY)
    nav = NAV + (ADMIN_NAV if identity is not None and allows(identity.role, "admin") else [])
    context.update(page=page, section=section, nav=nav, identity=identity,
                   csrf=identity.csrf if identity is not None else None,
                   can_operate=identity is not None and allows(identity.role, "operator"),
                   can_admin=identity is not None and allows(identity.role, "admin"))
    response = aiohttp_jinja2.render_template(template, request, context)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def page_routes(api, svc):
    async def login(request):
        nxt = request.query.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):   # only a path of this service: no open redirect
            nxt = "/"
        if api.session_identity(request) is not None:
            raise web.HTTPSeeOther(nxt)
        return render(request, "login.html", "login", "", next=nxt)

    async def fleet(request):
        rows = views.fleet(svc)
        counts = {}
        for r in rows:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        # Up to FLEET_PAGE rows per page: the page's cost is the rows it renders (docs/benchmarks.md: 85 us
        # each, 92 % of it in the template). A fleet on one page is filtered in the browser as one types;
        # beyond, the filters go to the server (?q, ?state, ?tag, ?model) and the page shows where it is.
        filters = {k: request.query.get(k, "") for k in ("q", "state", "tag", "model")}
        picked = [r for r in rows if views.matches(r, filters["q"], filters["state"], filters["tag"], filters["model"])]
        try:
            page = int(request.query.get("page", "1"))
        except ValueError:
            raise HttpError(400, "page must be a page number") from None
        pages = max(1, -(-len(picked) // FLEET_PAGE))
        page = min(max(page, 1), pages)
        first = (page - 1) * FLEET_PAGE
        return render(request, "fleet.html", "fleet", "fleet", rows=picked[first:first + FLEET_PAGE], total=len(rows),
                      matched=len(picked), first=first, page_no=page, pages=pages, paged=len(rows) > FLEET_PAGE,
                      filters=filters, query={k: v for k, v in filters.items() if v}, counts=counts,
                      states=views.STATES, all_tags=sorted({t for r in rows for t in r["tags"]}),
                      all_models=sorted({r["model"]["name"] for r in rows if r["model"] and r["model"]["name"]}))

    async def device(request):
        ep = request.match_info["endpoint"]
        row = views.device(svc, ep)
        if row is None:
            raise HttpError(404, "no device %r has registered with this service" % ep)
        reg = svc.server.find(ep)
        caps = (reg.capabilities if reg else None) or {}
        variant = None
        if row["model"] and row["model"]["sha256"]:
            v = svc.db.query_one("SELECT id FROM variants WHERE artifact_sha256=? ORDER BY id DESC LIMIT 1",
                                 (row["model"]["sha256"],))
            variant = svc.registry.variant(v["id"]) if v else None
        input_spec, labels = "", []
        if variant is not None:
            input_spec = blob_input(svc.registry.artifact(variant)) if variant["artifact_kind"] == "tmlb" else ""
            labels = svc.registry.model(variant["model_id"]).get("labels") or []
        deployments = svc.db.query(
            "SELECT dd.deployment_id, dd.state, dd.reason, dd.updated_at, m.name AS model FROM deployment_devices dd "
            "JOIN deployments d ON d.id = dd.deployment_id JOIN models m ON m.id = d.model_id "
            "WHERE dd.endpoint=? ORDER BY dd.deployment_id DESC LIMIT 20", (ep,))
        for r in deployments:
            r["cls"] = DEPLOYMENT_BADGES.get(r["state"], "idle")
        events = svc.db.query("SELECT event, at, address FROM device_events WHERE endpoint=? ORDER BY at DESC LIMIT 20",
                              (ep,))
        chart_rows = [(metric, title, unit, points, charts.time_series(points, title, unit))
                      for metric, title, unit, points in views.device_charts(svc, ep)]
        ops = caps.get("Supported Ops") or ""
        return render(request, "device.html", "device", "fleet", d=row, reg=reg, caps=caps, variant=variant,
                      ops=[o for o in ops.split(",") if o] if isinstance(ops, str) else list(ops),
                      tree=views.object_tree(svc.server.model, reg) if reg else [], charts=chart_rows,
                      sample_count=len(svc.telemetry.samples(ep)), retention_days=svc.telemetry.retention_days,
                      kept=svc.telemetry.results(ep, 20), deployments=deployments, events=events,
                      input_spec=input_spec, labels=labels, alarms=svc.server.reports.recent(ep, 20),
                      alarm_total=svc.server.reports.count(ep))

    def variant_scatter(models):
        series = []
        for m in models:
            pts = [(v["flash_bytes"], v["accuracy"], "%s v%s, variant %d %s: %s flash, %s RAM, accuracy %s"
                    % (m["name"], m["version"], v["id"], v["backend"], charts.human(v["flash_bytes"], "B"),
                       charts.human(v["ram_bytes"], "B"), percent(v["accuracy"]))) for v in m["variants"]]
            series.append(("%s v%s" % (m["name"], m["version"]), pts))
        return charts.scatter(series, "flash (package blob)", "accuracy", "B")

    async def models(request):
        rows = svc.registry.models()
        for m in rows:
            m["variants"] = svc.registry.variants(m)
            accs = [v["accuracy"] for v in m["variants"] if v["accuracy"] is not None]
            m["best_accuracy"] = max(accs) if accs else None
            m["smallest_flash"] = min((v["flash_bytes"] for v in m["variants"]), default=None)
        return render(request, "models.html", "models", "models", models=rows, scatter=variant_scatter(rows),
                      variant_count=sum(len(m["variants"]) for m in rows))

    async def model(request):
        name = request.match_info["name"]
        try:
            m = svc.registry.model(name, request.query.get("version") or None)
        except RegistryError as e:
            raise HttpError(404, str(e)) from None
        m["variants"] = variants = svc.registry.variants(m)
        columns, cells = views.fit_matrix(svc, variants)
        registered = [r.endpoint for r in svc.server.devices() if r.capabilities]
        explain_for = request.query.get("device", "")
        explain, explain_error = None, None
        if explain_for:
            try:
                caps = normalize_capabilities(svc.server.device(explain_for).capabilities)
                _, _, best, verdicts = svc.explain(m["name"], explain_for, caps=caps) if variants else (0, 0, None, [])
                explain = {"caps": caps, "chosen": best.variant["id"] if best else None, "rows": explain_rows(verdicts)}
            except (NotRegistered, TypeError) as e:
                explain_error = "cannot explain for %s: %s" % (explain_for, e if isinstance(e, NotRegistered)
                                                               else "it has not reported its capabilities")
        versions = [r for r in svc.registry.models() if r["name"] == m["name"]]
        return render(request, "model.html", "model", "models", m=m, variants=variants, columns=columns,
                      cells=cells, scatter=variant_scatter([m]), versions=versions, explain_devices=registered,
                      explain_for=explain_for, explain=explain, explain_error=explain_error)

    def deployment_row(dep):
        model = svc.registry.model(dep["model_id"])
        dep.update(model_name=model["name"], model_version=model["version"],
                   state_class=DEPLOYMENT_BADGES.get(dep["state"], "idle"))
        counts = {}
        for d in dep["devices"]:
            d["state_class"] = DEPLOYMENT_BADGES.get(d["state"], "idle")
            counts[d["state"]] = counts.get(d["state"], 0) + 1
        dep["counts"] = sorted(counts.items())
        for st in dep.get("stage_list", ()):
            st["state_class"] = DEPLOYMENT_BADGES.get(st["state"], "idle")
            st["count_list"] = sorted((k, v) for k, v in st["counts"].items() if k != "peak_in_flight")
        return dep

    async def deployments(request):
        rows = [deployment_row(d) for d in reversed(svc.deployments.list())]
        devices = [r for r in views.fleet(svc) if r["registered"]]
        return render(request, "deployments.html", "deployments", "deployments", deployments=rows, devices=devices,
                      model_names=sorted({m["name"] for m in svc.registry.models()}),
                      all_tags=sorted({t for r in devices for t in r["tags"]}),
                      preset_model=request.query.get("model", ""), preset_device=request.query.get("device", ""))

    async def deployment(request):
        try:
            dep = deployment_row(svc.deployment_view(int(request.match_info["id"])))
        except (ValueError, DeploymentError) as e:
            raise HttpError(404, str(e)) from None
        history = svc.deployments.history(dep["id"])
        for h in history:
            h["state_class"] = DEPLOYMENT_BADGES.get(h["state"], "idle")
        rollbackable = any(d["state"] == "active" and (d["previous"] or {}).get("sha256") for d in dep["devices"])
        return render(request, "deployment.html", "deployment", "deployments", dep=dep, history=history,
                      rollbackable=rollbackable, badges=DEPLOYMENT_BADGES)

    async def audit(request):
        try:
            before = int(request.query["before"]) if "before" in request.query else None
        except ValueError:
            raise HttpError(400, "before must be an audit entry id") from None
        entries = api.audit.entries(101, before)
        return render(request, "audit.html", "audit", "audit", entries=entries[:100], more=len(entries) > 100)

    async def tokens(request):
        return render(request, "tokens.html", "tokens", "tokens", tokens=api.tokens.list(), roles=ROLES)

    async def keys(request):
        from .keys import keys_context

        return render(request, "keys.html", "keys", "keys", **keys_context(svc))

    api.route("GET", LOGIN_PAGE, login, None, page=True)
    api.route("GET", "/", fleet, "viewer", page=True)
    api.route("GET", "/console/devices/{endpoint}", device, "viewer", page=True)
    api.route("GET", "/console/models", models, "viewer", page=True)
    api.route("GET", "/console/models/{name}", model, "viewer", page=True)
    api.route("GET", "/console/deployments", deployments, "viewer", page=True)
    api.route("GET", "/console/deployments/{id}", deployment, "viewer", page=True)
    api.route("GET", "/console/audit", audit, "admin", page=True)
    api.route("GET", "/console/tokens", tokens, "admin", page=True)
    api.route("GET", "/console/keys", keys, "admin", page=True)


def blob_input(blob):
    """'1x49x10x1 int8': what the inference form must be given."""
    from ..blob import format as F
    from ..blob.reader import parse

    b = parse(blob)
    return ", ".join("%s %s" % ("x".join(map(str, b.tensors[i].shape)), F.DTYPE_NAMES[b.tensors[i].dtype])
                     for i in b.inputs)


def percent(value):
    return "–" if value is None else "%.1f %%" % (100.0 * value)


def ago(t, now=None):
    now = time.time() if now is None else now
    s = now - t
    future = s < 0
    s = abs(s)
    text = ("%d s" % s if s < 90 else "%d min" % (s / 60) if s < 5400 else "%d h" % (s / 3600) if s < 129600
            else "%d d" % (s / 86400))
    return "in " + text if future else text + " ago"


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
