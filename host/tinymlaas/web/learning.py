"""On-device learning over HTTP (service/learning.py; docs/learning.md "On the service"), for a device whose model
was deployed with a trainable head:

    GET  /api/devices/{ep}/learn            samples learned, accuracy (last 50, null before any), learning on/off
    POST /api/devices/{ep}/learn/sample     {"label": L | [L, ...], "input": numbers (one input or a batch),
                                             "raw": bool}: the device runs each input and learns its label
    POST /api/devices/{ep}/learn/label      {"label": L}: learn L for the device's last inference
    POST /api/devices/{ep}/learn/reset      the initial head again
    PUT  /api/devices/{ep}/learn/learning   {"learning": bool}: resume / freeze (answers still come, no updates)
    GET  /api/devices/{ep}/learn/head       the TMLH head, decoded, with its bytes as hex              viewer
    POST /api/devices/{ep}/learn/register   {"name": N, "version": V}: the head as a new int8 model

GET routes need a viewer, the others an operator. A model without a head answers 409, the device's own refusals
502 with its LwM2M code (4.00: a label beyond the head's classes, 4.04: no head), no answer 504.
"""

from ..errors import UserError
from ..service.inference import InferenceError
from ..service.learning import Learning, head_summary
from .app import HttpError, json_body, reply
from .lwm2m import _device_call

BASE = "/api/devices/{endpoint}/learn"
# (method, path) of the routes that talk to the device: a node group hands them to the device's owner
DEVICE_ROUTES = [("GET", BASE), ("POST", BASE + "/sample"), ("POST", BASE + "/label"), ("POST", BASE + "/reset"),
                 ("PUT", BASE + "/learning"), ("GET", BASE + "/head"), ("POST", BASE + "/register")]


async def _answer(coro):
    """The JSON answer of a learning operation; the service's refusals and the device's as HTTP errors."""
    async def refusals():
        try:
            return await coro
        except UserError as e:
            raise HttpError(400, str(e)) from None
        except TypeError as e:          # numpy: values that are not numbers
            raise HttpError(400, "'input' must be numbers, one input or a batch of them: %s" % e) from None
        except InferenceError as e:
            raise HttpError(409, str(e)) from None
    return reply(await _device_call(refusals()))    # unknown device 404, no answer 504, refused 502 + code


def learning_routes(api, svc):
    learning = Learning(svc)

    def endpoint(request):
        return request.match_info["endpoint"]

    async def status(request):
        return await _answer(learning.status(endpoint(request)))

    async def sample(request):
        req = await json_body(request)
        if "input" not in req or "label" not in req:
            raise HttpError(400, "'label' (a class index, or one per input) and 'input' (numbers) are required")
        return await _answer(learning.sample(endpoint(request), req["label"], req["input"], raw=bool(req.get("raw"))))

    async def label(request):
        req = await json_body(request)
        if "label" not in req:
            raise HttpError(400, "'label' (a class index) is required")
        return await _answer(learning.label(endpoint(request), req["label"]))

    async def reset(request):
        return await _answer(learning.reset(endpoint(request)))

    async def set_learning(request):
        req = await json_body(request)
        if not isinstance(req.get("learning"), bool):
            raise HttpError(400, "'learning' must be true (resume) or false (freeze)")
        return await _answer(learning.set_learning(endpoint(request), req["learning"]))

    async def head(request):
        async def pulled():
            data, h = await learning.head(endpoint(request))
            return dict(head_summary(data, h), device=endpoint(request))
        return await _answer(pulled())

    async def register(request):
        req = await json_body(request)
        name, version = req.get("name"), req.get("version", "1")
        if not isinstance(name, str) or not name.strip() or not isinstance(version, str) or not version.strip():
            raise HttpError(400, "'name' (the new model's name) is required; 'version' is a string")
        return await _answer(learning.register(endpoint(request), name.strip(), version.strip()))

    api.route("GET", BASE, status, "viewer")
    api.route("POST", BASE + "/sample", sample, "operator", stream=True)      # a batch may take long
    api.route("POST", BASE + "/label", label, "operator")
    api.route("POST", BASE + "/reset", reset, "operator")
    api.route("PUT", BASE + "/learning", set_learning, "operator")
    api.route("GET", BASE + "/head", head, "viewer")
    api.route("POST", BASE + "/register", register, "operator", stream=True)  # compiles the new model
    return api
