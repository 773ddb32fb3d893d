"""The service's HTTP API on top of the LwM2M server's (lwm2m/http_api.py):

    GET  /api/models                      models and their variant counts
    GET  /api/models/<name>               one model (newest version) with its variants
    GET  /api/explain/<model>/<endpoint>  every variant of a model for a device: chosen, or why rejected
    POST /api/deployments                 {"model": name, "devices": [endpoints] | "tag": tag, "canary": [endpoints]}
    GET  /api/deployments                 all deployments with per-device state
    GET  /api/deployments/<id>            one deployment, its per-device state and its history
"""

import json

from ..cli import UserError
from ..lwm2m.server import NotRegistered
from ..registry import RegistryError
from .deployments import DeploymentError


def _variant_view(v):
    return {k: v[k] for k in ("id", "backend", "runtime", "options", "artifact_sha256", "artifact_kind",
                              "flash_bytes", "ram_bytes", "macs", "ops", "features", "accuracy")}


def service_routes(api, svc):
    async def models(match, body):
        return 200, [dict(m, variants=len(svc.registry.variants(m))) for m in svc.registry.models()]

    async def model(match, body):
        try:
            m = svc.registry.model(match.group(1))
        except RegistryError as e:
            return 404, {"error": str(e)}
        return 200, dict(m, variants=[_variant_view(v) for v in svc.registry.variants(m)])

    async def explain(match, body):
        from ..commands.explain import explain_rows

        try:
            m, caps, best, verdicts = svc.explain(match.group(1), match.group(2))
        except (RegistryError, NotRegistered) as e:
            return 404, {"error": str(e)}
        except UserError as e:
            return 409, {"error": str(e)}
        return 200, {"model": m["name"], "version": m["version"], "device": match.group(2), "capabilities": caps,
                     "chosen": best.variant["id"] if best else None, "variants": explain_rows(verdicts)}

    async def create(match, body):
        try:
            req = json.loads(body or b"{}")
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return 400, {"error": "body must be a JSON object: %s" % e}
        if not isinstance(req.get("model"), str):
            return 400, {"error": "'model' (a model name) is required"}
        devices = req.get("devices") or []
        if req.get("tag"):
            devices = svc.devices_with_tag(req["tag"])
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            return 400, {"error": "'devices' must be a list of endpoint names"}
        canary = req.get("canary") or []
        try:
            dep_id = svc.create_deployment(req["model"], devices, canary)
        except UserError as e:
            return 400, {"error": str(e)}
        svc.start_deployment(dep_id)
        return 201, svc.deployment_view(dep_id)

    async def listing(match, body):
        return 200, svc.deployments.list()

    async def one(match, body):
        try:
            dep = svc.deployment_view(int(match.group(1)))
        except DeploymentError as e:
            return 404, {"error": str(e)}
        dep["history"] = svc.deployments.history(dep["id"])
        return 200, dep

    api.route("GET", r"/api/models/?", models)
    api.route("GET", r"/api/models/([^/]+)", model)
    api.route("GET", r"/api/explain/([^/]+)/([^/]+)", explain)
    api.route("POST", r"/api/deployments/?", create)
    api.route("GET", r"/api/deployments/?", listing)
    api.route("GET", r"/api/deployments/(\d+)", one)
    return api
