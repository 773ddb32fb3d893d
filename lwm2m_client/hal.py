# Hardware abstraction: everything the LwM2M client needs that differs between the unix port and boards
# (ESP32, Cortex-M). The client imports only this module for time, memory, filesystem and reboot.
import gc
import os
import sys
import time

REBOOT_EXIT_CODE = 75  # unix port: the supervisor (tinymlaas device emulate) restarts the process on this code

# sys.implementation._mpy: bits 0-7 .mpy version, 8-9 sub-version, 10-15 native architecture
_ARCHS = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
          "xtensawin", "rv32imc", "rv64imc")
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0  # boards count from 2000, unix from 1970

ticks_ms = time.ticks_ms
ticks_us = time.ticks_us
ticks_diff = time.ticks_diff
sleep_ms = time.sleep_ms


_clock_offset = 0  # seconds a server's write of Current Time (/3/0/13) put this clock ahead


def unix_time():
    return int(time.time()) + _EPOCH_OFFSET + _clock_offset


def set_unix_time(t):
    """Set the clock unix_time() reads (the server's Current Time), as an offset: until the next boot, like a
    board without a battery-backed RTC, and the unix port's system clock stays untouched."""
    global _clock_offset
    _clock_offset = t - int(time.time()) - _EPOCH_OFFSET


# What an emulated board reports as its heap (Device /3/0/10 and 21, TinyML /32770/0/0 and 2) is its board's:
# the heap minus what keep_resident's code takes, holes between its objects included (~85 KB on x64: an esp32 booted
# reporting 194 KB free of a 110 KB board). Free heap is gc.mem_free() minus the holes left at boot; what the
# device allocates later in those holes then counts against it as it would on the board. The gap: such
# allocations do not shrink the largest free block as a board's would. Both 0 on a board (nothing kept resident).
_code_heap = 0  # heap of the resident code, holes included
_code_holes = 0  # free heap among it at boot


def mem_free():
    gc.collect()
    return max(0, gc.mem_free() - _code_holes)


def mem_total():
    return gc.mem_free() + gc.mem_alloc() - _code_heap


def largest_free_block(steps=14):
    """Largest single allocation that currently succeeds, by a bounded binary search of bytearray allocations
    (at most `steps` tries, each freed at once). Within 2**-steps of the free heap."""
    gc.collect()
    lo, hi = 0, gc.mem_free()
    for _ in range(steps):
        if hi - lo <= 16:
            break
        mid = (lo + hi) // 2
        try:
            b = bytearray(mid)
            del b
            lo = mid
        except MemoryError:
            hi = mid
    gc.collect()
    return lo


def du(path):
    """Bytes of the files under path (bounded by the few files a device keeps)."""
    total = 0
    for entry in os.ilistdir(path):
        name, kind = entry[0], entry[1]
        p = path + "/" + name
        total += du(p) if kind == 0x4000 else os.stat(p)[6]
    return total


def fs_free(path, quota=None):
    """Free filesystem bytes; with quota, those of a filesystem of `quota` bytes holding what is under path
    (emulated boards keep their flash in a host directory)."""
    st = os.statvfs(path)
    free = st[0] * st[4]  # f_bsize * f_bavail
    if quota:
        free = min(free, max(0, quota - du(path)))
    return free


def fs_total(path):
    st = os.statvfs(path)
    return st[0] * st[2]


# Code a board keeps resident. A firmware has the client and the inference module frozen into flash
# (firmware/micropython/manifest.py): importing a module late costs it next to no heap. The unix port loads bytecode
# into the heap instead, wherever the allocator stands at that moment, often inside the free block the next model's
# arena needs; dropping such a module and importing it again leaves a new hole each time. An emulated board
# therefore imports every module of those packages at boot (keep_resident), below everything it allocates later, and
# never drops them (unload skips them): its heap then holds what a board's would, at the places a board's would.
def keep_resident(packages=("coap", "lwm2m", "tinyml")):
    gc.collect()
    for pkg in packages:
        names = set()
        for base in sys.path:
            try:
                found = os.listdir((base or ".") + "/" + pkg)
            except OSError:
                continue
            for f in found:
                stem, _, ext = f.rpartition(".")
                if ext in ("py", "mpy") and stem and stem != "__init__":
                    names.add(stem)
        for stem in sorted(names):
            try:
                __import__(pkg + "." + stem)
            except ImportError:  # needs what this port lacks (cryptolib, ulab, machine): a board would too
                continue
            sys.modules[pkg + "." + stem]._resident = True
    global _code_heap, _code_holes
    largest = largest_free_block()  # collects
    free = gc.mem_free()
    _code_holes = max(0, free - largest)
    _code_heap = free + gc.mem_alloc() - largest


def unload(*names):
    """Drop modules ("package.module") from sys.modules and from their packages, so that the collector frees their
    code and the next import loads them again; modules kept resident stay. Their interned names stay either way
    (MicroPython never frees those)."""
    for name in names:
        mod = sys.modules.get(name)
        if mod is None or getattr(mod, "_resident", False):
            continue
        del sys.modules[name]
        pkg, _, attr = name.rpartition(".")
        parent = sys.modules.get(pkg)
        if parent is not None and hasattr(parent, attr):
            delattr(parent, attr)


# The board an emulated device stands for (`tinymlaas device emulate`, from its profile): the platform, machine
# and .mpy architecture it reports are that board's. Empty on a real board, where sys.implementation speaks.
_board = {}


def emulate(board):
    """board: {"platform", "machine", "mpy_arch"} as that board's MicroPython reports them, or None."""
    _board.clear()
    _board.update(board or {})


def platform():
    return _board.get("platform") or sys.platform


def mpy_abi():
    v = getattr(sys.implementation, "_mpy", 0)
    arch = v >> 10
    name = _board.get("mpy_arch") or (_ARCHS[arch] if arch < len(_ARCHS) else str(arch))
    return "%d.%d %s" % (v & 0xFF, (v >> 8) & 3, name)


def machine_name():
    return _board.get("machine") or getattr(sys.implementation, "_machine", sys.platform)


def runtime_version():
    return "%d.%d.%d" % sys.implementation.version[:3]


def reboot():
    if sys.platform in ("linux", "darwin"):
        sys.exit(REBOOT_EXIT_CODE)
    import machine

    machine.reset()


def makedirs(path):
    cur = ""
    for part in path.split("/"):
        cur = cur + "/" + part if cur or path.startswith("/") else part
        if not part:
            continue
        try:
            os.mkdir(cur)
        except OSError:
            pass
