# Device main: read the configuration, register with the tinymlaas LwM2M server and run the client loop.
#
#   micropython tinyml_device.py --server coap://127.0.0.1:5683 --endpoint dev1 --data-dir /flash [--lifetime 300]
#   micropython tinyml_device.py --config /flash/device.json
#   ... --trust-anchors '{"<kid hex>": "<point hex>"}'   the keys whose signed packages it installs (one key: the
#       unix port takes arguments of at most 255 bytes; put several in the --config file)
#   ... --coprocessor tcp:127.0.0.1:4444 | uart:1:115200   models run on a Cortex-M co-processor (tinyml/coproc.py)
#
# The JSON config holds the same keys (server, endpoint, lifetime, data_dir, ack_timeout_ms, q_window: Q-Block
# blocks in flight, 0 for plain Block only) plus the Device object strings (manufacturer, model, serial,
# device_type, hw_version), and optionally "oscore" (see oscore_context; also accepted as --oscore JSON): then
# all traffic with the server is OSCORE protected. With "bootstrap" (a coap:// URI; optional "bootstrap_oscore"
# protects that exchange) the device asks a LwM2M
# Bootstrap-Server for its server account when it has none stored in data_dir/lwm2m-account.json and no
# "server"; a stored account is used from then on, and wins over "server". An emulated board's config has
# "board" ({"platform", "machine", "mpy_arch"}): what the device reports as itself (hal.emulate). Model packages
# are installed only when signed by a "trust_anchors" key ({kid hex: point hex}) for the config's "vendor_id" and
# "class_id" (hex, default tinymlaas's; tinyml/trust.py, docs/manifest.md). Status
# lines go to stdout, one event a line ("registered /rd/5", ...), so a supervisor can follow the device.
import gc
import json
import socket
import sys

import hal
from coap.endpoint import Endpoint
from lwm2m import client as lc
from lwm2m import pull
from lwm2m.obj_device import Device, Security, Server
from lwm2m.obj_firmware import Firmware
from lwm2m.obj_tinyml import TinyML

DEFAULTS = {"lifetime": 300, "data_dir": "flash", "ack_timeout_ms": 2000, "port": 0, "q_window": 10}


def parse_args(argv):
    cfg = dict(DEFAULTS)
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--") or i + 1 >= len(argv):
            raise SystemExit("usage: tinyml_device.py --server URI --endpoint NAME [--data-dir DIR] "
                             "[--lifetime S] [--config FILE]")
        key = a[2:].replace("-", "_")
        val = argv[i + 1]
        if key == "config":
            with open(val) as f:
                cfg.update(json.load(f))
        elif key in ("oscore", "bootstrap_oscore", "trust_anchors"):  # the same object as in a config file, as JSON
            cfg[key] = json.loads(val)
        else:
            ints = ("lifetime", "ack_timeout_ms", "port", "flash_bytes", "bootstrap_timeout_ms", "q_window")
            cfg[key] = int(val) if key in ints else val
        i += 2
    if "endpoint" not in cfg:
        raise SystemExit("missing --endpoint")
    if "server" not in cfg and "bootstrap" not in cfg:
        raise SystemExit("missing --server (or --bootstrap)")
    return cfg


def device_trust(cfg):
    """tinyml.trust.Trust from the config; None (every package refused) when it is damaged, said once. The
    anchors a signed anchor update gave (data_dir/trust-anchors.json, tinyml/anchors.py) replace the config's."""
    from tinyml.trust import Trust

    try:
        return Trust.of_device(cfg, cfg.get("data_dir", DEFAULTS["data_dir"]))
    except ValueError as e:
        print("trust anchors refused: %s; no package will be installed" % e)
        return None


def make_installer(data_dir, flash_bytes=None, loader=None, cfg=None):
    """The inference module's installer; with flash_bytes, free space is that of a filesystem of that size
    (an emulated board's flash) rather than of the host disk; with loader, models run where it puts them; cfg:
    the device config, for the trust anchors, vendor and class packages must be signed for."""
    try:
        from tinyml.installer import InstallError, Installer
    except ImportError:
        return None, Exception
    trust = device_trust(cfg or {})
    if not flash_bytes:
        return Installer(data_dir, loader, trust), InstallError

    class BoardFlashInstaller(Installer):
        def free_bytes(self):
            return hal.fs_free(self.root, flash_bytes)

    return BoardFlashInstaller(data_dir, loader, trust), InstallError


