"""`tinymlaas oscore-keys new KEYS.json --endpoint NAME`: fresh OSCORE keys for a device, kept in the keys file
that `serve --oscore-keys`, `provision --oscore-keys` and `device emulate --oscore-keys` read (docs/security.md).
`tinymlaas oscore-keys list KEYS.json` shows which endpoints have keys (never the secrets)."""

import json
import os
from pathlib import Path

def register(subparsers):
    p = subparsers.add_parser("oscore-keys", help="create and list the OSCORE keys of devices",
                              description="Keep the OSCORE keys (RFC 8613) the LwM2M server shares with each device. "
                              "`new` adds fresh random keys for an endpoint (16-byte master secret, 8-byte salt, a "
                              "Sender ID no other device in the file has); the file is written with mode 0600.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    n = sub.add_parser("new", help="add fresh keys for an endpoint")
    n.add_argument("file", type=Path, help="keys file (created if missing)")
    n.add_argument("--endpoint", required=True, help="the device's endpoint name")
    n.add_argument("--replace", action="store_true", help="replace the endpoint's existing keys")
    n.set_defaults(func=run_new)
    ls = sub.add_parser("list", help="endpoints with keys and their Sender IDs")
    ls.add_argument("file", type=Path)
    ls.set_defaults(func=run_list)


def _read(path):
    from ..cli import UserError
    from ..lwm2m.oscore import OscoreKeyError, load_keys

    if not path.exists():
        return {}
    try:
        load_keys(path)  # every entry valid
        return json.loads(path.read_text())
    except OscoreKeyError as e:
        raise UserError(str(e)) from None


def run_new(args):
    from ..cli import UserError
    from ..lwm2m.oscore import DeviceKeys, OscoreKeyError

    keys = _read(args.file)
    if args.endpoint in keys and not args.replace:
        raise UserError("%s already has keys for %s (--replace to make new ones)" % (args.file, args.endpoint))
    taken = {bytes.fromhex(v["device_id"]) for ep, v in keys.items() if ep != args.endpoint}
    entry = DeviceKeys.generate(args.endpoint, taken).to_json()
    try:
        DeviceKeys.from_json(args.endpoint, entry)  # the checks load_keys makes: the endpoint's name
    except OscoreKeyError as e:
        raise UserError(str(e)) from None
    keys[args.endpoint] = entry
    tmp = args.file.with_name(args.file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f, indent=1)
    os.replace(tmp, args.file)
    print("%s: keys for %s (Sender ID %s); the server reads this file with `serve --oscore-keys`, the device "
          "gets its part with `provision --oscore-keys` or `device emulate --oscore-keys`"
          % (args.file, args.endpoint, entry["device_id"]))
    return 0


def run_list(args):
    from ..cli import UserError
    from ._output import print_table

    if not args.file.exists():
        raise UserError("no such keys file: %s" % args.file)
    keys = _read(args.file)
    print_table([{"endpoint": ep, "device_id": v["device_id"], "server_id": v["server_id"]} for ep, v in keys.items()],
                [("endpoint", "ENDPOINT"), ("device_id", "DEVICE SENDER ID"), ("server_id", "SERVER SENDER ID")])
    return 0
