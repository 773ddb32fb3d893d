"""Run the tinyml runtime on a 32-bit microcontroller: MicroPython's qemu port (Cortex-M3, mps2-an385) with
tinyml frozen into the firmware and the test blobs in a ROMFS image, checked against the host.

    python inference_module/tools/qemu_check.py MICROPYTHON_SRC [--skip-build]

MICROPYTHON_SRC is a MicroPython source tree (e.g. `git archive` of micropython/micropython); needs
gcc-arm-none-eabi and qemu-system-arm. What it checks, all on 32-bit viper words (requant's limb path):
  * SRDHM/MBQM device routines vs exact integers (edge cases + random),
  * every zoo.py op blob (in RAM and streamed from ROMFS) vs the host NumPy executor,
  * the MLPerf Tiny models streamed from ROMFS vs TensorFlow Lite Micro, with their on-target latency.
Not part of the pytest suite (it needs a MicroPython checkout); results are recorded in
docs/runtime-micropython.md.
"""

import argparse
import os
import random
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tinymlaas.blob import reference
from tinymlaas.paths import INFERENCE_MODULE, REPO, mlperf_model

ROMFS_ADDR = 0x21000000


def build(src, manifest):
    (src / "lib" / "micropython-lib").mkdir(parents=True, exist_ok=True)
    readme = src / "lib" / "micropython-lib" / "README.md"
    if not readme.exists():
        readme.write_text("not needed: the firmware freezes only tinyml\n")
    subprocess.run(["make", "-C", str(src / "mpy-cross"), "-j2"], check=True, capture_output=True)
    subprocess.run(["make", "-C", str(src / "ports" / "qemu"), "BOARD=MPS2_AN385", "-j2",
                    "FROZEN_MANIFEST=%s" % manifest], check=True, capture_output=True)
    return src / "ports" / "qemu" / "build-MPS2_AN385" / "firmware.elf"


def romfs_image(src, files):
    sys.path.insert(0, str(src / "tools" / "mpremote"))
    from mpremote.romfs import VfsRomWriter  # MicroPython's own ROMFS writer
    vfs = VfsRomWriter()
    for name, data in files.items():
        vfs.mkfile(name, data)
    return vfs.finalise()


