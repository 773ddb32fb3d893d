"""`tinymlaas deploy`: install a model over the air on devices (by name or tag): a staged rollout, canaries first,
a health gate after each stage (docs/service.md, "Rollouts")."""

import argparse
import time

from ..cli import UserError
from ..service.deployments import DEFAULT_CONCURRENCY
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
    p.add_argument("--stages", default="100", type=percentages,
                   help="cumulative percentages of the devices per stage, e.g. 1,10,50,100 (default 100: one stage)")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                   help="devices installed at once per service node (default %d)" % DEFAULT_CONCURRENCY)
    p.add_argument("--max-failed", type=float, default=0.0, metavar="PCT",
                   help="percentage of a stage's devices that may fail before its gate halts and rolls back (default 0)")
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long after a stage before its gate asks the devices how they run (default 0)")
    p.add_argument("--no-result-reporting", action="store_true",
                   help="the devices stop sending inference results (Last Result/Top Class refused, observations "
                   "ended) until a deployment without this flag (docs/privacy.md)")
    p.add_argument("--trainable-head", choices=("softmax", "ncm"),
                   help="learn on the device (docs/learning.md): the model's last FULLY_CONNECTED becomes a head the "
                   "device trains from labelled samples (`tinymlaas learn`); softmax starts from the model's weights "
                   "(SGD), ncm from no class means")
    p.add_argument("--learning-rate", type=float, default=0.05, metavar="LR",
                   help="the softmax head's SGD step (default 0.05)")
    p.add_argument("--save-every", type=int, default=10, metavar="N",
                   help="the device saves its head every N learned samples (default 10)")
    p.add_argument("--no-wait", action="store_true", help="return once the deployment is created")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the deployment (default 600)")
    p.add_argument("--json", action="store_true")
    add_api_argument(p)
    p.set_defaults(func=cmd_deploy)


def percentages(text):
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("stages are comma-separated percentages, e.g. 1,10,50,100") from None


def cmd_deploy(args):
    body = {"model": args.model, "canary": [c for c in args.canary.split(",") if c], "stages": args.stages,
            "concurrency": args.concurrency, "max_failed": args.max_failed, "soak": args.soak,
            "report_results": not args.no_result_reporting}
    if args.trainable_head:
        body["head"] = {"kind": args.trainable_head, "lr": args.learning_rate, "save_every": args.save_every}
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
            if not args.json:       # follow each stage and device through its states as they happen
                stages = dep.get("stage_list", ())
                for st in stages if len(stages) > 1 else ():    # one stage: its devices say it all
                    key = ("stage", st["stage"])
                    if seen.get(key) != st["state"]:
                        seen[key] = st["state"]
                        print(("stage %d (%s, %d devices) %s %s" % (st["stage"], st["label"], st["devices"],
                                                                   st["state"], st.get("gate") or "")).rstrip(),
                              flush=True)
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
    # devices offline at their turn ("waiting") get the model at their next registration: not a failure
    return 0 if dep["state"] == "completed" and all(d["state"] in ("active", "waiting") for d in dep["devices"]) else 1
