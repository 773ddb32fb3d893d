"""`tinymlaas serve`: the LwM2M server (CoAP/UDP) and its HTTP API (web/), in one asyncio loop."""

import asyncio
import logging
import os
import signal
from pathlib import Path

from ..cli import UserError
from ..service.telemetry import DEFAULT_RETENTION_DAYS


def register(sub):
    p = sub.add_parser("serve", help="run the LwM2M server (devices register here) and the JSON HTTP API")
    p.add_argument("--coap-host", default="0.0.0.0", help="address the LwM2M server binds (default 0.0.0.0)")
    p.add_argument("--coap-port", type=int, default=5683, help="CoAP/UDP port (default 5683)")
    p.add_argument("--http-host", default="127.0.0.1",
                   help="address the HTTP API binds (default 127.0.0.1); beyond loopback it requires API tokens")
    p.add_argument("--http-port", type=int, default=8080, help="HTTP API port (default 8080)")
    p.add_argument("--auth", choices=("auto", "required"), default="auto",
                   help="API authentication: 'auto' requires a token unless --http-host is a loopback address, "
                   "'required' on loopback too (default auto; tokens: `tinymlaas tokens new`)")
    p.add_argument("--tls-cert", type=Path, metavar="CERT.pem",
                   help="serve the API over HTTPS with this certificate chain (PEM; with --tls-key)")
    p.add_argument("--tls-key", type=Path, metavar="KEY.pem", help="the certificate's private key (PEM)")
    p.add_argument("--data", type=Path, default=None,
                   help="service data directory: database, artifacts, packages (default $TINYMLAAS_DATA or "
                        "~/.tinymlaas; with --db PATH, the database's folder)")
    p.add_argument("--db", default=None, help="database: SQLite file or postgresql:// URL (default DATA/tinymlaas.db)")
    p.add_argument("--public-host", default=None, help="host name devices use to reach this server (package URIs)")
    p.add_argument("--oscore-keys", type=Path, metavar="KEYS.json",
                   help="OSCORE keys of the devices that must use it: {endpoint: {master_secret, master_salt, "
                   "device_id, server_id} as hex}; those endpoints register and are managed only under OSCORE "
                   "(docs/security.md), the others stay NoSec")
    p.add_argument("--bootstrap-port", type=int, default=None, metavar="PORT",
                   help="also run a LwM2M Bootstrap-Server on this UDP port: a device that asks it (POST /bs) gets "
                   "this server's account and fresh OSCORE keys (docs/security.md)")
    p.add_argument("--bootstrap-keys", type=Path, metavar="KEYS.json",
                   help="factory OSCORE keys of devices whose bootstrap must itself be protected")
    p.add_argument("--telemetry-days", type=float, default=DEFAULT_RETENTION_DAYS, metavar="DAYS",
                   help="keep the devices' telemetry samples and kept inference results this long (default %g)"
                   % DEFAULT_RETENTION_DAYS)
    p.add_argument("--node", default=None, metavar="NAME",
                   help="run as the node NAME of a group of service nodes sharing one postgresql:// --db: any node "
                   "answers any device's Update, rollouts are jobs on the database's task queue that any node "
                   "claims and a live node finishes if this one dies (docs/nodes.md)")
    p.add_argument("--reuse-port", action="store_true",
                   help="bind the CoAP port with SO_REUSEPORT so several nodes on one host share it (the kernel "
                   "spreads devices over them by their address)")
    p.add_argument("-v", "--verbose", action="store_true", help="log registrations and rejected datagrams")
    p.set_defaults(func=cmd_serve)


