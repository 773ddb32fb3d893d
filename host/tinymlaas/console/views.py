"""What the console's pages show, computed from the Service: fleet rows with a state at a glance, one device's
details and object tree, the models' fit matrix. Plain data; the templates only lay it out."""

import time

from ..lwm2m import paths as P
from ..service.core import normalize_capabilities
from ..service.selection import choose
from ..service.telemetry import METRICS

# A device's state at a glance, in the order the fleet's filter lists them, with its badge's style.
STATES = {"online": "ok", "updating": "busy", "update failed": "bad", "model failed": "bad", "asleep": "idle",
          "offline": "idle"}
RUNNING_STEPS = ("queued", "delivering", "verifying")


def _tags(db, endpoint=None):
    """{endpoint: [tag, ...]} of every device, or of one."""
    where, params = ("WHERE endpoint=? ", (endpoint,)) if endpoint is not None else ("", ())
    tags = {}
    for r in db.query("SELECT endpoint, tag FROM device_tags %sORDER BY tag" % where, params):
        tags.setdefault(r["endpoint"], []).append(r["tag"])
    return tags


def _deployment_rows(db, endpoint=None):
    """{endpoint: its latest deployment_devices row, with the deployment's state}, of every device or of one."""
    where, params = ("WHERE dd.endpoint=? ", (endpoint,)) if endpoint is not None else ("", ())
    latest = {}
    for r in db.query("SELECT dd.endpoint, dd.state, dd.reason, dd.deployment_id, dd.updated_at, d.state AS dep_state "
                      "FROM deployment_devices dd JOIN deployments d ON d.id = dd.deployment_id %s"
                      "ORDER BY dd.updated_at, dd.deployment_id" % where, params):
        latest[r["endpoint"]] = r
    return latest


# The endpoints in device_events with their last event's time, one index probe per endpoint (a loose index scan
# on device_events(endpoint, at)): a GROUP BY would read every event, and a device writes one per Update, so
# the fleet page would slow down with the fleet's age (1,000 devices at a 60 s lifetime: ~2 M events a day).
LAST_EVENTS = """WITH RECURSIVE seen(endpoint) AS (
    SELECT MIN(endpoint) FROM device_events
    UNION ALL
    SELECT (SELECT MIN(e.endpoint) FROM device_events e WHERE e.endpoint > seen.endpoint) FROM seen
    WHERE seen.endpoint IS NOT NULL)
SELECT endpoint, (SELECT MAX(e.at) FROM device_events e WHERE e.endpoint = seen.endpoint) AS at
FROM seen WHERE endpoint IS NOT NULL ORDER BY endpoint"""


def device_state(reg, caps, last_deployment, awake_time, now):
    """(state, why) of a registered device: see STATES."""
    model_state = str(caps.get("Model State") or "")
    if model_state.startswith(("load-failed", "out-of-ram")):
        return "model failed", model_state
    dep = last_deployment
    if dep and dep["dep_state"] == "running" and dep["state"] in RUNNING_STEPS:
        return "updating", "deployment %d: %s" % (dep["deployment_id"], dep["state"])
    if dep and dep["state"] == "failed":
        return "update failed", "deployment %d: %s" % (dep["deployment_id"], dep["reason"])
    if "Q" in (reg.binding or "") and now > reg.updated_at + awake_time:
        return "asleep", "queue mode: listens after its next Update"
    return "online", ""


def fleet(svc, now=None):
    """Every device the service knows: the registered ones, then those seen before (deregistered or expired)."""
    now = time.time() if now is None else now
    known = {"tags": _tags(svc.db), "info": svc.telemetry.device_info()}
    deployments = _deployment_rows(svc.db)
    rows = []
    for reg in svc.server.devices():
        caps = reg.capabilities or {}
        state, why = device_state(reg, caps, deployments.get(reg.endpoint), svc.server.awake_time, now)
        rows.append(_row(svc, reg.endpoint, caps, state, why, reg.updated_at, known, reg))
    registered = {r["endpoint"] for r in rows}
    for ev in svc.db.query(LAST_EVENTS):
        if ev["endpoint"] not in registered:
            rows.append(_row(svc, ev["endpoint"], {}, "offline", "deregistered or registration expired", ev["at"], known))
    return rows


def device(svc, endpoint, now=None):
    """The fleet row of one device (None if the service has never seen it), from its own rows only, so the
    device page does not grow with the fleet (one exception: deployment_devices has no index by endpoint, so
    its latest deployment is still found by a scan of every deployment's devices)."""
    now = time.time() if now is None else now
    known = {"tags": _tags(svc.db, endpoint), "info": svc.telemetry.device_info(endpoint)}
    reg = svc.server.find(endpoint)
    if reg is not None:
        caps = reg.capabilities or {}
        state, why = device_state(reg, caps, _deployment_rows(svc.db, endpoint).get(endpoint),
                                  svc.server.awake_time, now)
        return _row(svc, endpoint, caps, state, why, reg.updated_at, known, reg)
    last = svc.db.query_one("SELECT MAX(at) AS at FROM device_events WHERE endpoint=?", (endpoint,))
    if last is None or last["at"] is None:
        return None
    return _row(svc, endpoint, {}, "offline", "deregistered or registration expired", last["at"], known)


