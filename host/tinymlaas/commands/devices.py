"""`tinymlaas devices`: list the devices registered with a running `tinymlaas serve`."""

from ._http import add_api_argument, call, expect
from ._output import print_json, print_table


def register(sub):
    p = sub.add_parser("devices", help="list devices registered with the LwM2M server")
    add_api_argument(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_devices)


def cmd_devices(args):
    devices = expect(*call(args.api, "GET", "/api/devices"), 200)
    if args.json:
        print_json(devices)
        return 0
    rows = []
    for d in devices:
        caps = d.get("capabilities") or {}
        model = d.get("installed_model") or {}
        rows.append({
            "endpoint": d["endpoint"],
            "address": d["address"],
            "since": d.get("registered_at_utc", ""),
            "lwm2m": "%s %s" % (d.get("lwm2m_version", ""), "OSCORE" if d.get("security") == "oscore" else "NoSec"),
            "arch": caps.get("Machine", ""),
            "heap": caps.get("Free Heap", ""),
            "model": ("%s %s" % (model.get("name") or "", model.get("version") or "")).strip() or "-",
        })
    if not rows:
        print("no devices registered")
        return 0
    print_table(rows, [("endpoint", "ENDPOINT"), ("address", "ADDRESS"), ("since", "REGISTERED (UTC)"),
                       ("lwm2m", "LWM2M"), ("arch", "ARCH"), ("heap", "FREE HEAP"), ("model", "MODEL")])
    return 0
