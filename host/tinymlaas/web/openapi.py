"""The API's OpenAPI 3.1 description, served at GET /api/openapi.json.

Written by hand, apart from the routes: tests/web/test_openapi.py checks that it names exactly the /api routes the
app has, with their roles (`x-required-role`), that it is a valid OpenAPI 3.1 document, and that real answers
match the schemas it gives. A new /api route needs its line in OPERATIONS.
"""

from .. import __version__
from .app import reply

NUM, INT, STR, BOOL = {"type": "number"}, {"type": "integer"}, {"type": "string"}, {"type": "boolean"}


def nullable(schema):
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required=(), **props):
    return {"type": "object", "properties": props, "required": list(required)}


def ref(name):
    return {"$ref": "#/components/schemas/" + name}


def array(items):
    return {"type": "array", "items": items}


ANY_OBJECT = {"type": "object"}

SCHEMAS = {
    "Error": obj(["error"], error=STR, code={"type": "string", "description": "the device's LwM2M code (502)"}),
    "Device": obj(["endpoint", "address", "registration", "lifetime", "lwm2m_version", "binding", "objects",
                   "security"],
                  endpoint=STR, address=STR, registration=STR, registered_at=NUM, registered_at_utc=STR,
                  updated_at=NUM, lifetime=INT, expires_in=NUM, lwm2m_version=STR, binding=STR, objects=array(STR),
                  capabilities=nullable(ANY_OBJECT), installed_model=nullable(ANY_OBJECT),
                  security={"enum": ["oscore", "nosec"]}),
    "Health": obj(["coap_port", "devices"], coap_port=INT, devices=INT, datagrams=nullable(ANY_OBJECT),
                  database=obj(["kind", "commits"], kind=STR, commits=INT),
                  capability_reads=obj(["reading", "retries"], reading=INT, retries=INT)),
    "Identity": obj(["auth", "role", "via"], auth=BOOL, token_id=nullable(STR), name=STR,
                    role={"enum": ["viewer", "operator", "admin"]}, via={"enum": ["bearer", "session", "local"]},
                    csrf=nullable(STR)),
    "Token": obj(["id", "name", "role", "created_at"], id=STR, name=STR, role={"enum": ["viewer", "operator", "admin"]},
                 created_at=NUM, created_by=STR, last_used_at=nullable(NUM), revoked_at=nullable(NUM)),
    "NewToken": {"allOf": [ref("Token"), obj(["token"], token={"type": "string", "description": "shown once"})]},
    "AuditEntry": obj(["id", "at", "actor", "action", "status", "result"], id=INT, at=NUM, actor=STR,
                      token_id=nullable(STR), role=nullable(STR), action=STR, status=INT, result=STR,
                      remote=nullable(STR)),
    "LwM2MValue": obj(["path", "type", "value"], path=STR, type=STR,
                      value={"description": "string, number or boolean; Opaque as hex, Objlnk as \"3:0\""}),
    "ReadAnswer": obj(["endpoint", "path", "values"], endpoint=STR, path=STR, format=nullable({"type": ["string", "integer"]}),
                      values=array(ref("LwM2MValue")), content_format=nullable(INT),
                      raw={"type": "string", "description": "the device's payload, hex (?raw=1)"}),
    "Operation": obj(["endpoint", "path", "code"], endpoint=STR, path=STR, code=STR, location=nullable(STR)),
    "Links": obj(["endpoint", "path", "links"], endpoint=STR, path=STR,
                 links=array(obj(["uri"], uri=STR, attributes=ANY_OBJECT))),
    "Observation": obj(["endpoint", "path", "active"], endpoint=STR, path=STR, active=BOOL, since=NUM,
                       notifications=INT, values=nullable(array(ref("LwM2MValue"))), at=nullable(NUM)),
    "Model": obj(["name", "version", "kind"], name=STR, version=STR, kind=STR, task=STR,
                 accuracy=nullable(NUM), variants={"type": ["integer", "array"]}),
    "Explanation": obj(["model", "version", "device", "chosen", "variants"], model=STR, version=STR, device=STR,
                       capabilities=ANY_OBJECT, chosen=nullable(INT), variants=array(ANY_OBJECT)),
    "Deployment": obj(["id", "state", "devices"], id=INT, state=STR, model_id=INT, reason=nullable(STR),
                      stages=array(NUM), stage=INT, concurrency=INT, gates=obj([], max_failed=NUM, soak=NUM),
                      stage_list=array(obj(["stage", "label", "devices", "state"], stage=INT, label=STR, devices=INT,
                                           state=STR, gate=STR, counts=ANY_OBJECT, started_at=nullable(NUM),
                                           finished_at=nullable(NUM))),
                      devices=array(obj(["endpoint", "state"], endpoint=STR, state=STR, stage=INT, failure=STR)),
                      history=array(ANY_OBJECT), report_results=BOOL),
    "Report": obj(["endpoint", "at", "kind", "values"], endpoint=STR, at=NUM, at_utc=STR,
                  kind={"enum": ["alarm", "report"]}, values={"type": "object", "description": "{path: value}"},
                  model=STR, score=NUM, threshold=NUM, alarm_count=INT, inference_count=INT),
    "CompileJob": obj(["id", "name", "version", "state", "attempts"], id=INT, name=STR, version=STR,
                      state={"enum": ["queued", "running", "done", "failed"]}, node=nullable(STR), attempts=INT,
                      model_id=nullable(INT), error=nullable(STR), created_at=NUM, started_at=nullable(NUM),
                      finished_at=nullable(NUM), variants=INT, errors=ANY_OBJECT, upload=STR),
    # request bodies
    "SignIn": obj(["token"], token=STR),
    "TokenRequest": obj(["role"], role={"enum": ["viewer", "operator", "admin"]}, name=STR),
    "DeploymentRequest": obj(["model"], model=STR, devices=array(STR), tag=STR, canary=array(STR), stages=array(NUM),
                             concurrency=INT, max_failed=NUM, soak=NUM, report_results=BOOL,
                             head=obj(["kind"], kind={"enum": ["softmax", "ncm"]}, lr=NUM, save_every=INT)),
    "Write": {"type": "object", "description": "'value' for the path itself, or 'values' {path: value} under it",
              "properties": {"value": {}, "values": ANY_OBJECT, "format": STR}},
    "Post": {"type": "object", "description": "Create (/o) or partial Write (/o/i): 'values'; Execute (/o/i/r): "
             "'args'", "properties": {"values": ANY_OBJECT, "format": STR, "args": STR}},
    "Attributes": {"type": "object", "properties": {k: {} for k in
                                                    ("pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge", "con",
                                                     "hqmax")}},
    "Format": obj([], format=STR),
    "Inference": obj(["input"], input={"description": "numbers: one input or a batch"}, raw=BOOL),
    "Tags": obj(["devices"], devices=array(STR), add=array(STR), remove=array(STR)),
    "LearnSample": obj(["label", "input"], label={"type": ["integer", "array"]},
                       input={"description": "numbers: one input or a batch"}, raw=BOOL),
    "LearnLabel": obj(["label"], label=INT),
    "Learning": obj(["learning"], learning=BOOL),
    "LearnRegister": obj(["name"], name=STR, version=STR),
    "LearnStatus": obj(["device", "model", "samples", "accuracy", "learning"], device=STR, model=STR, version=STR,
                       variant=INT, head=nullable(ANY_OBJECT), samples=INT, accuracy=nullable(NUM), learning=BOOL,
                       learned=INT),
    "Head": obj(["kind", "classes", "dim", "samples", "hex"], device=STR, bytes=INT, kind={"enum": ["softmax", "ncm"]},
                classes=INT, dim=INT, samples=INT, lr=NUM, embedding_scale=NUM, embedding_zero_point=INT,
                hex={"type": "string", "description": "the TMLH head (docs/learning.md)"}),
    "TelemetryResult": obj(["model", "scores"], model=STR, scores=array(NUM), label=STR, latency_us=NUM),
}

