"""`tinymlaas device emulate --server coap://HOST:PORT --endpoint NAME [--heap SIZE] [--data-dir DIR]
[--profile esp32|...]`: run one emulated device (the MicroPython LwM2M client) until interrupted."""

import sys
from pathlib import Path


def register(subparsers):
    from ..devices.emulated import PROFILES

    p = subparsers.add_parser("device", help="device-side tools (emulated devices)",
                              description="Device-side tools.")
    sub = p.add_subparsers(dest="device_command", metavar="ACTION")
    e = sub.add_parser("emulate", help="run an emulated device: the MicroPython LwM2M client on the unix port",
                       description="Start one emulated device: a `micropython` process with a board-like heap "
                       "limit and a persistent data directory as its flash, running the tinymlaas LwM2M client. "
                       "It registers with the server, reports its TinyML capabilities and accepts model packages "
                       "over object 5. Ctrl-C de-registers and stops it.")
    e.add_argument("--server", help="LwM2M server, coap://HOST:PORT (or --bootstrap)")
    e.add_argument("--bootstrap", metavar="coap://HOST:PORT",
                   help="a LwM2M Bootstrap-Server to get the server account and OSCORE keys from (the first time; "
                   "the account is then kept in the device's flash)")
    e.add_argument("--endpoint", required=True, help="endpoint client name to register as")
    e.add_argument("--heap", help="MicroPython heap size, e.g. 160k (default: from the profile)")
    e.add_argument("--data-dir", help="directory used as the device's flash (kept across runs; default: a new "
                   "temporary directory)")
    e.add_argument("--flash", help="filesystem size for model packages, e.g. 1536k (default: from the profile)")
    e.add_argument("--profile", default="esp32", choices=sorted(PROFILES), help="board profile (default esp32)")
    e.add_argument("--port", type=int, default=0, help="local UDP port of the device (default: any free port)")
    e.add_argument("--lifetime", type=int, default=300, help="registration lifetime in seconds (default 300)")
    e.add_argument("--coprocessor", metavar="BOARD|tcp:HOST:PORT",
                   help="run models on a co-processor on the device's UART: stm32f4 or mps2-an386 boots the "
                   "bare-metal firmware in QEMU for it; tcp:HOST:PORT reaches one already running (e.g. Renode's "
                   "socket terminal)")
    e.add_argument("--data", type=Path, default=None,
                   help="the data directory of the service whose signed packages the device installs: it is "
                   "provisioned with the public keys of that service's key store (DATA/keys, or $TINYMLAAS_KEYS; "
                   "default $TINYMLAAS_DATA or ~/.tinymlaas, as `serve`)")
    e.add_argument("--oscore-keys", metavar="KEYS.json",
                   help="the same keys file as `serve --oscore-keys`: this endpoint's entry protects all its LwM2M "
                   "traffic with OSCORE (docs/security.md)")
    e.set_defaults(func=run_emulate)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_emulate(args):
    from ..cli import UserError

    if not args.server and not args.bootstrap:
        raise UserError("give --server coap://HOST:PORT or --bootstrap coap://HOST:PORT")

    if args.lifetime < 1:
        raise UserError("--lifetime must be at least 1 second")
    if not 0 <= args.port <= 65535:
        raise UserError("--port must be 0..65535")
    qemu, coproc = None, args.coprocessor
    if coproc and not coproc.startswith("tcp:"):
        from ..devices.qemu import BOARDS, QemuDevice, QemuError

        if coproc not in BOARDS:
            raise UserError("--coprocessor takes %s or tcp:HOST:PORT, not %r" % (" or ".join(BOARDS), coproc))
        try:
            from ..devices.emulated import device_trust

            # the co-processor's firmware must trust what the device trusts, or it refuses every package
            qemu = QemuDevice(coproc, connect=False, trust=device_trust(_device_trust(args))).start()
        except QemuError as e:
            raise UserError(str(e)) from None
        print("co-processor: %s firmware in QEMU, UART on tcp:127.0.0.1:%d" % (coproc, qemu.port), flush=True)
        coproc = "tcp:127.0.0.1:%d" % qemu.port
    try:
        return _run_device(args, coproc)
    finally:
        if qemu:
            qemu.stop()


def _device_oscore(args):
    """This endpoint's keys from --oscore-keys, as the device's config wants them (or None)."""
    from ..cli import UserError
    from ..lwm2m.oscore import OscoreKeyError, device_config_for

    try:
        return device_config_for(args.oscore_keys, args.endpoint) if args.oscore_keys else None
    except OscoreKeyError as e:
        raise UserError(str(e)) from None


def _device_trust(args):
    """The trust anchors the device gets: the key store of --data (the default one without it)."""
    from ..signing.store import KeyStore, keys_dir

    from ..signing.anchors import device_anchors  # all keys but those an anchor update revoked

    return device_anchors(KeyStore(keys_dir(args.data))) if args.data else None


def _run_device(args, coproc):
    from ..cli import UserError
    from ..devices.emulated import EmulatedDevice
    from ..devices.unixport import MicroPythonError

    try:
        # absolute: the device process runs in its data directory, where a relative path would not be found
        data_dir = Path(args.data_dir).resolve() if args.data_dir else None
        dev = EmulatedDevice(args.server, args.endpoint, heap=args.heap, data_dir=data_dir,
                             profile=args.profile, lifetime=args.lifetime, flash=args.flash, port=args.port,
                             coprocessor=coproc, oscore=_device_oscore(args), bootstrap=args.bootstrap,
                             trust=_device_trust(args),
                             log=lambda line: print("[%s] %s" % (args.endpoint, line), flush=True))
    except ValueError as e:
        raise UserError(str(e)) from None
    print("emulated %s device %s: heap %d bytes, flash %s" % (args.profile, args.endpoint, dev.heap,
                                                              dev.data_dir), flush=True)
    try:
        dev.start()
        while not dev.wait(0.5):
            pass
    except MicroPythonError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (cli.main), whenever it comes: the device de-registers
        print("stopping %s" % args.endpoint, file=sys.stderr)
        dev.stop()
        return 0
    return 0 if dev.exit_code == 0 else 1
