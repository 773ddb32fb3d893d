"""The service's routes, beside the device routes of web/devices.py:

    GET  /api/models                      models and their variant counts
    GET  /api/models/{name}               one model (newest version, or ?version=V) with its variants
    GET  /api/explain/{model}/{endpoint}  every variant of a model for the device's figures read now: chosen, or
                                          why rejected (?latency_budget=MS)
    POST /api/devices/{endpoint}/infer    {"input": numbers (one input or a batch), "raw": false}: run them on the
                                          device's model (service/inference.py)
    POST /api/deployments                 {"model": name, "devices": [endpoints] | "tag": tag, "canary": [endpoints],
                                          "stages": [1, 10, 50, 100], "concurrency": N, "max_failed": percent,
                                          "soak": seconds, "head": {"kind": "softmax"|"ncm", "lr": x,
                                          "save_every": n}}: a staged rollout (service/deployments.py)
    GET  /api/deployments                 all deployments with per-device state
    GET  /api/deployments/{id}            one deployment, its stages with their gates, per-device state, history
"""

from ..cli import UserError
from ..lwm2m.server import LwM2MError, NotRegistered
from ..registry import RegistryError
from ..web.app import HttpError, json_body, reply
from .deployments import DeploymentError
from .inference import InferenceError


ROLLOUT_FIELDS = {"stages": "a list of increasing percentages, e.g. [1, 10, 50, 100]",
                  "concurrency": "a whole number of installs at once", "max_failed": "a percentage",
                  "soak": "a number of seconds"}


def _variant_view(v):
    return {k: v[k] for k in ("id", "backend", "runtime", "options", "artifact_sha256", "artifact_kind",
                              "flash_bytes", "ram_bytes", "macs", "ops", "features", "accuracy")}


def service_routes(api, svc):
    async def models(request):
        return reply([dict(m, variants=len(svc.registry.variants(m))) for m in svc.registry.models()])

    async def model(request):
        try:
            m = svc.registry.model(request.match_info["name"], request.query.get("version"))
        except RegistryError as e:
            raise HttpError(404, str(e)) from None
        return reply(dict(m, variants=[_variant_view(v) for v in svc.registry.variants(m)]))

    async def explain(request):
        from ..commands.explain import explanation

        name, endpoint = request.match_info["model"], request.match_info["endpoint"]
        try:
            budget = request.query.get("latency_budget")
            budget = float(budget) if budget is not None else None
        except ValueError:
            raise HttpError(400, "latency_budget must be a number of milliseconds") from None
        try:
            m, caps, best, verdicts = await svc.explain_device(name, endpoint, budget)
        except (RegistryError, NotRegistered) as e:
            raise HttpError(404, str(e)) from None
        except UserError as e:
            raise HttpError(409, str(e)) from None
        return reply(explanation(m, endpoint, caps, best, verdicts))

    async def infer(request):
        req = await json_body(request)
        if "input" not in req:
            raise HttpError(400, "'input' (numbers: one input of the model or a batch of them) is required")
        try:
            return reply(await svc.inference.run(request.match_info["endpoint"], req["input"],
                                                 raw=bool(req.get("raw"))))
        except NotRegistered as e:
            raise HttpError(404, str(e)) from None
        except UserError as e:
            raise HttpError(400, str(e)) from None
        except (ValueError, TypeError) as e:   # numpy: values that are not numbers, or rows of unequal length
            raise HttpError(400, "'input' must be numbers, one input or a batch of them: %s" % e) from None
        except InferenceError as e:
            raise HttpError(409, str(e)) from None
        except LwM2MError as e:
            raise HttpError(502, str(e)) from None

    async def create(request):
        req = await json_body(request)
        if not isinstance(req.get("model"), str):
            raise HttpError(400, "'model' (a model name) is required")
        devices = req.get("devices") or []
        if req.get("tag"):
            devices = svc.devices_with_tag(req["tag"])
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise HttpError(400, "'devices' must be a list of endpoint names")
        canary = req.get("canary") or []
        if not isinstance(canary, list) or not all(isinstance(d, str) for d in canary):
            raise HttpError(400, "'canary' must be a list of endpoint names")
        rollout = {}
        for key, kind in (("stages", list), ("concurrency", int), ("max_failed", (int, float)), ("soak", (int, float))):
            if req.get(key) is not None:
                if not isinstance(req[key], kind) or isinstance(req[key], bool):
                    raise HttpError(400, "'%s' must be %s" % (key, ROLLOUT_FIELDS[key]))
                rollout[key] = req[key]
        if req.get("report_results") is not None:
            if not isinstance(req["report_results"], bool):
                raise HttpError(400, "'report_results' must be true or false")
            rollout["report_results"] = req["report_results"]
        if req.get("head") is not None:      # a trainable head on each device (heads.py; checked there)
            rollout["head"] = req["head"]
        try:
            dep_id = svc.create_deployment(req["model"], devices, canary, **rollout)
        except UserError as e:
            raise HttpError(400, str(e)) from None
        svc.start_deployment(dep_id)
        return reply(svc.deployment_view(dep_id), 201)

    async def listing(request):
        return reply(svc.deployments.list())

    async def one(request):
        try:
            dep = svc.deployment_view(int(request.match_info["id"]))
        except DeploymentError as e:
            raise HttpError(404, str(e)) from None
        dep["history"] = svc.deployments.history(dep["id"])
        return reply(dep)

    api.route("GET", "/api/models", models, "viewer")
    api.route("GET", "/api/models/{name}", model, "viewer")
    api.route("GET", "/api/explain/{model}/{endpoint}", explain, "viewer")
    api.route("POST", "/api/devices/{endpoint}/infer", infer, "operator", stream=True)   # a batch may take long
    api.route("POST", "/api/deployments", create, "operator")
    api.route("GET", "/api/deployments", listing, "viewer")
    api.route("GET", r"/api/deployments/{id:\d+}", one, "viewer")
    return api