def matches(row, words="", state="", tag="", model=""):
    """The fleet page's filter, on the server for a fleet of more than one page (static/console.js applies the
    same one to the rows shown): every word of the search in the row's text, and the state, tag and model."""
    return (all(w in row["search"] for w in words.lower().split()) and (not state or row["state"] == state)
            and (not tag or tag in row["tags"]) and (not model or (row["model"] or {}).get("name") == model))


def _row(svc, endpoint, caps, state, why, last_seen, known, reg=None):
    model = None
    if caps.get("Model Name") or caps.get("Model SHA256"):
        model = {"name": caps.get("Model Name"), "version": caps.get("Model Version"),
                 "sha256": caps.get("Model SHA256"), "state": caps.get("Model State"),
                 "arena": caps.get("Arena Bytes"), "blob": caps.get("Blob Bytes")}
    runtime = " ".join(str(caps[k]) for k in ("Runtime Name", "Runtime Version") if caps.get(k))
    info = known["info"].get(endpoint, {})
    board = info.get("Model Number") or caps.get("Machine") or ""
    board_detail = " · ".join(str(v) for v in (info.get("Device Type"), info.get("Hardware Version")) if v)
    tags = known["tags"].get(endpoint, [])
    address = reg.address if reg is not None else ""
    search = " ".join(str(v) for v in (endpoint, board, board_detail, caps.get("Machine") or "", runtime,
                                       (model or {}).get("name") or "", " ".join(tags), address)).lower()
    return {
        "endpoint": endpoint, "state": state, "state_class": STATES[state], "why": why,
        # the board as the device names itself (/3/0), else what its runtime reports
        "board": board, "board_detail": board_detail, "search": search,
        "manufacturer": info.get("Manufacturer") or "", "info": info,
        "machine": caps.get("Machine") or "", "platform": caps.get("Platform") or "",
        "runtime": runtime, "flavour": caps.get("Kernel Flavour") or "",
        "coprocessor": caps.get("Kernel Flavour") == "c-coprocessor",
        "model": model, "heap_free": caps.get("Free Heap"), "heap_total": caps.get("Heap Total"),
        "largest_block": caps.get("Largest Free Block"), "flash_free": caps.get("Flash Free"),
        "last_seen": last_seen, "tags": tags,
        "security": "OSCORE" if reg is not None and svc.server.oscore.for_endpoint(endpoint) else
                    ("NoSec" if reg is not None else ""),
        "address": address, "registered": reg is not None,
    }


def object_tree(model, reg):
    """The device's objects and instances (from its registration's links) with the resources the object model
    defines for each: [{"path", "name", "instances": [{"path", "resources": [{path, id, name, ops, type}]}]}]."""
    tree = {}
    for link in reg.objects:
        try:
            path = P.parse(link)
        except ValueError:
            continue
        obj = tree.setdefault(path[0], {"id": path[0], "path": "/%d" % path[0], "instances": []})
        if len(path) > 1:
            obj["instances"].append(path[1])
    out = []
    for oid in sorted(tree):
        obj = tree[oid]
        definition = model.object(oid)
        obj["name"] = definition.name if definition else "object %d" % oid
        instances = sorted(set(obj["instances"])) or ([0] if definition and not definition.multiple else [])
        obj["instances"] = [{"path": "/%d/%d" % (oid, i), "resources": [
            {"path": "/%d/%d/%d" % (oid, i, r.id), "id": r.id, "name": r.name, "ops": r.operations,
             "type": r.type, "multiple": r.multiple}
            for r in sorted(definition.resources.values(), key=lambda r: r.id)] if definition else []}
            for i in instances]
        out.append(obj)
    return out


def device_charts(svc, endpoint, since=None):
    """[(metric, title, unit, [(t, value)])] for the device page's plots; latency in ms."""
    out = []
    for metric, (_, title, unit) in METRICS.items():
        points = svc.telemetry.series(endpoint, metric, since)
        if metric == "latency_us":
            points, unit = [(t, v / 1000.0) for t, v in points], "ms"
        out.append((metric, title, unit, points))
    return out


def fit_matrix(svc, variants):
    """Columns: board profiles, then registered devices that reported capabilities; a cell per variant and column:
    {"fits", "chosen", "reasons"} (chosen: the variant selection would pick there)."""
    from ..commands.explain import BOARDS, profile_capabilities

    columns = [("profile", name, profile_capabilities(name)) for name in BOARDS]
    for reg in svc.server.devices():
        if reg.capabilities:
            columns.append(("device", reg.endpoint, normalize_capabilities(reg.capabilities)))
    cells = {}
    for kind, name, caps in columns:
        _, verdicts = choose(variants, caps)
        for v in verdicts:
            cells[(v.variant["id"], kind, name)] = {"fits": v.fits, "chosen": v.chosen, "reasons": v.reasons}
    return [{"kind": kind, "name": name} for kind, name, _ in columns], cells