JSON_ANY = ANY_OBJECT
# (method, path, role, summary, request schema or None, (status, response schema) of success)
OPERATIONS = [
    ("GET", "/api/openapi.json", "viewer", "this document", None, (200, JSON_ANY)),
    ("POST", "/api/session", None, "sign in with a token: a session cookie and its CSRF token", "SignIn",
     (200, ref("Identity"))),
    ("GET", "/api/session", "viewer", "who is calling", None, (200, ref("Identity"))),
    ("DELETE", "/api/session", "viewer", "sign out: the session is closed", None, (200, ANY_OBJECT)),
    ("GET", "/api/tokens", "admin", "API tokens (never their secrets)", None, (200, array(ref("Token")))),
    ("POST", "/api/tokens", "admin", "a new token, shown this once", "TokenRequest", (201, ref("NewToken"))),
    ("DELETE", "/api/tokens/{id}", "admin", "revoke a token and its sessions", None, (200, ref("Token"))),
    ("GET", "/api/audit", "admin", "the audit log, newest first (?limit, ?before)", None,
     (200, array(ref("AuditEntry")))),
    ("GET", "/api/health", "viewer", "CoAP port, device count, datagram, database commit and capability read counters", None, (200, ref("Health"))),
    ("GET", "/api/devices", "viewer", "registered devices, by endpoint (?after=ENDPOINT&limit=N: one page)", None,
     (200, array(ref("Device")))),
    ("GET", "/api/devices/{endpoint}", "viewer", "one device", None, (200, ref("Device"))),
    ("POST", "/api/devices/{endpoint}/refresh", "operator", "read the TinyML object again", None,
     (200, ref("Device"))),
    ("GET", "/api/devices/{endpoint}/reports", "viewer", "what the device sent with LwM2M Send (/dp): anomaly "
     "alarms, newest first (?kind=alarm|report, ?limit=N)", None, (200, array(ref("Report")))),
    ("GET", "/api/devices/{endpoint}/lwm2m/{path}", "viewer", "LwM2M Read (?format, ?raw=1)", None,
     (200, ref("ReadAnswer"))),
    ("PUT", "/api/devices/{endpoint}/lwm2m/{path}", "operator", "LwM2M Write (replace)", "Write",
     (200, ref("Operation"))),
    ("POST", "/api/devices/{endpoint}/lwm2m/{path}", "operator",
     "LwM2M Create (/o), partial Write (/o/i) or Execute (/o/i/r)", "Post", (200, ref("Operation"))),
    ("DELETE", "/api/devices/{endpoint}/lwm2m/{path}", "operator", "LwM2M Delete", None, (200, ref("Operation"))),
    ("GET", "/api/devices/{endpoint}/lwm2m/{path}/discover", "viewer", "LwM2M Discover", None, (200, ref("Links"))),
    ("PUT", "/api/devices/{endpoint}/lwm2m/{path}/attributes", "operator", "LwM2M Write-Attributes", "Attributes",
     (200, ref("Operation"))),
    ("POST", "/api/devices/{endpoint}/lwm2m/{path}/observe", "operator",
     "LwM2M Observe; notifications on /api/events", "Format", (201, ref("Observation"))),
    ("DELETE", "/api/devices/{endpoint}/lwm2m/{path}/observe", "operator", "cancel the observation", None,
     (200, ref("Observation"))),
    ("GET", "/api/devices/{endpoint}/observations", "viewer", "observations started here", None,
     (200, array(ref("Observation")))),
    ("GET", "/api/events", "viewer", "Server-Sent Events: registered/updated/deregistered/notification "
     "(?endpoint=)", None, (200, "text/event-stream")),
    ("POST", "/api/devices/{endpoint}/infer", "operator", "run inputs on the device's model", "Inference",
     (200, ANY_OBJECT)),
    ("GET", "/api/devices/{endpoint}/learn", "viewer", "the trainable head's samples, accuracy, learning on/off",
     None, (200, ref("LearnStatus"))),
    ("POST", "/api/devices/{endpoint}/learn/sample", "operator", "run input(s) on the device and learn their label",
     "LearnSample", (200, ref("LearnStatus"))),
    ("POST", "/api/devices/{endpoint}/learn/label", "operator", "learn a label for the device's last inference",
     "LearnLabel", (200, ref("LearnStatus"))),
    ("POST", "/api/devices/{endpoint}/learn/reset", "operator", "the initial head again", None,
     (200, ref("LearnStatus"))),
    ("PUT", "/api/devices/{endpoint}/learn/learning", "operator", "freeze (false) or resume (true) learning",
     "Learning", (200, ref("LearnStatus"))),
    ("GET", "/api/devices/{endpoint}/learn/head", "viewer", "the device's learned head (TMLH)", None,
     (200, ref("Head"))),
    ("POST", "/api/devices/{endpoint}/learn/register", "operator", "the learned head as a new int8 model",
     "LearnRegister", (200, ANY_OBJECT)),
    ("GET", "/api/devices/{endpoint}/telemetry", "viewer", "the device's telemetry samples and kept results", None,
     (200, ANY_OBJECT)),
    ("GET", "/api/devices/{endpoint}/telemetry.csv", "viewer", "the same as CSV (?kind=samples|results)", None,
     (200, "text/csv")),
    ("GET", "/api/telemetry.csv", "viewer", "every device's telemetry as CSV", None, (200, "text/csv")),
    ("POST", "/api/devices/{endpoint}/telemetry/results", "operator", "keep an inference result", "TelemetryResult",
     (201, ANY_OBJECT)),
    ("POST", "/api/tags", "operator", "add or remove device tags", "Tags", (200, ANY_OBJECT)),
    ("GET", "/api/models", "viewer", "models and their variant counts", None, (200, array(ref("Model")))),
    ("POST", "/api/models", "admin", "upload a model file and its datasets (multipart) and register it", "upload",
     (201, ANY_OBJECT)),
    ("GET", "/api/models/{name}", "viewer", "one model with its variants", None, (200, ref("Model"))),
    ("GET", "/api/compile-jobs", "viewer", "compile jobs of uploaded models, newest first", None,
     (200, array(ref("CompileJob")))),
    ("GET", "/api/compile-jobs/{id}", "viewer", "one compile job (POST /api/models?wait=0 answers 202 with it)", None,
     (200, ref("CompileJob"))),
    ("GET", "/api/explain/{model}/{endpoint}", "viewer", "why each variant fits the device or not", None,
     (200, ref("Explanation"))),
    ("POST", "/api/deployments", "operator", "deploy a model to devices: a staged rollout, canaries first", "DeploymentRequest",
     (201, ref("Deployment"))),
    ("GET", "/api/deployments", "viewer", "deployments", None, (200, array(ref("Deployment")))),
    ("GET", "/api/deployments/{id}", "viewer", "one deployment with its history", None, (200, ref("Deployment"))),
    ("GET", "/api/deployments/{id}/events", "viewer", "Server-Sent Events: the deployment as it changes", None,
     (200, "text/event-stream")),
    ("POST", "/api/deployments/{id}/halt", "operator", "stop a running deployment", None, (200, ref("Deployment"))),
    ("POST", "/api/deployments/{id}/rollback", "operator", "put back each device's previous model", None,
     (200, ref("Deployment"))),
]

