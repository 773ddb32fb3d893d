"""`tinymlaas tokens new|list|revoke`: API tokens for `tinymlaas serve` (docs/security.md, "The HTTP API").

Locally they act on the service's database (--data/--db), as `models add` does; with --server they go through
the API, which needs an admin token. A new token is printed once: only its SHA-256 is kept.
"""

import getpass
import socket
import time

from ..service.config import add_data_argument, db_url
from ._http import add_api_argument, call, expect
from ..web.tokens import ROLES
from ._output import print_json, print_table


def register(sub):
    p = sub.add_parser("tokens", help="API tokens: new (printed once), list, revoke")
    tsub = p.add_subparsers(dest="tokens_command", metavar="ACTION")

    n = tsub.add_parser("new", help="make a token and print it (once)")
    n.add_argument("--role", required=True, choices=ROLES,
                   help="viewer reads; operator also deploys, runs inferences and manages devices; admin also "
                   "manages models, tokens and keys")
    n.add_argument("--name", default="", help="what the token is for (default: its id)")
    n.add_argument("--json", action="store_true")

    ls = tsub.add_parser("list", help="list tokens (ids, names, roles, last use; never the tokens)")
    ls.add_argument("--json", action="store_true")

    r = tsub.add_parser("revoke", help="revoke a token: it and its console sessions stop working at once")
    r.add_argument("id", help="the token's id (the 8 characters after tmla_, as `tokens list` shows)")
    r.add_argument("--json", action="store_true")
    for sp, func in ((n, cmd_new), (ls, cmd_list), (r, cmd_revoke)):
        add_data_argument(sp)
        add_api_argument(sp, local_alternative="the local database")
        sp.set_defaults(func=func)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _local(args):
    from ..db import Database
    from ..web.audit import AuditLog
    from ..web.tokens import Identity, TokenStore

    db = Database(db_url(args))
    who = Identity(None, "cli %s@%s" % (getpass.getuser(), socket.gethostname()), "admin", "cli")
    return TokenStore(db), AuditLog(db), who


def cmd_new(args):
    if args.api:
        row = expect(*call(args.api, "POST", "/api/tokens", {"role": args.role, "name": args.name}), 201)
        token = row.pop("token")
    else:
        store, audit, who = _local(args)
        row, token = store.create(args.role, args.name, created_by=who.actor)
        audit.record(who, "cli: tokens new %s (%s)" % (row["id"], row["role"]), 0, "ok")
    if args.json:
        print_json(dict(row, token=token))
    else:
        print(token)
        print("token %s (%s, %s): shown this once; give it as $TINYMLAAS_TOKEN or in the config file"
              % (row["id"], row["name"], row["role"]))
    return 0


def _when(t):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def cmd_list(args):
    rows = expect(*call(args.api, "GET", "/api/tokens"), 200) if args.api else _local(args)[0].list()
    if args.json:
        print_json(rows)
        return 0
    print_table([dict(r, created=_when(r["created_at"]), used=_when(r["last_used_at"]),
                      state="revoked " + _when(r["revoked_at"]) if r["revoked_at"] else "active") for r in rows],
                [("id", "ID"), ("name", "NAME"), ("role", "ROLE"), ("created", "CREATED"), ("used", "LAST USED"),
                 ("state", "STATE"), ("created_by", "CREATED BY")])
    return 0


def cmd_revoke(args):
    if args.api:
        row = expect(*call(args.api, "DELETE", "/api/tokens/%s" % args.id), 200)
    else:
        store, audit, who = _local(args)
        row = store.revoke(args.id)
        audit.record(who, "cli: tokens revoke %s" % args.id, 0, "ok")
    if args.json:
        print_json(row)
    else:
        print("token %s (%s) revoked" % (row["id"], row["name"]))
    return 0
