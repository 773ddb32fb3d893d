"""`tinymlaas explain --model M --device D`: every variant of a model, and why it was chosen or rejected for a device."""

from ..cli import UserError
from ..lwm2m.server import NotRegistered
from ..registry import RegistryError
from ..service.config import add_data_argument
from ._output import print_json, print_table


def register(sub):
    p = sub.add_parser("explain", help="which variant of a model fits a device, and why the others do not")
    p.add_argument("--model", required=True)
    p.add_argument("--device", required=True, help="device endpoint name")
    p.add_argument("--latency-budget", type=float, default=None, metavar="MS")
    p.add_argument("--json", action="store_true")
    add_data_argument(p)
    p.set_defaults(func=cmd_explain)


def explain_rows(verdicts):
    rows = []
    for v in verdicts:
        var = v.variant
        rows.append({"variant": var["id"], "backend": var["backend"], "runtime": var["runtime"],
                     "options": var["options"], "accuracy": var.get("accuracy"), "ram_needed": v.ram_needed,
                     "ram_available": v.ram_available, "flash_needed": v.flash_needed,
                     "flash_available": v.flash_available, "est_latency_ms": v.est_latency_ms,
                     "fits": v.fits, "chosen": v.chosen, "reasons": v.reasons, "verdict": v.summary()})
    return rows


def cmd_explain(args):
    from ..service.core import Service

    svc = Service(args.data, args.db)
    try:
        model, caps, best, verdicts = svc.explain(args.model, args.device, args.latency_budget)
    except (RegistryError, NotRegistered) as e:
        raise UserError(str(e)) from None
    rows = explain_rows(verdicts)
    if args.json:
        print_json({"model": model["name"], "version": model["version"], "device": args.device,
                    "capabilities": caps, "chosen": best.variant["id"] if best else None, "variants": rows})
        return 0 if best else 1
    print("%s %s on %s (runtime %s, largest free block %d B, flash free %d B)" % (
        model["name"], model["version"], args.device, caps["runtime"], caps["largest_block"], caps["fs_free"]))
    print_table(rows, [("variant", "VARIANT"), ("backend", "BACKEND"), ("runtime", "RUNTIME"), ("accuracy", "ACC"),
                       ("ram_needed", "RAM B"), ("flash_needed", "FLASH B"), ("verdict", "VERDICT")])
    if best is None:
        print("no variant fits %s" % args.device)
        return 1
    return 0