def open_coprocessor(spec):
    """--coprocessor tcp:HOST:PORT (a socket, e.g. QEMU's -serial tcp:...) or uart:ID:BAUD (machine.UART)
    -> tinyml.coproc.Link, after its boot frame or a CAPS answer."""
    from tinyml import coproc

    kind, _, rest = spec.partition(":")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        addr = socket.getaddrinfo(host, int(port))[0][-1]
        for attempt in range(100):  # the emulator may still be starting: retry for ~10 s
            s = socket.socket()
            try:
                s.connect(addr)
                break
            except OSError:
                s.close()
                if attempt == 99:
                    raise
                hal.sleep_ms(100)
        s.settimeout(1)
        stream = s
    elif kind == "uart":
        import machine

        uid, _, baud = rest.partition(":")
        stream = machine.UART(int(uid), int(baud or 115200), timeout=100)
    else:
        raise SystemExit("--coprocessor takes tcp:HOST:PORT or uart:ID:BAUD, not %r" % spec)
    return coproc.Link(stream)


def oscore_context(o, data_dir, seq_file="oscore-seq"):
    """The OSCORE security context shared with the LwM2M server, from the config's "oscore" object (hex
    strings: master_secret, sender_id (this device's), recipient_id (the server's), optional master_salt and
    id_context). The sender sequence number is kept in data_dir/oscore-seq across reboots."""
    import binascii

    from coap import oscore

    def field(name, required=True):
        v = o.get(name)
        if v is None:
            if required:
                raise SystemExit("oscore: missing %s" % name)
            return None
        try:
            return binascii.unhexlify(v)
        except (ValueError, TypeError):
            raise SystemExit("oscore: %s is not hex" % name)

    try:
        return oscore.Context(field("master_secret"), field("sender_id"), field("recipient_id"),
                              field("master_salt", False) or b"", field("id_context", False),
                              store=oscore.SequenceStore(data_dir + "/" + seq_file))
    except ValueError as e:  # bad IDs, or OscoreError: the sequence number store is damaged
        raise SystemExit("oscore: %s" % e)


def resolve(uri):
    host, port, _, _ = pull.parse_uri(uri)
    return socket.getaddrinfo(host, port)[0][-1]


ACCOUNT = "/lwm2m-account.json"  # in data_dir: the LwM2M server account a Bootstrap-Server gave this device


def load_account(data_dir):
    try:
        with open(data_dir + ACCOUNT) as f:
            return json.load(f)
    except OSError:
        return None
    except ValueError:  # damaged: bootstrap again rather than guess
        print("account file damaged; bootstrapping")
        return None


def store_account(data_dir, account):
    """Write the account atomically: a reboot half-way leaves the old file or the new one."""
    import os

    path = data_dir + ACCOUNT
    with open(path + ".tmp", "w") as f:
        json.dump(account, f)
    try:
        os.rename(path + ".tmp", path)
    except OSError:  # filesystems without an atomic replace
        os.remove(path)
        os.rename(path + ".tmp", path)


def use_account(c, cfg, account):
    """Point the client (and its endpoint's security) at the server of `account`."""
    c.server = resolve(account["server"])
    c.lifetime = account.get("lifetime", cfg["lifetime"])
    c.objects[0].uri = account["server"]
    ssid = account.get("ssid", 1)
    c.objects[0].short_id = c.objects[1].short_id = ssid
    keys = account.get("oscore")
    if keys:
        echo = cfg.get("oscore", cfg.get("bootstrap_oscore")) or {}
        c.ep.secure(oscore_context(keys, cfg["data_dir"]), echo.get("echo", True))
    else:
        c.ep.security = c.ep.echo = None


def bootstrap(ep, cfg):
    """Client-initiated bootstrap (lwm2m/bootstrap.py) on the endpoint -> the account it stored. Runs before the
    objects are built, so that the module's code, freed afterwards, leaves no hole between them."""
    from lwm2m import bootstrap as bs

    addr = resolve(cfg["bootstrap"])
    if cfg.get("bootstrap_oscore"):
        o = cfg["bootstrap_oscore"]
        ep.secure(oscore_context(o, cfg["data_dir"], "bs-oscore-seq"), o.get("echo", True))
    session = bs.Session(cfg["bootstrap"], addr, lambda a: store_account(cfg["data_dir"], a),
                         ("</3/0>", "</5/0>", "</32770/0>"))  # what build() adds (Discover)
    account = bs.run(ep, addr, cfg["endpoint"], session, cfg.get("bootstrap_timeout_ms", 60000))
    print("bootstrapped: server %s%s" % (account["server"], " under OSCORE" if account.get("oscore") else ""))
    # done with it until the next boot: let the collector have the module's code (9.9 KB of heap on x64)
    hal.unload("lwm2m.bootstrap")
    del bs, session
    gc.collect()
    return account


