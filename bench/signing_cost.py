"""Cost of verifying a signed manifest (docs/manifest.md) on each device kind, beside peers in the same run.

    python -m bench signing_cost

- C on the Cortex-M4 (mps2-an386 under QEMU, -icount shift=0: exact instructions) for ECDSA P-256 verification of
  a message and for the whole COSE_Sign1 envelope (parse, Sig_structure SHA-256, ECDSA, manifest), the deepest
  stack of each (painted stack), and the verifier's code size (arm-none-eabi-size, -O2 as the firmware builds and
  -Os); peer: the firmware's own SHA-256 of a 33 KB blob (the KWS model) is ~0.5 M instructions.
- The bare-metal firmware's COMMIT checks (docs/firmware.md, "Signed installs") on both boards under QEMU, as its
  COMMIT reply reports them: instructions (min-max over boards and blobs) and stack.
- MicroPython unix port: ms per envelope verification (best of N) and the transient heap it needs (the least free
  heap, after the modules and inputs are loaded, in which it still verifies); peer: hashlib's SHA-256 of the same
  33 KB in the same VM.
- Host: the C verifier (-O2) and `cryptography` (OpenSSL) on the same envelope.
- MicroPython on a 32-bit microcontroller, with `--mpy-qemu ELF` (a MicroPython qemu-port firmware for mps2-an385,
  Cortex-M3, as inference_module/tools/qemu_check.py builds it): emulated instructions of one ECDSA verification
  (time.ticks_us() under -icount shift=0 counts 1,000 instructions per tick).
- ESP32 estimate: those Cortex-M3 instructions at 240 MHz and one instruction per cycle; without --mpy-qemu, the
  unix-port time scaled by how much slower the same C code is on such a core than on this host (MicroPython's big
  ints are C code too). A stated ratio, not a measurement: no board is attached.

    python bench/signing_cost.py --mpy-qemu /path/to/micropython/ports/qemu/build-MPS2_AN385/firmware.elf
"""

import json
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tinymlaas.devices import cruntime, unixport
from tinymlaas.devices.qemu import BOARDS, _lock, qemu_binary
from tinymlaas.paths import FIRMWARE, REPO, mlperf_model
from tinymlaas.signing import cose as host_cose
from tinymlaas.signing import manifest as M
from tinymlaas.signing.keys import FileSigner

BLOB_BYTES = 33328  # the KWS blob's size, as the peer SHA-256 workload
ESP32_HZ = 240e6
RUNS = 20


def signer():
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ec

    d = int.from_bytes(hashlib.sha256(b"bench signing_cost").digest()[:31], "big")  # 248 bits: below n
    return FileSigner(ec.derive_private_key(d, ec.SECP256R1()))


def envelope(key):
    vendor = M.vendor_id("tinymlaas.example")
    m = M.Manifest(sequence=7, vendor_id=vendor, class_id=M.class_id(vendor, "esp32-wroom-32"), component="model",
                   blob_sha256=bytes(range(32)), blob_bytes=BLOB_BYTES, name="kws", version="1.0",
                   vectors_sha256=bytes(32))
    return host_cose.sign_manifest(m, key)


def m4(key, env, msg):
    """Instructions, stack and code size on the Cortex-M4 (tests/c/tml_sig_run.c's `bench` command)."""
    with _lock(REPO / "build" / "firmware" / ".lock"):
        subprocess.run(["make", "-s", "-C", str(FIRMWARE), "BOARD=mps2-an386", "sig"], check=True,
                       capture_output=True)
    elf = REPO / "build" / "firmware" / "mps2-an386" / "tml_sig_run.elf"
    with tempfile.TemporaryDirectory() as d:
        Path(d, "tml_sig_input.txt").write_text("anchor %s\nbench %s %s %s %s\n" % (
            (key.key_id + key.public_point).hex(), key.public_point.hex(), msg.hex(), key.sign(msg).hex(), env.hex()))
        out = subprocess.run([qemu_binary(), "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null",
                              "-icount", "shift=0,align=off,sleep=off", "-semihosting", "-kernel", str(elf)],
                             cwd=d, capture_output=True, text=True, timeout=300).stdout
    line = next(x for x in out.splitlines() if x.startswith("bench "))
    fields = dict(kv.split("=") for kv in line.split()[1:])
    per_tick = 1e9 / BOARDS["mps2-an386"].qemu_systick_hz  # instructions per SysTick cycle under -icount shift=0
    row = {"m4_verify_instructions": round(int(fields["verify_cycles"]) * per_tick),
           "m4_envelope_instructions": round(int(fields["cose_cycles"]) * per_tick),
           "m4_verify_stack_bytes": int(fields["verify_stack"]), "m4_envelope_stack_bytes": int(fields["cose_stack"])}
    for opt in ("-O2", "-Os"):
        sizes = {}
        for src in ("tml_p256.c", "tml_cose.c"):
            obj = Path(tempfile.gettempdir()) / ("sig_size_%s%s.o" % (src, opt))
            subprocess.run(["arm-none-eabi-gcc", "-std=c99", opt, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                            "-mfpu=fpv4-sp-d16", "-ffunction-sections", "-I", str(cruntime.SOURCE), "-c",
                            str(cruntime.SOURCE / src), "-o", str(obj)], check=True)
            text = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True,
                                  check=True).stdout.splitlines()[1].split()
            sizes[src] = int(text[0]) + int(text[1])
            obj.unlink()
        row["code_bytes" + opt] = sizes
    return row