def run_on_qemu(elf, image, code, timeout=900, qemu_args=()):
    """Execute `code` through the raw REPL; return its stdout (raises on a device-side exception). `qemu_args`:
    more options, e.g. `-icount shift=0` to make time.ticks_us() count emulated instructions (bench/signing_cost.py)."""
    with tempfile.NamedTemporaryFile(suffix=".img", delete=False) as f:
        f.write(image)
        img = f.name
    p = subprocess.Popen(["qemu-system-arm", "-machine", "mps2-an385", "-nographic", "-monitor", "null",
                          "-semihosting", "-kernel", str(elf), "-device",
                          "loader,file=%s,addr=0x%x,force-raw=on" % (img, ROMFS_ADDR)] + list(qemu_args),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def read_until(marker, limit):
        buf = b""
        end = time.time() + limit
        while time.time() < end:
            r, _, _ = select.select([p.stdout], [], [], 0.2)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                if marker in buf:
                    break
        return buf

    try:
        time.sleep(0.3)
        p.stdin.write(b"\r\x03\x03\x01")
        p.stdin.flush()
        read_until(b"CTRL-B to exit\r\n>", 30)
        data = code.encode()
        for i in range(0, len(data), 256):
            p.stdin.write(data[i:i + 256])
            p.stdin.flush()
            time.sleep(0.005)
        p.stdin.write(b"\x04")
        p.stdin.flush()
        out = read_until(b"\x04>", timeout).decode(errors="replace")
    finally:
        p.kill()
        os.unlink(img)
    body = out.split("OK", 1)[-1].split("\x04")
    if len(body) < 2:
        raise RuntimeError("no complete reply from the device:\n" + out[-2000:])
    if body[1].strip():
        raise RuntimeError("device error:\n" + body[0][-1000:] + body[1])
    return body[0]


def srdhm_exact(a, b):
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    n = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(n) >> 31
    return q if n >= 0 else -q


def mbqm_exact(x, m, s):
    v = srdhm_exact(x * (1 << max(s, 0)), m)
    e = max(-s, 0)
    mask = (1 << e) - 1
    return (v >> e) + (1 if (v & mask) > (mask >> 1) + (1 if v < 0 else 0) else 0)


def check_requant(elf, image):
    rng = random.Random(3)
    edge = [-(1 << 31), -(1 << 31) + 1, -65536, -32768, -1, 0, 1, 32767, 65535, (1 << 30), (1 << 31) - 1]
    mults = [0, 1, 0xFFFF, 1 << 30, 0x5A5A5A5A, (1 << 31) - 1]
    cases = [(a >> max(s, 0), m, s) for a in edge for m in mults for s in (-31, -9, -1, 0, 3)]
    cases += [(rng.randint(-(1 << 31), (1 << 31) - 1) >> 4, rng.randint(1 << 30, (1 << 31) - 1),
               rng.randint(-31, 3)) for _ in range(400)]
    out = run_on_qemu(elf, image, """
import array, sys, tinyml.requant as R
print('WIDE', R.WIDE, sys.maxsize)
res = []
for x, m, s in %r:
    b = array.array('i', [x])
    R.mbqm_vec(b, 1, m, s)
    res.append(b[0])
print('R', ' '.join(str(v) for v in res))
""" % cases)
    got = [int(v) for v in out.split("R ", 1)[1].split()]
    exact = [mbqm_exact(x, m, s) for x, m, s in cases]
    assert "WIDE False 2147483647" in out, out
    return sum(g == e for g, e in zip(got, exact)), len(cases)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--models", default="kws,sww,ad,ic,vww")
    args = ap.parse_args()
    manifest = Path(tempfile.mkdtemp()) / "manifest.py"
    manifest.write_text('package("tinyml", base_path=%r)\n' % str(INFERENCE_MODULE))
    elf = args.src / "ports" / "qemu" / "build-MPS2_AN385" / "firmware.elf"
    if not args.skip_build:
        elf = build(args.src, manifest)

    image = romfs_image(args.src, {"empty": b""})
    ok, n = check_requant(elf, image)
    print("requant on 32-bit words: %d/%d exact" % (ok, n))

    sys.path.insert(0, str(REPO / "tests" / "device"))
    import zoo
    rng = np.random.default_rng(9)
    files, names = {}, []
    for name, b in zoo.all_cases(1):
        blob = b.build()
        ins = []
        for t in b.inputs:
            dtype, shape = b.tensors[t][0], b.tensors[t][1]
            if dtype == 5:
                ins.append(rng.uniform(-7, 7, size=shape).astype(np.float32))
            else:
                ins.append(rng.integers(-128, 128, size=shape, dtype=np.int8))
        files[name + ".blob"] = blob
        for i, v in enumerate(ins):
            files["%s.in%d" % (name, i)] = v.tobytes()
        for j, o in enumerate(reference.run(blob, ins)):
            files["%s.out%d" % (name, j)] = o.tobytes()
        names.append(name)
    image = romfs_image(args.src, files)
    # Inputs and expected outputs live in ROMFS: the device reads them into the arena and compares in place.
    out = run_on_qemu(elf, image, """
import tinyml, gc
def same(path, view):
    f = open(path, 'rb'); ok = f.read() == bytes(view); f.close()
    return ok
for name in %r:
    for mode in ('rom', 'ram'):
        path = '/rom/' + name + '.blob'
        if mode == 'rom':
            m = tinyml.load(path)
        else:
            f = open(path, 'rb'); m = tinyml.load(f.read()); f.close()
        for i in range(len(m.inputs)):
            f = open('/rom/%%s.in%%d' %% (name, i), 'rb'); f.readinto(m.input_buffer(i)); f.close()
        m.invoke()
        ok = all(same('/rom/%%s.out%%d' %% (name, j), m.output_buffer(j)) for j in range(len(m.outputs)))
        print(name, mode, 'EXACT' if ok else 'MISMATCH')
        m.close()
        m = None
        gc.collect()
""" % names)
    good = out.count(" EXACT")
    for line in out.splitlines():
        if "MISMATCH" in line:
            print(line)
    cases = names
    print("op zoo on 32-bit words: %d/%d runs bit-exact with the host reference" % (good, 2 * len(cases)))

    from tflite_micro.python.tflite_micro import runtime
    for key in args.models.split(","):
        path = mlperf_model(key)
        blob = Path(tempfile.mkdtemp()) / (key + ".blob")
        subprocess.run(["tinymlaas", "compile", str(path), "-o", str(blob)], check=True, capture_output=True)
        it = runtime.Interpreter.from_file(str(path))
        shape = it.get_input_details(0)["shape"]
        x = np.random.default_rng(1).integers(-128, 128, size=shape, dtype=np.int8)
        it.set_input(x, 0)
        it.invoke()
        y = it.get_output(0)
        image = romfs_image(args.src, {"m.blob": blob.read_bytes(), "x.bin": x.tobytes(), "y.bin": y.tobytes()})
        out = run_on_qemu(elf, image, """
import tinyml, gc
gc.collect()
free0 = gc.mem_free()
m = tinyml.load('/rom/m.blob')
gc.collect()
used = free0 - gc.mem_free()
f = open('/rom/x.bin', 'rb'); f.readinto(m.input_buffer(0)); f.close()
m.invoke()
f = open('/rom/y.bin', 'rb'); exact = f.read() == bytes(m.output_buffer(0)); f.close()
print('RESULT', exact, used, m.arena_bytes, m.last_us, free0)
""")
        r = out.split("RESULT", 1)[1].split()
        print("%s on Cortex-M3 (qemu): bit-exact %s, load() took %s B of heap (arena %s) of %s B free, %s us "
              "(emulated, not real-time)" % (key, r[0], r[1], r[2], r[4], r[3]))


if __name__ == "__main__":
    main()
