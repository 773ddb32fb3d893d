"""`tinymlaas provision --port PORT --server coap://HOST:PORT --endpoint NAME [--data-dir /flash]`: install the
tinymlaas device packages on a MicroPython board over its serial REPL and start it as an LwM2M device."""

import re
import sys
from pathlib import Path


def register(subparsers):
    p = subparsers.add_parser("provision", help="install the device packages on a MicroPython board and start it",
                              description="Read the board's MicroPython version and .mpy ABI over its raw REPL "
                              "(mpremote, in-process), compile the inference module and LwM2M client for it with "
                              "mpy-cross, copy them with a config JSON and a main.py, start the device and wait "
                              "until it registers with the LwM2M server. Boards whose ABI or free flash cannot take "
                              "the packages are refused with the numbers; a failed run can simply be run again.")
    p.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0 or /dev/ttyACM0")
    p.add_argument("--server", required=True, help="LwM2M server the device registers with, coap://HOST:PORT")
    p.add_argument("--endpoint", required=True, help="endpoint client name of the device")
    p.add_argument("--data-dir", default="/flash", help="model storage directory on the board (default /flash)")
    p.add_argument("--lib-dir", default="/lib", help="where the packages go on the board (default /lib)")
    p.add_argument("--lifetime", type=int, default=300, help="registration lifetime in seconds (default 300)")
    p.add_argument("--wait-registered", metavar="API_URL",
                   help="also wait until the service's HTTP API (e.g. http://HOST:8080) lists the endpoint")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the registration (default 30)")
    p.add_argument("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    p.add_argument("--coprocessor", metavar="uart:ID:BAUD",
                   help="the board runs its models on the bare-metal firmware (firmware/, e.g. an STM32F4 flashed "
                   "with it) on this UART, e.g. uart:1:115200 (docs/lwm2m-client.md, Co-processor)")
    p.add_argument("--oscore-keys", metavar="KEYS.json",
                   help="the keys file `serve --oscore-keys` uses: this endpoint's entry goes into the board's "
                   "config and all its LwM2M traffic is OSCORE-protected (docs/security.md)")
    p.add_argument("--data", type=Path, default=None,
                   help="data directory of the service whose signed packages the device installs: the public "
                   "keys of its key store (DATA/keys, or $TINYMLAAS_KEYS; revoked ones left out) go into the "
                   "board's config as its trust anchors (default $TINYMLAAS_DATA or ~/.tinymlaas)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def trust_for(data):
    """The trust anchors a provisioned device gets: the key store of service data dir `data` (the default one
    without it) less the keys an anchor update revoked."""
    from ..signing.anchors import device_anchors
    from ..signing.store import KeyStore, default_store, keys_dir

    store = KeyStore(keys_dir(data)) if data else default_store()
    return {"trust_anchors": device_anchors(store)}


def run(args):
    from ..boards.provision import ProvisionError, provision
    from ..cli import UserError
    from ._output import print_json

    if not args.server.startswith("coap://") or len(args.server) <= len("coap://"):
        raise UserError("--server must be a coap://HOST:PORT URI, got %r" % args.server)
    if not args.endpoint or any(c in args.endpoint for c in " &?/\"'"):
        raise UserError("--endpoint %r: use letters, digits, '-', '_' or '.'" % args.endpoint)
    if args.lifetime < 1:
        raise UserError("--lifetime must be at least 1 second")
    if args.coprocessor and not re.fullmatch(r"uart:\d+(:\d+)?|tcp:[\w.-]+:\d+", args.coprocessor):
        raise UserError("--coprocessor takes uart:ID[:BAUD] (or tcp:HOST:PORT), not %r" % args.coprocessor)
    from ..lwm2m.oscore import OscoreKeyError, device_config_for

    try:
        oscore = device_config_for(args.oscore_keys, args.endpoint) if args.oscore_keys else None
    except OscoreKeyError as e:
        raise UserError(str(e)) from None
    try:
        result = provision(args.port, args.server, args.endpoint, data_dir=args.data_dir, lib_dir=args.lib_dir,
                           lifetime=args.lifetime, api_url=args.wait_registered, wait_s=args.timeout,
                           baud=args.baud, log=lambda line: print(line, file=sys.stderr, flush=True),
                           coprocessor=args.coprocessor, oscore=oscore, trust=trust_for(args.data))
    except ProvisionError as e:
        raise UserError(str(e)) from None
    if args.json:
        print_json(result)
    else:
        print("provisioned %s on %s: MicroPython %s, .mpy v%s %s, %d files (%d bytes); %s"
              % (result["endpoint"], result["port"], result["micropython"], result["mpy"], result["arch"],
                 result["files"], result["bytes"], result["device_line"]))
    return 0
