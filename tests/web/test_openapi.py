"""/api/openapi.json against the app: a valid OpenAPI 3.1 document naming exactly the /api routes with their
roles, and real answers (successes and errors, a CPython LwM2M client on real UDP behind them) that match the
schemas it gives."""

import re

import jsonschema
from openapi_spec_validator import validate

from tinymlaas.lwm2m.reference_client import ReferenceClient


def template(path):
    """aiohttp's '/x/{id:\\d+}' -> OpenAPI's '/x/{id}'."""
    out, depth, i = [], 0, 0
    while i < len(path):
        c = path[i]
        if c == "{":
            depth += 1
            if depth == 1:
                name = re.match(r"\{(\w+)", path[i:]).group(1)
                out.append("{%s}" % name)
        elif c == "}":
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    return "".join(out)


def test_document_names_every_api_route_with_its_role(service_auth):
    w = service_auth
    status, doc, _ = w.client(w.token("viewer")).get("/api/openapi.json")
    assert status == 200
    validate(doc)                                           # OpenAPI 3.1 (and its JSON Schemas) well-formed
    described = {(m.upper(), p): op["x-required-role"] for p, ops in doc["paths"].items() for m, op in ops.items()}
    routed = {(i.method, template(i.path)): i.role for i in w.api.routes.values() if i.path.startswith("/api/")}
    assert set(described) - set(routed) == set(), "described but not routed"
    assert set(routed) - set(described) == set(), "routed but not described"
    assert described == routed                              # the same role for each
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert {p["name"] for p in op.get("parameters", [])} == set(re.findall(r"\{(\w+)\}", path))


def checker(doc):
    def check(method, path, status, body):
        op = doc["paths"][path][method.lower()]
        answer = op["responses"][str(status)]
        if "$ref" in answer:
            answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
        schema = answer["content"]["application/json"]["schema"]
        jsonschema.validate(body, dict(schema, components=doc["components"]),
                            cls=jsonschema.Draft202012Validator)
    return check


def test_real_answers_match_the_schemas(service_auth):
    w = service_auth
    device = w.call(ReferenceClient("dm1").start(w.coap_uri))
    w.call(device.register())
    admin, viewer = w.client(w.token("admin", "a")), w.client(w.token("viewer", "v"))
    check = checker(admin.get("/api/openapi.json")[1])
    try:
        calls = [
            (admin, "GET", "/api/health", "/api/health", None),
            (admin, "GET", "/api/devices", "/api/devices", None),
            (admin, "GET", "/api/devices/{endpoint}", "/api/devices/dm1", None),
            (admin, "GET", "/api/devices/{endpoint}", "/api/devices/ghost", None),
            (admin, "GET", "/api/devices/{endpoint}/lwm2m/{path}", "/api/devices/dm1/lwm2m/3/0?raw=1", None),
            (admin, "GET", "/api/devices/{endpoint}/lwm2m/{path}", "/api/devices/dm1/lwm2m/3/0/77", None),
            (admin, "PUT", "/api/devices/{endpoint}/lwm2m/{path}", "/api/devices/dm1/lwm2m/3/0/14", {"value": "+01:00"}),
            (admin, "POST", "/api/devices/{endpoint}/lwm2m/{path}", "/api/devices/dm1/lwm2m/3/0/4", None),
            (admin, "GET", "/api/devices/{endpoint}/lwm2m/{path}/discover", "/api/devices/dm1/lwm2m/5/0/discover", None),
            (admin, "PUT", "/api/devices/{endpoint}/lwm2m/{path}/attributes", "/api/devices/dm1/lwm2m/3/0/9/attributes",
             {"pmin": 1}),
            (admin, "POST", "/api/devices/{endpoint}/lwm2m/{path}/observe", "/api/devices/dm1/lwm2m/3/0/77/observe", {}),
            (admin, "POST", "/api/devices/{endpoint}/lwm2m/{path}/observe", "/api/devices/dm1/lwm2m/3/0/0/observe", {}),
            (admin, "GET", "/api/devices/{endpoint}/observations", "/api/devices/dm1/observations", None),
            (admin, "DELETE", "/api/devices/{endpoint}/lwm2m/{path}/observe", "/api/devices/dm1/lwm2m/3/0/0/observe", None),
            (admin, "GET", "/api/session", "/api/session", None),
            (admin, "POST", "/api/tokens", "/api/tokens", {"role": "operator", "name": "x"}),
            (admin, "GET", "/api/tokens", "/api/tokens", None),
            (admin, "GET", "/api/audit", "/api/audit", None),
            (admin, "GET", "/api/models", "/api/models", None),
            (admin, "GET", "/api/models/{name}", "/api/models/none", None),
            (admin, "GET", "/api/deployments", "/api/deployments", None),
            (admin, "GET", "/api/deployments/{id}", "/api/deployments/9", None),
            (admin, "POST", "/api/deployments", "/api/deployments", {"model": "none", "devices": ["dm1"]}),
            (viewer, "POST", "/api/deployments", "/api/deployments", {"model": "none", "devices": ["dm1"]}),
            (viewer, "GET", "/api/tokens", "/api/tokens", None),
            (w.client(), "GET", "/api/devices", "/api/devices", None),
        ]
        seen = set()
        for client, method, path, url, body in calls:
            status, answer, _ = client.request(method, url, body)
            check(method, path, status, answer)
            seen.add(status)
        assert seen == {200, 201, 400, 401, 403, 404, 502}
        revoked = admin.delete("/api/tokens/" + admin.get("/api/tokens")[1][-1]["id"])
        check("DELETE", "/api/tokens/{id}", *revoked[:2])
    finally:
        w.call(device.stop())