def firmware_commit():
    """The bare-metal firmware's COMMIT checks (docs/firmware.md, "Signed installs") on both boards under QEMU: a
    signed install of a small blob and of KWS's; COMMIT's reply gives SysTick cycles and the painted stack."""
    from tinymlaas.devices.qemu import QemuDevice

    blobs = [(REPO / "tests" / "vectors" / "conv_same_stride2.blob").read_bytes()]
    if mlperf_model("kws").exists():
        from tinymlaas.compiler import compile_tflite

        blobs.append(compile_tflite(str(mlperf_model("kws"))).blob)
    counts, stacks = [], []
    for board in BOARDS:
        for blob in blobs:
            with QemuDevice(board) as dev:
                words = dict(w.partition("=")[::2] for w in dev.link.install(blob).split()[1:])
            counts.append(dev.instructions(int(words["verify_cycles"])))
            stacks.append(int(words["verify_stack"]))
    return {"fw_commit_instructions_min": min(counts), "fw_commit_instructions_max": max(counts),
            "fw_commit_stack_bytes": max(stacks)}


MPY_SETUP = """import gc, time, hashlib
from tinyml import cose, p256
env = %r
anchors = {%r: %r}
blob = bytes(%d)
gc.collect()
"""
MPY_TIMES = """best = best_sha = 1 << 30
for _ in range(%d):
    t = time.ticks_us(); m = cose.verify(env, anchors); best = min(best, time.ticks_diff(time.ticks_us(), t))
    t = time.ticks_us(); hashlib.sha256(blob).digest(); best_sha = min(best_sha, time.ticks_diff(time.ticks_us(), t))
gc.collect(); gc.disable(); a0 = gc.mem_alloc(); cose.verify(env, anchors); allocated = gc.mem_alloc() - a0
print(best, best_sha, allocated)
"""


# Leaves about `free` bytes of heap (filled with 1 KB blocks and one exact piece), then verifies: the smallest free
# heap at which the verification still succeeds is its transient heap, whatever the imports needed before.
MPY_SQUEEZE = """hold = []
while gc.mem_free() > %d + 2048:
    hold.append(bytearray(1024))
if gc.mem_free() > %d + 64:
    hold.append(bytearray(gc.mem_free() - %d - 64))
gc.collect()
free = gc.mem_free()
cose.verify(env, anchors)
print(free)
"""


def transient_heap(setup, lo=0, hi=64 * 1024):
    """Smallest free heap (bytes, 64-byte steps) in which a verification succeeds (more never hurts)."""
    found = None
    while hi - lo > 64:
        mid = (lo + hi) // 2
        proc = unixport.run(code=setup + MPY_SQUEEZE % (mid, mid, mid), heap="512k", check=False)
        if proc.returncode == 0:
            hi, found = mid, int(proc.stdout.split()[-1])
        else:
            lo = mid
    return found


def micropython(key, env):
    setup = MPY_SETUP % (env, key.key_id, key.public_point, BLOB_BYTES)
    best, best_sha, allocated = map(int, unixport.run(code=setup + MPY_TIMES % RUNS, heap="16m").stdout.split())
    return {"mpy_verify_ms": best / 1e3, "mpy_sha256_33k_ms": best_sha / 1e3,
            "mpy_transient_heap_bytes": transient_heap(setup), "mpy_allocated_per_verify_gc_off": allocated}


def micropython_cortex_m3(elf, key, msg):
    """Emulated instructions of tinyml/p256.py's verify in MicroPython on a Cortex-M3 (best of 3)."""
    import hashlib
    import sys

    sys.path.insert(0, str(REPO / "inference_module" / "tools"))
    import qemu_check

    code = (REPO / "inference_module" / "tinyml" / "p256.py").read_text() + """
import time
best = 1 << 30
for _ in range(3):
    t = time.ticks_us(); ok = verify(%r, %r, %r); best = min(best, time.ticks_diff(time.ticks_us(), t))
print("VERIFY", ok, best)
""" % (key.public_point, hashlib.sha256(msg).digest(), key.sign(msg))
    out = qemu_check.run_on_qemu(elf, bytes(64), code, timeout=600, qemu_args=["-icount", "shift=0,align=off,sleep=off"])
    ok, ticks = next(line.split()[1:] for line in out.splitlines() if line.startswith("VERIFY"))
    assert ok == "0", out
    return {"mpy_m3_verify_instructions": int(ticks) * 1000}


