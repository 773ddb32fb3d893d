"""`tinymlaas keys new|list|rotate|export-public`: the service's package-signing keys (docs/manifest.md, "Keys").

They act on the key store of --data (DATA/keys, or $TINYMLAAS_KEYS), where the private keys stay (PKCS#8 PEM,
mode 0600). Nothing here prints a private key. `rotate` makes a new signing key and the anchor update, signed by
the old key, that the service pushes to devices so they trust the new one (signing/anchors.py).
"""

import json
import time

from ..errors import UserError
from ..service.config import add_data_argument
from ._output import print_json, print_table


def register(sub):
    p = sub.add_parser("keys", help="package-signing keys: new, list, rotate, export-public")
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION")

    n = ksub.add_parser("new", help="add a P-256 key to the key store (the signing key only when it is the first)")
    n.add_argument("--json", action="store_true")

    ls = ksub.add_parser("list", help="key ids, which one signs, and the anchor updates made so far")
    ls.add_argument("--json", action="store_true")

    r = ksub.add_parser("rotate", help="a new signing key, announced to devices by an anchor update signed by the "
                        "current key")
    r.add_argument("--revoke-old", action="store_true",
                   help="devices that take the update stop trusting the old key (default: they trust both)")
    r.add_argument("--json", action="store_true")

    e = ksub.add_parser("export-public", help="print a public key: PEM (default), the raw point in hex, or the "
                        "device-config form of every key")
    e.add_argument("kid", nargs="?", help="key id in hex (default: the signing key)")
    e.add_argument("--format", choices=("pem", "hex", "anchors"), default="pem",
                   help="anchors: {kid hex: point hex} of the keys a device is given (all but the revoked ones, the "
                   "current first), as a device config's \"trust_anchors\"")
    for sp, func in ((n, cmd_new), (ls, cmd_list), (r, cmd_rotate), (e, cmd_export)):
        add_data_argument(sp)
        sp.set_defaults(func=func)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _store(args):
    from ..signing.store import KeyStore, keys_dir

    return KeyStore(keys_dir(args.data))


def cmd_new(args):
    store = _store(args)
    signer = store.new_key()
    kid = signer.key_id.hex()
    current = store.current_kid() == kid
    if args.json:
        print_json({"kid": kid, "current": current, "directory": str(store.directory)})
    else:
        print("key %s in %s%s" % (kid, store.directory, " (signing key)" if current else
                                  "; `keys rotate` or set it current to sign with it"))
    return 0


def cmd_list(args):
    from ..signing.anchors import key_rows, updates as anchor_updates

    store = _store(args)
    rows, updates = key_rows(store), anchor_updates(store)
    if args.json:
        print_json({"keys": rows, "anchor_updates": [s for s, _ in updates], "directory": str(store.directory)})
        return 0
    if not rows:
        print("no keys in %s (the service makes one when it first signs; or `tinymlaas keys new`)" % store.directory)
        return 0
    print_table([dict(r, signs="yes" if r["current"] else "revoked" if r["revoked"] else "",
                      created=time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"])),
                      update="-" if r["announced_by_update"] is None else "#%d" % r["announced_by_update"])
                 for r in rows],
                [("kid", "KEY ID"), ("signs", "SIGNS"), ("created", "CREATED"), ("update", "ANCHOR UPDATE")])
    return 0


def cmd_rotate(args):
    from ..signing import anchors

    store = _store(args)
    old = store.signer().key_id.hex()
    new, update, envelope = anchors.rotate(store, revoke_old=args.revoke_old)
    out = {"old_kid": old, "new_kid": new.key_id.hex(), "anchor_update": update.sequence,
           "revokes": update.revoke.hex() if update.revoke else None, "update_bytes": len(envelope)}
    if args.json:
        print_json(out)
    else:
        print("signing key is now %s (was %s)" % (out["new_kid"], old))
        print("anchor update #%d (%d bytes, signed by %s%s): the service sends it to each device that trusts "
              "only older keys when it next registers" % (update.sequence, len(envelope), old,
                                                          ", revokes it" if update.revoke else ""))
    return 0


def cmd_export(args):
    store = _store(args)
    if args.format == "anchors":
        from ..signing.anchors import device_anchors

        print(json.dumps(device_anchors(store)))
        return 0
    kid = args.kid or store.current_kid()
    if kid is None:
        raise UserError("no keys in %s yet (`tinymlaas keys new`)" % store.directory)
    if kid not in store.key_ids():
        raise UserError("no key %s in %s" % (kid, store.directory))
    signer = store.signer(kid)
    print(signer.public_point.hex() if args.format == "hex" else signer.public_pem().decode().rstrip())
    return 0
