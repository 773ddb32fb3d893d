"""`tinymlaas explain --model M --device D`: every variant of a model, and why it was chosen or rejected for a device."""

from ..cli import UserError
from ..registry import RegistryError
from ..service.config import add_data_argument
from ._http import add_api_argument, call, expect
from ._output import print_json, print_table

# Board profiles for --profile: what a board with tinymlaas frozen into its firmware reports, before any model.
# The LwM2M client's and the runtime's own objects take ~16 KB of heap when their code is frozen (docs/lwm2m-client.md).
BOARD_RESERVED_HEAP = 16 * 1024


def _boards():
    from ..devices.emulated import PROFILES

    return {name: p for name, p in PROFILES.items() if name != "unix"}


BOARDS = sorted(_boards())


def profile_capabilities(name):
    from ..blob import format as F

    p = _boards().get(name)
    if p is None:
        raise UserError("unknown profile %r (known: %s)" % (name, ", ".join(BOARDS)))
    free = p["board_heap"] - BOARD_RESERVED_HEAP
    return {"runtime": "tinyml-mpy", "abi": F.ABI, "ops": sorted(F.OPS_BY_NAME), "heap_free": free,
            "largest_block": free, "fs_free": p["flash_bytes"] or 0, "arch": p["hw_version"], "mpy_abi": None}


def register(sub):
    p = sub.add_parser("explain", help="which variant of a model fits a device, and why the others do not")
    p.add_argument("--model", required=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="a registered device's endpoint name: the running service (--server) "
                                         "re-reads the device's capabilities and decides on them")
    target.add_argument("--profile", help="a board profile instead of a device: %s (board heap and flash, a "
                                          "32-bit MicroPython runtime with frozen code); reads the registry in "
                                          "--data, no service needed" % ", ".join(BOARDS))
    p.add_argument("--latency-budget", type=float, default=None, metavar="MS")
    p.add_argument("--json", action="store_true")
    add_data_argument(p)
    add_api_argument(p)
    p.set_defaults(func=cmd_explain)


def explain_rows(verdicts):
    rows = []
    for v in verdicts:
        var = v.variant
        rows.append({"variant": var["id"], "backend": var["backend"], "runtime": var["runtime"],
                     "options": var["options"], "accuracy": var.get("accuracy"), "ram_needed": v.ram_needed,
                     "ram_available": v.ram_available, "flash_needed": v.flash_needed,
                     "flash_available": v.flash_available, "est_latency_ms": v.est_latency_ms,
                     "fits": v.fits, "chosen": v.chosen, "running": v.running, "reasons": v.reasons,
                     "verdict": v.summary()})
    return rows


def explanation(model, target, caps, best, verdicts):
    """What `explain --json` prints and GET /api/explain answers."""
    return {"model": model["name"], "version": model["version"], "device": target, "capabilities": caps,
            "chosen": best.variant["id"] if best else None, "variants": explain_rows(verdicts)}


def _from_service(args):
    from urllib.parse import quote

    path = "/api/explain/%s/%s" % (quote(args.model, safe=""), quote(args.device, safe=""))
    if args.latency_budget is not None:
        path += "?latency_budget=%g" % args.latency_budget
    return expect(*call(args.api, "GET", path), 200)


def _from_registry(args):
    from ..service.core import Service

    svc = Service(args.data, args.db)
    try:
        model, caps, best, verdicts = svc.explain(args.model, None, args.latency_budget,
                                                  caps=profile_capabilities(args.profile))
    except RegistryError as e:
        raise UserError(str(e)) from None
    return explanation(model, "profile " + args.profile, caps, best, verdicts)


def cmd_explain(args):
    answer = _from_service(args) if args.device else _from_registry(args)
    if args.json:
        print_json(answer)
        return 0 if answer["chosen"] is not None else 1
    caps, target = answer["capabilities"], answer["device"]
    print("%s %s on %s (runtime %s, %s %d B, flash free %d B)" % (
        answer["model"], answer["version"], target, caps["runtime"],
        "co-processor arena" if caps.get("coprocessor") else "largest free block", caps["largest_block"],
        caps["fs_free"]))
    signing = caps.get("signing")
    if signing:  # a device's report: what it would accept (docs/manifest.md); a board profile has none
        seq = signing["sequence"]
        print("signed packages: this service's key %s, device trusts %s; sequence installed %d, next package %d%s"
              % (signing["key_id"], ", ".join((caps.get("trust") or {}).get("key_ids") or []) or "no key",
                 seq["installed"], seq["next"], " (the service's counter was behind the device)" if seq["behind"]
                 else ""))
    rows = [dict(r, accuracy="%.3f" % r["accuracy"] if r["accuracy"] is not None else None)
            for r in answer["variants"]]
    print_table(rows, [("variant", "VARIANT"), ("backend", "BACKEND"), ("runtime", "RUNTIME"),
                       ("accuracy", "ACC"), ("ram_needed", "RAM B"), ("flash_needed", "FLASH B"),
                       ("verdict", "VERDICT")])
    if answer["chosen"] is None:
        print("no variant fits %s" % target)
        return 1
    return 0
