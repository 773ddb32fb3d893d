"""Measure the device client's flash and RAM costs (numbers for docs/lwm2m-client.md). Not a test:

    python tests/client/measure_client.py

.mpy size of each module (mpy-cross, for x64 / armv7emsp / xtensawin: the client has no native code, so they
only differ by header), heap in use at idle after registration, and the RAM high-water of a 300 KB Block1 push.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from coap_test_peer import Peer  # noqa: E402
from packages import package  # noqa: E402

from tinymlaas.devices import unixport  # noqa: E402
from tinymlaas.devices.emulated import EmulatedDevice, compiled_path, device_trust  # noqa: E402
from tinymlaas.paths import LWM2M_CLIENT  # noqa: E402


def mpy_sizes():
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for src in sorted(LWM2M_CLIENT.rglob("*.py")):
            rel = src.relative_to(LWM2M_CLIENT)
            sizes = []
            for arch in ("x64", "armv7emsp", "xtensawin"):
                out = Path(d) / (arch + ".mpy")
                subprocess.run(["mpy-cross", "-march=" + arch, "-o", str(out), str(src)], check=True)
                sizes.append(out.stat().st_size)
            rows.append((str(rel), src.stat().st_size, *sizes))
    return rows


def idle_heap(heap="512k"):
    with tempfile.TemporaryDirectory() as d:
        p = Peer()
        try:
            p.start_device(Path(d), heap=heap)
            p.accept_register()
            import time

            time.sleep(0.5)
        finally:
            out = p.stop_device()
            p.sock.close()
    m = re.search(r"registered \S+ heap_free=(\d+) heap_total=(\d+)", out)
    return int(m.group(2)), int(m.group(1))


def idle_heap_precompiled(profile="esp32"):
    with tempfile.TemporaryDirectory() as d:
        p = Peer()
        dev = EmulatedDevice("coap://127.0.0.1:%d" % p.port, "m", data_dir=Path(d), profile=profile)
        try:
            dev.start()
            p.accept_register()
            dev.wait_registered(10)
        finally:
            dev.stop(timeout=1)
            p.sock.close()
    line = next(x for x in dev.lines if x.startswith("registered"))
    m = re.search(r"heap_free=(\d+) heap_total=(\d+)", line)
    return int(m.group(2)), int(m.group(1))


def block1_highwater(heap="384k", precompiled=False):
    pkg, _, _ = package("ad", name="ad", n_vectors=20)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "ad.pkg"
        f.write_bytes(pkg)
        proc = unixport.run(script=Path(__file__).parent / "mpy" / "measure_block1.py",
                            args=(f, Path(d) / "flash", json.dumps(device_trust()["trust_anchors"])), heap=heap,
                            path=compiled_path() if precompiled else ())
    return proc.stdout.decode().strip()


if __name__ == "__main__":
    rows = mpy_sizes()
    print("| module | .py bytes | .mpy x64 | .mpy armv7emsp | .mpy xtensawin |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %d | %d | %d |" % r)
    print("| total | %d | %d | %d | %d |" % tuple(sum(r[i] for r in rows) for i in range(1, 5)))
    total, free = idle_heap()
    print("\nidle after registration (.py sources): heap %d, free %d, in use %d" % (total, free, total - free))
    total, free = idle_heap_precompiled()
    print("idle after registration (.mpy, esp32 profile): heap %d, free %d, in use %d" % (total, free, total - free))
    print("Block1 300 KB push (.py):", block1_highwater())
    print("Block1 300 KB push (.mpy):", block1_highwater(precompiled=True))