ERRORS = {"400": "bad request", "401": "no or a bad token", "403": "the role does not allow it, or cross-site",
          "404": "no such thing", "408": "the upload was not received in time",
          "409": "not in this state", "413": "body too large", "429": "too many bad tokens from this address",
          "502": "the device refused", "504": "the device did not answer"}

UPLOAD = {"multipart/form-data": {"schema": obj(
    ["model", "name"], model={"type": "string", "contentMediaType": "application/octet-stream"}, name=STR,
    version=STR, task=STR, labels=STR, accuracy=STR, no_compile=STR,
    representative={"type": "string", "contentMediaType": "application/octet-stream"},
    train={"type": "string", "contentMediaType": "application/octet-stream"},
    eval={"type": "string", "contentMediaType": "application/octet-stream"})}}


def _operation(method, path, role, summary, body, success):
    status, schema = success
    content = {schema: {"schema": STR}} if isinstance(schema, str) else {"application/json": {"schema": schema}}
    op = {"summary": summary, "operationId": "%s %s" % (method.lower(), path), "x-required-role": role,
          "responses": dict({str(status): {"description": "success", "content": content}},
                            **{code: {"$ref": "#/components/responses/E%s" % code} for code in ERRORS})}
    params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True,
                             "schema": {"type": "string", "pattern": r"^\d+(/\d+){0,3}$"} if p == "path" else STR}
                            for p in params]
    if body == "upload":
        op["requestBody"] = {"required": True, "content": UPLOAD}
    elif body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    if role is None:
        op["security"] = []
    return op


def document():
    paths = {}
    for method, path, role, summary, body, success in OPERATIONS:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, role, summary, body, success)
    return {
        "openapi": "3.1.0",
        "info": {"title": "tinymlaas service API", "version": __version__,
                 "description": "Devices over LwM2M, models, deployments. Roles: viewer reads; operator deploys, "
                 "runs inferences and manages devices; admin manages models and tokens. State-changing requests "
                 "with the session cookie need the X-CSRF-Token header (the session's CSRF token)."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {"E" + code: {"description": text,
                                       "content": {"application/json": {"schema": ref("Error")}}}
                          for code, text in ERRORS.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "tmla_<id>_<secret> (tinymlaas tokens new)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "tinymlaas_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }


def openapi_routes(api):
    doc = document()

    async def serve(request):
        return reply(doc)

    api.route("GET", "/api/openapi.json", serve, "viewer")
    return api
