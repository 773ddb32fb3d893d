"""Provision a MicroPython board as a tinymlaas device over its serial REPL (mpremote's transport, in-process).

Steps, in the order that keeps a half-provisioned board recoverable:
1. enter the raw REPL without a soft reset (works on boards and on the unix port, which has none) and read the
   board's MicroPython version, `.mpy` ABI and free filesystem space;
2. refuse, with the numbers, a board whose ABI or free space cannot take the packages;
3. compile the device packages (inference module `tinyml`, the LwM2M client, the REPL helper) with mpy-cross for
   the board's exact .mpy version and native architecture;
4. remove the old `main.py` first, so a board whose copy is interrupted boots to a plain REPL rather than into
   half-installed code; copy the packages, the config JSON, and `main.py` last;
5. start the device main (a soft reset on a board; the unix port runs `main.py` in place) and wait for the
   device's own "registered" line and, when an HTTP API URL is given, for the service to list the endpoint.
Running the same command again after any failure redoes every step and succeeds.
"""

import ast
import json
import tempfile
import time
import urllib.request
from pathlib import Path

from ..paths import FIRMWARE, INFERENCE_MODULE, LWM2M_CLIENT
from . import mpy_abi

REPL_HELPER = FIRMWARE / "micropython" / "modules" / "tinyml_repl.py"
CONFIG_NAME = "tinyml.json"
CHUNK = 512  # bytes per raw-REPL write: small enough for a 100 KB heap to compile the literal


class ProvisionError(Exception):
    """A provisioning step failed; the message says which and with which numbers."""


def device_sources():
    """(path under the board's lib dir, source file) for everything the device main needs."""
    out = []
    for f in sorted((INFERENCE_MODULE / "tinyml").rglob("*.py")):
        out.append((f.relative_to(INFERENCE_MODULE).as_posix(), f))
    for f in sorted(LWM2M_CLIENT.rglob("*.py")):
        if "__pycache__" not in f.parts:
            out.append((f.relative_to(LWM2M_CLIENT).as_posix(), f))
    if REPL_HELPER.exists():
        out.append((REPL_HELPER.name, REPL_HELPER))
    return out


def compile_packages(arch, workdir):
    """Compile every device module for `arch` into `workdir`. Returns [(board path under lib, bytes)]."""
    exe = mpy_abi.mpy_cross()
    out = []
    for rel, src in device_sources():
        dst = Path(workdir) / Path(rel).with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        mpy_abi.compile_file(src, dst, arch, exe)
        out.append((Path(rel).with_suffix(".mpy").as_posix(), dst.read_bytes()))
    return out


def join(*parts):
    """Board path join ("/" separators, no normalisation beyond that)."""
    out = parts[0]
    for p in parts[1:]:
        out = p if p.startswith("/") else (out.rstrip("/") + "/" + p if out else p)
    return out


def main_py(lib_dir, config_path):
    # Written to the board's root: the firmware runs main.py after boot.py on every reset.
    return ("# tinymlaas device main (written by `tinymlaas provision`; re-run it to change the config)\n"
            "import sys\n"
            "sys.path.insert(0, %r)\n"
            "import tinyml_device\n"
            "tinyml_device.run(tinyml_device.parse_args(['--config', %r]))\n" % (lib_dir, config_path)).encode()


