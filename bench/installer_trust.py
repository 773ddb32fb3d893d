"""What the signed-manifest check adds to the MicroPython installer (docs/manifest.md, "Wiring"), on the unix port,
with the device code precompiled to .mpy as it is deployed:

    python -m bench installer_trust

- time: finish() of a signed KWS package (33 KB blob, 2 golden vectors: hashing, envelope verification, blob
  validation), best of N; the signed-manifest check alone (tinyml.trust.check: import, ECDSA, manifest, admit) in
  the same VM; peer: hashlib SHA-256 of the whole package.
- heap: the least free heap in which the check still succeeds, with the verifier's code already loaded (a board
  with it frozen in flash) and without (the unix port, or .mpy files on a board's filesystem, where the import
  itself takes heap); the heap the installer keeps after its first check (interned names); and the least free
  heap in which a whole finish() succeeds.
"""

import json
import tempfile
from pathlib import Path

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import compiled_path
from tinymlaas.package import build_package
from tinymlaas.paths import mlperf_model
from tinymlaas.signing.store import KeyStore

RUNS = 10

SETUP = """import gc, time, hashlib, json
import tinyml.installer as I
from tinyml.trust import Trust
import tinyml.blob, tinyml.source, tinyml.model
PKG = %r
TRUST = Trust.from_config(json.loads(%r))
f = open(PKG, 'rb'); DATA = f.read(); f.close()
N = len(DATA)
ENV = DATA[32:32 + int.from_bytes(DATA[28:32], 'little')]
inst = I.Installer(%r, trust=TRUST)
def download():
    inst.begin(N)
    inst.write(0, DATA)
"""

TIMES = """from tinyml import trust as T
best = best_check = best_sha = 1 << 30
for _ in range(%d):
    download()
    t = time.ticks_us(); inst.finish(); best = min(best, time.ticks_diff(time.ticks_us(), t))
    t = time.ticks_us(); T.check(ENV, TRUST, None); best_check = min(best_check, time.ticks_diff(time.ticks_us(), t))
    t = time.ticks_us(); hashlib.sha256(DATA).digest(); best_sha = min(best_sha, time.ticks_diff(time.ticks_us(), t))
gc.collect(); a0 = gc.mem_alloc()
import sys
sys.modules.pop('tinyml.cose', None); sys.modules.pop('tinyml.p256', None)
gc.collect(); a1 = gc.mem_alloc()
T.check(ENV, TRUST, None)
gc.collect(); kept = gc.mem_alloc() - a1
print(best, best_check, best_sha, kept)
"""

# fill the heap to leave about `free` bytes, then run `what`: the least `free` that succeeds is what it needs
SQUEEZE = """hold = [None] * 2048  # sized first: a growing list would leave its old arrays as garbage
i = 0
gc.collect()
while gc.mem_free() > %d + 2048:
    hold[i] = bytearray(1024)
    i += 1
gc.collect()
if gc.mem_free() > %d + 64:
    hold[i] = bytearray(gc.mem_free() - %d - 64)
gc.collect()
free = gc.mem_free()
%s
print(free)
"""


def least_heap(setup, what, path, lo=0, hi=96 * 1024):
    found = None
    while hi - lo > 64:
        mid = (lo + hi) // 2
        proc = unixport.run(code=setup + SQUEEZE % (mid, mid, mid, what), heap="1m", check=False, path=path)
        if proc.returncode == 0:
            hi, found = mid, int(proc.stdout.split()[-1])
        else:
            lo = mid
    return found


def measure(work):
    from tinymlaas.compiler import compile_tflite
    from tinymlaas.service.core import reference_vectors

    keys = KeyStore(work / "keys")
    blob = bytes(compile_tflite(mlperf_model("kws")).blob)
    pkg = build_package(blob, "kws", "1", reference_vectors(blob, count=2), signer=keys.signer(), sequence=1)
    (work / "kws.pkg").write_bytes(pkg)
    path = compiled_path()
    setup = SETUP % (str(work / "kws.pkg"), json.dumps({"trust_anchors": keys.anchor_config()}), str(work / "flash"))
    best, check, sha, kept = map(int, unixport.run(code=setup + TIMES % RUNS, heap="4m", path=path).stdout.split())
    frozen = setup + "import tinyml.cose\nfrom tinyml import trust as T\n"
    loads = setup + "import sys\nfrom tinyml import trust as T\n"
    return {
        "package_bytes": len(pkg), "finish_ms": best / 1e3, "check_ms": check / 1e3, "sha256_package_ms": sha / 1e3,
        "check_heap_verifier_loaded": least_heap(frozen, "T.check(ENV, TRUST, None)", path),
        "check_heap_with_import": least_heap(loads, "T.check(ENV, TRUST, None)", path),
        "kept_after_first_check": kept,
        "finish_heap_verifier_loaded": least_heap(frozen, "download(); inst.finish()", path),
    }


def table(r):
    rows = [("signed KWS package, bytes", "{:,}".format(r["package_bytes"])),
            ("finish(): hash, verify, validate the blob (best of %d)" % RUNS, "%.1f ms" % r["finish_ms"]),
            ("of which the signed-manifest check (trust.check)", "%.1f ms" % r["check_ms"]),
            ("peer: hashlib SHA-256 of the whole package", "%.1f ms" % r["sha256_package_ms"]),
            ("least free heap for the check, verifier code loaded (frozen)",
             "{:,} B".format(r["check_heap_verifier_loaded"])),
            ("least free heap for the check, importing the .mpy verifier",
             "{:,} B".format(r["check_heap_with_import"])),
            ("heap kept after the first check (interned names)", "{:,} B".format(r["kept_after_first_check"])),
            ("least free heap for a whole finish(), verifier loaded", "{:,} B".format(r["finish_heap_verifier_loaded"]))]
    return "\n".join("| %s | %s |" % row for row in rows)


def main(argv):
    with tempfile.TemporaryDirectory(prefix="bench-installer-trust-") as d:
        r = measure(Path(d))
    print(json.dumps(r, indent=1))
    print(table(r))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