def child_cpu_seconds(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def host(key, env, n=2000):
    anchors = {key.key_id: key.public_point}
    times = []
    for _ in range(400):
        t0 = time.process_time()
        host_cose.verify_manifest(env, anchors)
        times.append(time.process_time() - t0)
    exe = str(cruntime.build(cruntime.BUILD / "tml_sig_run"))
    anchor = "anchor " + (key.key_id + key.public_point).hex() + "\n"
    with tempfile.TemporaryDirectory() as d:
        only_anchor, many = Path(d, "anchor.txt"), Path(d, "many.txt")
        only_anchor.write_text(anchor)
        many.write_text(anchor + ("cose " + env.hex() + "\n") * n)
        # CPU time of the child (the machine is shared), start-up measured on its own and subtracted
        startup = min(child_cpu_seconds([exe, str(only_anchor)]) for _ in range(3))
        run = min(child_cpu_seconds([exe, str(many)]) for _ in range(3))
    return {"host_openssl_ms": statistics.median(times) * 1e3, "host_c_ms": (run - startup) / n * 1e3}


def table(r):
    esp32_ratio = (r["m4_envelope_instructions"] / ESP32_HZ) / (r["host_c_ms"] / 1e3)
    rows = [
        ("Cortex-M4 instructions, ECDSA verify (target <= 10 M)", "{:,}".format(r["m4_verify_instructions"])),
        ("Cortex-M4 instructions, whole envelope", "{:,}".format(r["m4_envelope_instructions"])),
        ("Cortex-M4 stack, whole envelope, bytes (target <= 4 KB; no heap, no static RAM)",
         "{:,}".format(r["m4_envelope_stack_bytes"])),
        ("firmware COMMIT's checks, Cortex-M4 instructions (both boards, 1 KB and 33 KB blobs)", "{:,}-{:,}".format(
            r["fw_commit_instructions_min"], r["fw_commit_instructions_max"])),
        ("firmware COMMIT's checks, stack below do_commit, bytes", "{:,}".format(r["fw_commit_stack_bytes"])),
        ("code bytes -O2 (tml_p256 + tml_cose)", "%d + %d" % tuple(r["code_bytes-O2"].values())),
        ("code bytes -Os (tml_p256 + tml_cose)", "%d + %d" % tuple(r["code_bytes-Os"].values())),
        ("MicroPython unix port, envelope ms (best of %d)" % RUNS, "%.2f" % r["mpy_verify_ms"]),
        ("  peer: hashlib SHA-256 of %d bytes, ms" % BLOB_BYTES, "%.3f (%.0fx)" % (
            r["mpy_sha256_33k_ms"], r["mpy_verify_ms"] / r["mpy_sha256_33k_ms"])),
        ("MicroPython transient heap, bytes (target <= 16 KB)", "{:,}".format(r["mpy_transient_heap_bytes"])),
        ("MicroPython bytes allocated per verify with GC off", "{:,}".format(r["mpy_allocated_per_verify_gc_off"])),
        ("host C -O2, envelope ms", "%.3f" % r["host_c_ms"]),
        ("host cryptography (OpenSSL), envelope ms", "%.3f (C/OpenSSL %.1fx)" % (
            r["host_openssl_ms"], r["host_c_ms"] / r["host_openssl_ms"])),
    ]
    if "mpy_m3_verify_instructions" in r:
        rows += [("MicroPython on Cortex-M3 (QEMU), instructions per ECDSA verify",
                  "{:,}".format(r["mpy_m3_verify_instructions"])),
                 ("ESP32 estimate, ms (target <= 1000): Cortex-M3 instructions at 240 MHz, 1 per cycle",
                  "%.0f" % (r["mpy_m3_verify_instructions"] / ESP32_HZ * 1e3))]
    rows.append(("ESP32 estimate, ms (target <= 1000): unix ms x %.0f (host C vs M4 instructions at 240 MHz)"
                 % esp32_ratio, "%.0f" % (r["mpy_verify_ms"] * esp32_ratio)))
    return "\n".join(["| measure | value |", "|---|---|"] + ["| %s | %s |" % row for row in rows])


def main(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="bench/signing_cost.py")
    ap.add_argument("--mpy-qemu", metavar="ELF", help="MicroPython qemu-port firmware (mps2-an385) to measure on")
    args = ap.parse_args(argv)
    key = signer()
    env = envelope(key)
    row = {}
    row.update(m4(key, env, b"signed model manifest"))
    row.update(firmware_commit())
    if args.mpy_qemu:
        row.update(micropython_cortex_m3(args.mpy_qemu, key, b"signed model manifest"))
    row.update(micropython(key, env))
    row.update(host(key, env))
    print(json.dumps(row))
    print()
    print(table(row))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