async def _serve(args, ready=None):
    from ..service.config import DEFAULT_DATA
    from ..service.core import Service
    from ..web import build_api
    from ..web.auth import is_loopback

    tls = _tls_context(args)
    data = args.data
    if data is None:
        is_path = args.db and "://" not in args.db and args.db != ":memory:"
        data = Path(args.db).resolve().parent if is_path else DEFAULT_DATA
    if args.reuse_port:
        from .. import lwm2m  # noqa: F401  (importing it sets the default REUSE_PORT=0 that this overrides)

        os.environ["AIOCOAP_REUSE_PORT"] = "1"
    svc = Service(data, args.db, public_host=args.public_host, telemetry_retention_days=args.telemetry_days,
                  node=args.node)
    server = svc.server
    if args.oscore_keys:
        from ..lwm2m.oscore import OscoreKeyError, load_keys

        try:
            for keys in load_keys(args.oscore_keys):
                server.add_oscore_device(keys)
        except OscoreKeyError as e:
            raise UserError(str(e)) from None
    try:
        await svc.start(args.coap_host, args.coap_port)
    except OSError as e:
        raise UserError("cannot bind CoAP %s:%d: %s" % (args.coap_host, args.coap_port, e.strerror)) from None
    bootstrap = None
    if args.bootstrap_port is not None:
        from ..lwm2m.bootstrap import BootstrapServer
        from ..lwm2m.oscore import OscoreKeyError, load_keys

        host = args.public_host or (args.coap_host if args.coap_host not in ("0.0.0.0", "::") else None)
        if host is None:
            await svc.stop()
            raise UserError("--bootstrap-port needs --public-host (the address devices reach this server at)")
        try:
            factory = load_keys(args.bootstrap_keys) if args.bootstrap_keys else []
            from ..signing.anchors import device_anchors

            # devices bootstrapped here also get the keys this service signs their packages with
            bootstrap = await BootstrapServer(server, "coap://%s:%d" % (host, server.port), bootstrap_keys=factory,
                                              anchors=lambda: device_anchors(svc.keys)).start(args.coap_host,
                                                                                               args.bootstrap_port)
        except (OscoreKeyError, OSError) as e:
            await svc.stop()
            raise UserError("bootstrap server: %s" % e) from None
    local = is_loopback(args.http_host)
    api = build_api(server, svc, auth=args.auth == "required" or not local, secure_cookies=not local or bool(tls))
    try:
        await api.start(args.http_host, args.http_port, ssl_context=tls)
    except OSError as e:
        await svc.stop()
        raise UserError("cannot bind HTTP %s:%d: %s" % (args.http_host, args.http_port, e.strerror)) from None
    http_host = "[%s]" % args.http_host if ":" in args.http_host else args.http_host
    web = "%s://%s:%d" % ("https" if tls else "http", http_host, api.port)
    print("tinymlaas serve: LwM2M on coap://%s:%d, API on %s/api/devices (data %s, %s), console on %s/"
          % (args.coap_host, server.port, web, data,
             "API tokens required" if api.auth else "no API authentication: loopback only", web), flush=True)
    if not local and not tls:
        print("tinymlaas serve: warning: plain HTTP beyond loopback: tokens cross the network readable; give "
              "--tls-cert/--tls-key or put a TLS proxy in front", flush=True)
    if api.auth and not api.tokens.any_active():
        print("tinymlaas serve: no API tokens yet; make one with `tinymlaas tokens new --role admin %s`"
              % ("--db %s" % args.db if args.db else "--data %s" % data), flush=True)
    if bootstrap:
        print("tinymlaas serve: LwM2M Bootstrap-Server on coap://%s:%d" % (args.coap_host, bootstrap.port),
              flush=True)
    server.on_event(lambda ev: print("%s %s %s" % (ev.kind, ev.endpoint, ev.registration.address), flush=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        ready(server, api)
    await stop.wait()
    await api.stop()
    if bootstrap:
        await bootstrap.stop()
    await svc.stop()
    return 0


def _tls_context(args):
    if not (args.tls_cert or args.tls_key):
        return None
    if not (args.tls_cert and args.tls_key):
        raise UserError("--tls-cert and --tls-key go together")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise UserError("cannot load the TLS certificate and key: %s" % (getattr(e, "strerror", None) or e)) from None
    return context


def cmd_serve(args):
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    for port in (args.coap_port, args.http_port) + ((args.bootstrap_port,) if args.bootstrap_port is not None else ()):
        if not 0 <= port <= 65535:
            raise UserError("port %d out of range" % port)
    if not args.telemetry_days > 0:
        raise UserError("--telemetry-days must be a positive number of days, not %g" % args.telemetry_days)
    return asyncio.run(_serve(args))
