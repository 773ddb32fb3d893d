"""`tinymlaas deployments [ID]`: deployments, their per-device state and history."""

import time

from ..cli import UserError
from ._http import add_api_argument, call
from ._output import print_json, print_table


def register(sub):
    p = sub.add_parser("deployments", help="list deployments, or show one with its history")
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--json", action="store_true")
    add_api_argument(p)
    p.set_defaults(func=cmd_deployments)


def cmd_deployments(args):
    if args.id is None:
        status, deps = call(args.api, "GET", "/api/deployments")
        if args.json:
            print_json(deps)
            return 0
        rows = [{"id": d["id"], "state": d["state"], "model_id": d["model_id"], "devices": len(d["devices"]),
                 "active": sum(x["state"] == "active" for x in d["devices"]),
                 "failed": sum(x["state"] == "failed" for x in d["devices"]), "reason": d["reason"]} for d in deps]
        print_table(rows, [("id", "ID"), ("model_id", "MODEL"), ("state", "STATE"), ("devices", "DEVICES"),
                           ("active", "ACTIVE"), ("failed", "FAILED"), ("reason", "REASON")])
        return 0
    status, dep = call(args.api, "GET", "/api/deployments/%d" % args.id)
    if status != 200:
        raise UserError(dep.get("error", "service answered %d" % status))
    if args.json:
        print_json(dep)
        return 0
    print("deployment %d: %s %s" % (dep["id"], dep["state"], dep["reason"]))
    print_table(dep["devices"], [("endpoint", "DEVICE"), ("state", "STATE"), ("variant_id", "VARIANT"),
                                 ("reason", "REASON")])
    print("\nhistory:")
    rows = [dict(h, at=time.strftime("%H:%M:%S", time.localtime(h["at"]))) for h in dep["history"]]
    print_table(rows, [("at", "TIME"), ("endpoint", "DEVICE"), ("state", "STATE"), ("message", "MESSAGE")])
    return 0
