"""`tinymlaas learn sample|label|status|reset|freeze|resume|pull`: on-device learning for a device whose model was
deployed with `deploy --trainable-head` (docs/learning.md), through a running `tinymlaas serve`."""

from pathlib import Path
from urllib.parse import quote

from ..errors import UserError
from ._http import add_api_argument, call, expect
from ._output import print_json
from .infer import read_values


def register(sub):
    p = sub.add_parser("learn", help="teach a device's trainable head (deploy --trainable-head) and pull it back",
                       description="On-device learning: the device's head (its model's last layer) learns from "
                       "labelled samples while the model runs. Through the service's API (operator token; "
                       "status and pull: viewer).")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name, help, func):
        a = acts.add_parser(name, help=help, description=help)
        a.add_argument("device", help="endpoint name of a registered device")
        a.add_argument("--json", action="store_true")
        add_api_argument(a)
        a.set_defaults(func=func)
        return a

    a = action("sample", "run an input on the device and learn its label (a batch: one label for every row)",
               cmd_sample)
    a.add_argument("--label", type=int, required=True, help="the class index of the input(s)")
    a.add_argument("--input", default="-", metavar="FILE.npy|FILE.json|-",
                   help="the input values, as for `infer` (default -: stdin)")
    a.add_argument("--raw", action="store_true", help="the values are already the model's int8 input")
    a = action("label", "learn LABEL for the device's last inference (its own sensor's, or one sent to /21)",
               cmd_label)
    a.add_argument("label", type=int)
    action("status", "samples learned, accuracy over the last 50 labelled samples, learning on or frozen",
           cmd_status)
    action("reset", "back to the initial head (softmax: the model's own last layer; ncm: no class yet)",
           cmd_simple("POST", "/reset"))
    action("freeze", "stop learning (the head still answers and accuracy is still counted)",
           cmd_learning(False))
    action("resume", "learn again after freeze", cmd_learning(True))
    a = action("pull", "read the device's head (TMLH); --register makes it a new int8 model", cmd_pull)
    a.add_argument("--out", metavar="FILE.tmlh", help="write the head's bytes to this file")
    a.add_argument("--register", metavar="NAME",
                   help="register the head as model NAME: the model's last layer requantized from it, compiled "
                   "and measured like any model")
    a.add_argument("--version", default="1", help="version of the registered model (default 1)")


def _route(device, tail=""):
    return "/api/devices/%s/learn%s" % (quote(device, safe=""), tail)


def _show(args, status):
    if args.json:
        print_json(status)
        return 0
    acc = "-" if status.get("accuracy") is None else "%.3f" % status["accuracy"]
    head = status.get("head") or {}
    print("%s runs %s %s (variant %s), head %s: %d samples learned, accuracy %s (last 50), learning %s"
          % (status["device"], status["model"], status["version"], status["variant"], head.get("kind", "?"),
             status["samples"], acc, "on" if status["learning"] else "frozen"))
    return 0


def cmd_sample(args):
    values = read_values(args.input)
    rows = len(values) if isinstance(values, list) and values and isinstance(values[0], list) else 1
    status = expect(*call(args.api, "POST", _route(args.device, "/sample"),
                          {"label": args.label, "input": values, "raw": args.raw}, timeout=60 + 30 * rows), 200)
    if not args.json:
        print("learned %d sample(s) as class %d" % (status["learned"], args.label))
    return _show(args, status)


def cmd_label(args):
    return _show(args, expect(*call(args.api, "POST", _route(args.device, "/label"), {"label": args.label}), 200))


def cmd_status(args):
    return _show(args, expect(*call(args.api, "GET", _route(args.device)), 200))


def cmd_simple(method, tail):
    def run(args):
        return _show(args, expect(*call(args.api, method, _route(args.device, tail)), 200))
    return run


def cmd_learning(on):
    def run(args):
        return _show(args, expect(*call(args.api, "PUT", _route(args.device, "/learning"), {"learning": on}), 200))
    return run


def cmd_pull(args):
    head = expect(*call(args.api, "GET", _route(args.device, "/head"), timeout=120), 200)
    data = bytes.fromhex(head["hex"])
    if args.out:
        try:
            Path(args.out).write_bytes(data)
        except OSError as e:
            raise UserError("cannot write %s: %s" % (args.out, e.strerror)) from None
    answer = {"head": {k: v for k, v in head.items() if k != "hex"}}
    if args.register:
        answer["registered"] = expect(*call(args.api, "POST", _route(args.device, "/register"),
                                            {"name": args.register, "version": args.version}, timeout=3600), 200)
    if args.json:
        print_json(answer)
        return 0
    h = answer["head"]
    print("%s head: %s, %d classes x %d inputs, %d samples, %d bytes%s"
          % (args.device, h["kind"], h["classes"], h["dim"], h["samples"], h["bytes"],
             " -> %s" % args.out if args.out else ""))
    reg = answer.get("registered")
    if reg:
        agreement = reg["head"].get("agreement")
        print("registered %s %s from %s %s: %d variant(s)%s" % (
            reg["model"], reg["version"], reg["from"]["model"], reg["from"]["version"], len(reg["variants"]),
            ", int8 model agrees with the head on %.1f %% of %d calibration inputs"
            % (100 * agreement, reg["head"]["calibration_inputs"]) if agreement is not None else ""))
        for key, msg in sorted(reg.get("errors", {}).items()):
            print("  %s: %s" % (key, msg))
    return 0
