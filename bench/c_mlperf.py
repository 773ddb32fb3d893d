"""C runtime on the MLPerf Tiny models: Cortex-M4 instructions per inference (QEMU -icount, exact), MAC per
instruction, projected latency at 120 MHz beside the published STM32L4R5 results, and host latency against TFLite
Micro on this machine.

    python -m bench c_mlperf            all models, DSP kernels
    python bench/c_mlperf.py --portable kws ic   also the portable-C kernels on the M4, for comparison

Projection: ms = instructions / 120e3, i.e. one instruction per cycle. Cortex-M4 loads take 2 cycles and SMLAD 1,
so real cycles are higher; the MLPerf anchors are measured wall-clock latencies.
"""

import argparse
import json
import statistics
import time

import numpy as np

# Published latency, STM32L4R5 @ 120 MHz, ms (/work/shared/ANCHORS.md, mlcommons tiny_results v0.5-v1.3)
PUBLISHED = {
    "kws": {"TFLM+CMSIS-NN": 181.9, "microTVM": 99.8, "X-CUBE-AI": 43.2, "Plumerai": 47.8},
    "vww": {"TFLM+CMSIS-NN": 600.6, "microTVM": 301.2, "X-CUBE-AI": 88.9, "Plumerai": 98.8},
    "ic": {"TFLM+CMSIS-NN": 704.2, "microTVM": 389.6, "X-CUBE-AI": 165.1, "Plumerai": 167.8},
    "ad": {"TFLM+CMSIS-NN": 10.05, "microTVM": 8.6, "X-CUBE-AI": 5.3, "Plumerai": 4.1},
}
MODELS = ["kws", "vww", "ic", "ad", "sww"]


def host_latency(blob, tflite_bytes, inputs, repeat=20):
    from tflite_micro.python.tflite_micro import runtime

    from tinymlaas.devices.cruntime import Model

    m = Model(blob)
    c_s = m.time_invoke(inputs, repeat)
    interp = runtime.Interpreter.from_bytes(bytes(tflite_bytes))
    for k, x in enumerate(inputs):
        interp.set_input(x, k)
    interp.invoke()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
    return c_s, statistics.median(times)


def device_run(blob, inputs, kernels="dsp", board="mps2-an386"):
    from tinymlaas.devices.qemu import QemuDevice, _blob_io, encode_inputs

    ins, _ = _blob_io(blob)
    with QemuDevice(board, kernels=kernels) as dev:
        t0 = time.perf_counter()
        dev.link.install(blob)
        install_s = time.perf_counter() - t0
        _, cycles = dev.link.infer(encode_inputs(ins, inputs))
        return dev.instructions(cycles), install_s


def measure(key, portable=False):
    from tinymlaas.compiler import compile_tflite
    from tinymlaas.paths import mlperf_model
    from tinymlaas.verify.inputs import input_specs, random_inputs

    path = mlperf_model(key)
    data = path.read_bytes()
    cm = compile_tflite(path)
    inputs = random_inputs(input_specs(data), 1, seed=1)[0]
    row = {"model": key, "macs": cm.macs, "blob_bytes": len(cm.blob), "arena_bytes": cm.arena_bytes}
    row["instructions"], row["install_s"] = device_run(cm.blob, inputs)
    row["mac_per_instruction"] = cm.macs / row["instructions"]
    row["projected_ms_120mhz"] = row["instructions"] / 120e3
    if portable:
        row["instructions_portable"], _ = device_run(cm.blob, inputs, kernels="portable")
    c_s, tflm_s = host_latency(cm.blob, data, inputs)
    row["host_c_ms"], row["host_tflm_ms"], row["host_ratio"] = c_s * 1e3, tflm_s * 1e3, c_s / tflm_s
    return row


def table(rows):
    out = ["| model | MACs | M4 instructions | MAC/instr | projected ms @120 MHz | TFLM+CMSIS-NN ms | "
           "X-CUBE-AI ms | host C ms | host TFLM ms | C/TFLM |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = PUBLISHED.get(r["model"], {})
        out.append("| %s | %s | %s | %.3f | %.1f | %s | %s | %.3f | %.3f | %.2f |" % (
            r["model"], "{:,}".format(r["macs"]), "{:,}".format(r["instructions"]), r["mac_per_instruction"],
            r["projected_ms_120mhz"], pub.get("TFLM+CMSIS-NN", "-"), pub.get("X-CUBE-AI", "-"), r["host_c_ms"],
            r["host_tflm_ms"], r["host_ratio"]))
    if any("instructions_portable" in r for r in rows):
        out += ["", "| model | M4 instructions, portable C kernels | DSP kernels | speed-up |", "|---|---|---|---|"]
        for r in rows:
            if "instructions_portable" in r:
                out.append("| %s | {:,} | {:,} | %.2fx |".format(r["instructions_portable"], r["instructions"])
                           % (r["model"], r["instructions_portable"] / r["instructions"]))
    return "\n".join(out)


def main(argv):
    ap = argparse.ArgumentParser(prog="bench/c_mlperf.py")
    ap.add_argument("models", nargs="*", default=MODELS)
    ap.add_argument("--portable", action="store_true", help="also measure the portable-C kernels on the M4")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    rows = []
    for key in args.models:
        rows.append(measure(key, args.portable))
        print("%s: %s" % (key, json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                          for k, v in rows[-1].items()})), flush=True)
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
