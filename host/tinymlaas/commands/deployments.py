"""`tinymlaas deployments [ID] [--halt | --rollback]`: deployments, their per-device state and history; halt a
running one or roll a finished one back (through the service's API, local or remote: operator token)."""

import time

from ..errors import UserError
from ._http import add_api_argument, call, expect
from ._output import print_json, print_table


def register(sub):
    p = sub.add_parser("deployments", help="list deployments, or show one with its history")
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--json", action="store_true")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--halt", action="store_true",
                     help="stop deployment ID: devices not started are skipped (one installing finishes)")
    act.add_argument("--rollback", action="store_true",
                     help="reinstall the previous model where deployment ID made one active (halt it first)")
    add_api_argument(p)
    p.set_defaults(func=cmd_deployments)


def model_name(dep):
    if dep.get("model") is None:       # the model row is gone
        return "model #%s" % dep["model_id"]
    return "%s %s" % (dep["model"], dep["model_version"])


def cmd_deployments(args):
    if (args.halt or args.rollback) and args.id is None:
        raise UserError("--halt and --rollback need a deployment ID")
    if args.halt or args.rollback:
        action = "halt" if args.halt else "rollback"
        dep = expect(*call(args.api, "POST", "/api/deployments/%d/%s" % (args.id, action), timeout=3600), 200)
        if args.json:
            print_json(dep)
            return 0
        print(("deployment %d of %s: %s %s" % (dep["id"], model_name(dep), dep["state"], dep["reason"])).rstrip())
        for endpoint, what in sorted((dep.get("rolled_back") or {}).items()):
            print("  %s: %s" % (endpoint, what))
        return 0
    if args.id is None:
        deps = expect(*call(args.api, "GET", "/api/deployments"), 200)
        if args.json:
            print_json(deps)
            return 0
        rows = [{"id": d["id"], "state": d["state"], "model": model_name(d), "devices": len(d["devices"]),
                 "active": sum(x["state"] == "active" for x in d["devices"]),
                 "failed": sum(x["state"] == "failed" for x in d["devices"]), "reason": d["reason"]} for d in deps]
        print_table(rows, [("id", "ID"), ("model", "MODEL"), ("state", "STATE"), ("devices", "DEVICES"),
                           ("active", "ACTIVE"), ("failed", "FAILED"), ("reason", "REASON")])
        return 0
    dep = expect(*call(args.api, "GET", "/api/deployments/%d" % args.id), 200)
    if args.json:
        print_json(dep)
        return 0
    print(("deployment %d of %s: %s %s" % (dep["id"], model_name(dep), dep["state"], dep["reason"])).rstrip())
    print_table(dep["devices"], [("endpoint", "DEVICE"), ("state", "STATE"), ("variant_id", "VARIANT"),
                                 ("reason", "REASON")])
    print("\nhistory:")
    rows = [dict(h, at=time.strftime("%H:%M:%S", time.localtime(h["at"]))) for h in dep["history"]]
    print_table(rows, [("at", "TIME"), ("endpoint", "DEVICE"), ("state", "STATE"), ("message", "MESSAGE")])
    return 0
