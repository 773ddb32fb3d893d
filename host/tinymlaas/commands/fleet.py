"""`tinymlaas fleet emulate --server coap://HOST:PORT --count N --prefix NAME [--profile P] [--loss PCT]`: run N
emulated devices (endpoints NAME-0000 …) in a few MicroPython processes until interrupted (docs/fleet.md)."""

import sys
import threading
import time
from pathlib import Path


def register(subparsers):
    from ..devices.emulated import PROFILES
    from ..devices.fleet import DEFAULT_PER_VM

    p = subparsers.add_parser("fleet", help="many emulated devices on one machine",
                              description="Emulated fleets (docs/fleet.md).")
    sub = p.add_subparsers(dest="fleet_command", metavar="ACTION")
    e = sub.add_parser("emulate", help="run N emulated devices: the MicroPython LwM2M client, many per process",
                       description="Start N emulated devices, endpoints PREFIX-0000, PREFIX-0001, …: each one the "
                       "tinymlaas MicroPython LwM2M client with its own UDP socket, registration, objects, flash "
                       "directory and installer, several hundred of them per `micropython` process. They register, "
                       "report their board's TinyML capabilities and take model packages over object 5. Ctrl-C or "
                       "SIGTERM de-registers them all.")
    e.add_argument("--server", required=True, help="LwM2M server, coap://HOST:PORT")
    e.add_argument("--count", type=int, required=True, help="number of devices")
    e.add_argument("--prefix", required=True, help="endpoint names are PREFIX-0000, PREFIX-0001, …")
    e.add_argument("--profile", default="esp32", choices=sorted(PROFILES), help="board profile (default esp32)")
    e.add_argument("--loss", type=float, default=0.0, metavar="PCT",
                   help="drop this percentage of datagrams each way between the devices and the server (a "
                   "seeded lossy link; default 0)")
    e.add_argument("--lifetime", type=int, default=300, help="registration lifetime in seconds (default 300)")
    e.add_argument("--ramp", type=float, default=0.0, metavar="SECONDS",
                   help="spread the devices' first registrations evenly over this many seconds (default 0: all "
                   "at once, as after a power cut)")
    e.add_argument("--per-process", type=int, default=DEFAULT_PER_VM, metavar="N",
                   help="devices per micropython process (default %d)" % DEFAULT_PER_VM)
    e.add_argument("--data-dir", help="directory holding each device's flash (NAME/flash), kept across runs "
                   "(default: a temporary directory, removed at the end)")
    e.add_argument("-v", "--verbose", action="store_true", help="print every device's status lines")
    e.set_defaults(func=run_emulate)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _check(args):
    from ..cli import UserError

    if not args.server.startswith("coap://"):
        raise UserError("--server must be a coap:// URI, got %r" % args.server)
    if args.count < 1:
        raise UserError("--count must be at least 1")
    if args.per_process < 1:
        raise UserError("--per-process must be at least 1")
    if not 0 <= args.loss < 100:
        raise UserError("--loss is a percentage: 0 <= PCT < 100")
    if args.lifetime < 1:
        raise UserError("--lifetime must be at least 1 second")
    if args.ramp < 0:
        raise UserError("--ramp must not be negative")


class _LossyLink:
    """The lossy proxy (lwm2m/lossy_proxy.py) in an asyncio loop of its own, between the devices and the server."""

    def __init__(self, server, loss):
        import asyncio
        import socket
        from urllib.parse import urlsplit

        from ..lwm2m.lossy_proxy import LossyProxy

        uri = urlsplit(server)
        addr = socket.getaddrinfo(uri.hostname, uri.port or 5683, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = asyncio.run_coroutine_threadsafe(LossyProxy.start(addr, loss / 100.0), self.loop).result(10)
        self.uri = "coap://%s:%d" % self.proxy.address

    def summary(self):
        st = self.proxy.stats
        return "link: %d of %d datagrams dropped" % (st["dropped_up"] + st["dropped_down"], st["up"] + st["down"])

    def close(self):
        self.loop.call_soon_threadsafe(self.proxy.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _progress(fleet, stop):
    """One line whenever the number of registered devices has changed, at most once a second."""
    shown = -1
    while not stop.wait(1.0):
        n = len(fleet.registered)
        if n != shown:
            print("registered %d/%d (%.1f s)" % (n, len(fleet.names), time.monotonic() - fleet.started_at),
                  flush=True)
            shown = n


def run_emulate(args):
    from ..cli import UserError
    from ..devices.fleet import EmulatedFleet, FleetError

    _check(args)
    link = None
    try:
        if args.loss:
            link = _LossyLink(args.server, args.loss)
        server = link.uri if link else args.server
        fleet = EmulatedFleet(server, args.count, prefix=args.prefix, profile=args.profile,
                              per_vm=args.per_process, data_dir=Path(args.data_dir) if args.data_dir else None,
                              lifetime=args.lifetime, ramp=args.ramp,
                              log=(lambda line: print(line, flush=True)) if args.verbose else None)
    except ValueError as e:
        if link:
            link.close()
        raise UserError(str(e)) from None
    print("emulated fleet: %d %s devices %s … %s in %d micropython processes (heap %d KB each), flash under %s%s"
          % (args.count, args.profile, fleet.names[0], fleet.names[-1], len(fleet.vms), fleet.heap // 1024,
             fleet.data_dir, ", %g %% loss each way through %s" % (args.loss, server) if link else ""), flush=True)
    stop = threading.Event()
    try:
        fleet.start()
        threading.Thread(target=_progress, args=(fleet, stop), daemon=True).start()
        took = fleet.wait_registered(timeout=float("inf"))
        m = fleet.memory()
        print("all %d registered after %.1f s; memory per device: %.0f KB RSS, %.0f KB PSS" % (
            args.count, took, m["per_device"]["rss"] / 1024, m["per_device"]["pss"] / 1024), flush=True)
        while True:
            time.sleep(3600)
    except FleetError as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (cli.main): every device de-registers
        print("stopping %d devices" % args.count, file=sys.stderr, flush=True)
    finally:
        stop.set()
        done, lost = fleet.stop()
        print("de-registered %d%s" % (done, ", %d unanswered" % lost if lost else ""), file=sys.stderr, flush=True)
        if link:
            print(link.summary(), file=sys.stderr, flush=True)
            link.close()
    return 0
