"""`tinymlaas devices`: list the devices registered with a running `tinymlaas serve`."""

import json
import urllib.error
import urllib.request

from ..cli import UserError
from ._http import DEFAULT_API
from ._output import print_json, print_table


def register(sub):
    p = sub.add_parser("devices", help="list devices registered with the LwM2M server")
    p.add_argument("--server", default=DEFAULT_API, help="HTTP API of `tinymlaas serve` (default %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_devices)


def fetch(base):
    url = base.rstrip("/") + "/api/devices"
    if not url.startswith(("http://", "https://")):
        raise UserError("--server must be an http:// URL, got %r" % base)
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise UserError("%s answered HTTP %d" % (url, e.code)) from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError("cannot reach %s (is `tinymlaas serve` running?): %s" % (url, getattr(e, "reason", e))) from None
    except ValueError:
        raise UserError("%s did not answer JSON" % url) from None


def cmd_devices(args):
    devices = fetch(args.server)
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