def build(cfg, device=Device, tinyml=TinyML):
    """The client of one device, ready to register. `device` and `tinyml` make its Device and TinyML objects
    (the fleet emulator's report a board's heap: fleet_main.py)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(socket.getaddrinfo("0.0.0.0", cfg["port"])[0][-1])
    ep = Endpoint(sock, ack_timeout_ms=cfg["ack_timeout_ms"])
    # Q-Block (RFC 9177): blocks in flight, ~1 KB of heap each while a transfer runs; 0: plain Block1/Block2
    ep.q_window = cfg.get("q_window", DEFAULTS["q_window"])
    hal.makedirs(cfg["data_dir"])
    hal.emulate(cfg.get("board"))  # an emulated board reports the board it stands for (set by its profile)
    account = load_account(cfg["data_dir"])
    bootstrapped = account is None and not cfg.get("server")
    if bootstrapped:
        account = bootstrap(ep, cfg)
    c = lc.Client(ep, None, cfg["endpoint"], cfg["lifetime"])
    c.bootstrapped = bootstrapped
    link = loader = None
    if cfg.get("coprocessor"):
        from tinyml.coproc import loader as coproc_loader

        link = open_coprocessor(cfg["coprocessor"])
        loader = coproc_loader(link)
    if account and account.get("trust_anchors"):  # given by the Bootstrap-Server: they win over the config's
        cfg = dict(cfg, trust_anchors=account["trust_anchors"])
    installer, install_error = make_installer(cfg["data_dir"], cfg.get("flash_bytes"), loader, cfg)
    c.add(Security(cfg.get("server", "")))
    c.add(Server())
    # security before the model: OSCORE's code (~1.3 KB blocks) must not need a hole the model's arena has taken
    # (a bootstrapped OSCORE esp32 restarting with KWS installed failed here with MemoryError)
    if account:  # from a Bootstrap-Server, now or at an earlier boot: it wins over "server"
        use_account(c, cfg, account)
    elif cfg.get("server"):
        c.server = resolve(cfg["server"])
        if cfg.get("oscore"):
            ep.secure(oscore_context(cfg["oscore"], cfg["data_dir"]), cfg["oscore"].get("echo", True))
    c.add(device(cfg))
    tml = c.add(tinyml(installer, cfg["data_dir"], cfg.get("flash_bytes"), link))
    c.add(Firmware(installer, install_error, on_activated=tml.reload, on_activating=tml.unload,
                   on_reset=c.drop_transfers))
    return c


def run(cfg):
    c = build(cfg)
    try:
        backoff = 1000
        while True:
            try:
                c.register()
                break
            except Exception as e:
                print("register failed:", e)
                hal.sleep_ms(backoff)
                backoff = min(backoff * 2, 60000)
        if c.bootstrapped:
            # the duplicate cache of the bootstrap exchanges (kept until now for a retransmitted Finish) sits
            # wherever the heap was free during bootstrap, often inside the block a model arena needs later
            # (measured: 8-11 KB off the largest free block)
            c.ep.recent = []
        gc.collect()
        print("registered /%s heap_free=%d heap_total=%d" % ("/".join(c.location), hal.mem_free(),
                                                               hal.mem_total()))
        was = c.location
        while True:
            c.step(200)
            if c.location != was:
                print("registration", "/" + "/".join(c.location) if c.location else "lost")
                was = c.location
    except KeyboardInterrupt:  # the supervisor stops the device: leave the server's registry clean
        c.deregister(3000)
        print("deregistered")


if __name__ == "__main__":
    config = parse_args(sys.argv[1:])
    if config.get("board"):  # an emulated board: its code resident, as frozen in a board's firmware (hal.py)
        hal.keep_resident()
        # where the code came from (a precompiled folder's .mpy files, as on a board, or the .py sources)
        print("code lwm2m=%s coap=%s" % (lc.__file__, sys.modules["coap.endpoint"].__file__))
    run(config)