def fs_blocks(size, block):
    return max(1, (size + block - 1) // block) * block


# Runs on the board: one round trip for everything provisioning decides on. Sizes of files about to be
# replaced count as free (a re-run on a nearly full board must still fit).
_PROBE = """
import sys, os, gc
def _size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return 0
def _statvfs(paths):
    for p in paths:
        try:
            return os.statvfs(p)
        except OSError:
            pass
    return None
_s = _statvfs(%(dirs)r)
gc.collect()
print(repr({"mpy": getattr(sys.implementation, "_mpy", 0), "version": tuple(sys.implementation.version[:3]),
            "platform": sys.platform, "machine": getattr(sys.implementation, "_machine", sys.platform),
            "block": _s[0] if _s else 0, "free_blocks": _s[4] if _s else 0,
            "replaced": sum(_size(p) for p in %(paths)r), "heap_free": gc.mem_free()}))
"""


def probe(transport, lib_dir, paths):
    script = _PROBE % {"dirs": [lib_dir, lib_dir.rsplit("/", 1)[0] or "/", "/", "."], "paths": paths}
    try:
        return ast.literal_eval(transport.exec(script).decode().strip())
    except (ValueError, SyntaxError) as e:
        raise ProvisionError("unexpected answer from the board while reading its version: %s" % e) from None


def check_space(files, info):
    """Refuse (with the numbers) when the files do not fit in the board's free filesystem space."""
    block = info["block"] or 4096
    need = sum(fs_blocks(len(data), block) for _, data in files)
    free = info["block"] * info["free_blocks"] + info["replaced"]
    if need > free:
        raise ProvisionError("the packages need %d bytes of flash (%d files, %d-byte blocks) but the board has %d "
                             "bytes free: free some space (or use a board with a larger filesystem)"
                             % (need, len(files), block, free))
    return need, free


def _mkdirs(transport, path, made):
    parts = [p for p in path.split("/") if p]
    cur = "/" if path.startswith("/") else ""
    for p in parts:
        cur = join(cur, p) if cur else p
        if cur in made:
            continue
        if not transport.fs_exists(cur):
            transport.fs_mkdir(cur)
        made.add(cur)


def provision(port, server, endpoint, data_dir="/flash", lib_dir="/lib", lifetime=300, api_url=None,
              wait_s=30.0, baud=115200, log=print, on_file=None, coprocessor=None, oscore=None, trust=None):
    """Provision the board on `port`; returns a summary dict. `on_file(path)` is called before each copy.
    coprocessor: "uart:ID:BAUD" (or "tcp:HOST:PORT") of the bare-metal firmware the board runs its models on.
    oscore: the device's OSCORE keys (lwm2m.oscore.DeviceKeys.device_config()), written into its config.
    trust: the device config keys of the packages it installs ({"trust_anchors": {kid hex: point hex}, optional
    "vendor_id", "class_id"}; signing.anchors.device_anchors), written into its config."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    t0 = time.monotonic()
    try:
        # A read timeout, so a port where nothing answers ends in a clear error instead of a blocked read.
        transport = SerialTransport(port, baudrate=baud, timeout=1)
    except TransportError:
        raise ProvisionError("cannot open serial port %s" % port) from None
    try:
        try:
            transport.enter_raw_repl(soft_reset=False, timeout_overall=5)
        except TransportError:
            raise ProvisionError("no MicroPython REPL answered on %s: is MicroPython flashed (tinymlaas flash) and "
                                 "is no other program (a terminal, mpremote) holding the port?" % port) from None
        # main.py and the config live at the filesystem root ("/" on a board; the working directory when the
        # lib dir is relative, as on the unix port).
        root = "/" if lib_dir.startswith("/") else ""
        config_path = join(root, CONFIG_NAME)
        with tempfile.TemporaryDirectory(prefix="tinymlaas-provision-") as work:
            # Probe first with the ABI unknown, compile for it, then probe the real file list for space.
            info = probe(transport, lib_dir, [])
            try:
                arch = mpy_abi.check(info["mpy"])
            except mpy_abi.AbiError as e:
                raise ProvisionError("board on %s (MicroPython %s, %s): %s"
                                     % (port, ".".join(map(str, info["version"])), info["machine"], e)) from None
            major, sub, _ = mpy_abi.decode(info["mpy"])
            log("board: MicroPython %s on %s, .mpy v%d.%d %s" % (".".join(map(str, info["version"])),
                                                                info["machine"], major, sub, arch))
            compiled = compile_packages(arch, work)
            config = {"server": server, "endpoint": endpoint, "data_dir": data_dir, "lifetime": lifetime}
            if coprocessor:
                config["coprocessor"] = coprocessor
            if oscore:
                config["oscore"] = oscore
            config.update(trust or {})
            files = [(join(lib_dir, rel), data) for rel, data in compiled]
            files.append((config_path, json.dumps(config).encode()))
            files.append((join(root, "main.py"), main_py(lib_dir, config_path)))
            info = probe(transport, lib_dir, [p for p, _ in files])
            need, free = check_space(files, info)
            log("copying %d files, %d bytes (%d bytes free on the board)" % (len(files), need, free))
            main_path = files[-1][0]
            if transport.fs_exists(main_path):
                transport.fs_rmfile(main_path)          # no boot into half-installed code
            made = set()
            for path, data in files:
                if on_file:
                    on_file(path)
                _mkdirs(transport, path.rsplit("/", 1)[0] if "/" in path.strip("/") else "", made)
                transport.fs_writefile(path, data, chunk_size=CHUNK)
            _mkdirs(transport, data_dir, made)
        copied_s = time.monotonic() - t0
        registered_line = start_and_wait(transport, info["platform"], main_path, wait_s, log)
    except TransportError as e:
        raise ProvisionError("the board on %s stopped answering during provisioning (%s); run the same command "
                             "again" % (port, str(e).splitlines()[0] if str(e) else type(e).__name__)) from None
    finally:
        try:
            transport.close()
        except OSError:
            pass
    registered_api = wait_api(api_url, endpoint, wait_s) if api_url else None
    return {"port": port, "endpoint": endpoint, "micropython": ".".join(map(str, info["version"])),
            "mpy": "%d.%d" % (major, sub), "arch": arch, "files": len(files), "bytes": sum(len(d) for _, d in files),
            "flash_bytes": need, "free_before": free,
            "copy_seconds": round(copied_s, 2), "device_line": registered_line, "registered_api": registered_api}


def start_and_wait(transport, platform, main_path, wait_s, log):
    """Start main.py and follow the console until the device prints its "registered /rd/..." line."""
    if platform in ("linux", "darwin"):
        # The unix port has no soft reset: run main.py in place from the raw REPL; it keeps running after
        # the port is closed.
        transport.exec_raw_no_follow("exec(open(%r).read())" % main_path)
    else:
        transport.exit_raw_repl()
        transport.serial.write(b"\x04")                # soft reset: boot.py, then main.py
    deadline = time.monotonic() + wait_s
    buf = b""
    while time.monotonic() < deadline:
        n = transport.serial.in_waiting
        chunk = transport.serial.read(n or 1) if n else b""
        if not chunk:
            time.sleep(0.02)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace").strip().strip("\x04")
            if text:
                log("device: " + text)
            if text.startswith("registered /"):
                return text
            if text.startswith("Traceback") or "Error:" in text:
                raise ProvisionError("the device main failed on the board: %s" % text)
    raise ProvisionError("the device did not register within %.0f s (is the server reachable from the board?)"
                         % wait_s)


def wait_api(api_url, endpoint, wait_s):
    """Poll the service's GET /api/devices until `endpoint` is listed."""
    url = api_url.rstrip("/") + "/api/devices"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if any(d.get("endpoint") == endpoint for d in json.load(r)):
                    return True
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise ProvisionError("the device printed its registration but %s does not list %r after %.0f s"
                                 % (url, endpoint, wait_s))
        time.sleep(0.2)
