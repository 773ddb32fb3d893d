"""`tinymlaas deploy`: install a model over the air on devices (by name or tag), canaries first."""

import time

from ..cli import UserError
from ._http import add_api_argument, call
from ._output import Progress, print_json, print_table

FINAL = ("completed", "halted", "failed")


def register(sub):
    p = sub.add_parser("deploy", help="deploy a model to devices over LwM2M (through a running `tinymlaas serve`)")
    p.add_argument("--model", required=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--devices", help="comma-separated endpoint names")
    target.add_argument("--tag", help="every device with this tag")
    p.add_argument("--canary", default="", help="comma-separated endpoints deployed first; a failure halts the rest")
    p.add_argument("--no-wait", action="store_true", help="return once the deployment is created")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the deployment (default 600)")
    p.add_argument("--json", action="store_true")
    add_api_argument(p)
    p.set_defaults(func=cmd_deploy)


def cmd_deploy(args):
    body = {"model": args.model, "canary": [c for c in args.canary.split(",") if c]}
    if args.tag:
        body["tag"] = args.tag
    else:
        body["devices"] = [d for d in args.devices.split(",") if d]
    status, dep = call(args.api, "POST", "/api/deployments", body)
    if status != 201:
        raise UserError((dep or {}).get("error", "service answered %d" % status))
    if not args.no_wait:
        end = time.monotonic() + args.timeout
        seen = {}
        bars = {}
        while True:
            if not args.json:       # follow each device through its states as they happen
                for d in dep["devices"]:
                    ep = d["endpoint"]
                    if d["state"] == "delivering" and d.get("delivered"):
                        bar = bars.setdefault(ep, Progress("  %-20s delivering" % ep))
                        bar(*d["delivered"])
                    if seen.get(ep) != d["state"]:
                        seen[ep] = d["state"]
                        print(("  %-20s %-11s %s" % (ep, d["state"], d.get("reason") or "")).rstrip(), flush=True)
            if dep["state"] in FINAL or time.monotonic() >= end:
                break
            time.sleep(0.3)
            status, dep = call(args.api, "GET", "/api/deployments/%d" % dep["id"])
    if args.json:
        print_json(dep)
    else:
        print(("deployment %d of %s: %s %s" % (dep["id"], args.model, dep["state"], dep.get("reason") or "")).rstrip())
        print_table(dep["devices"], [("endpoint", "DEVICE"), ("state", "STATE"), ("variant_id", "VARIANT"),
                                     ("reason", "REASON")])
    if dep["state"] not in FINAL:
        return 1
    return 0 if dep["state"] == "completed" and all(d["state"] == "active" for d in dep["devices"]) else 1
