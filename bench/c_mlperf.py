"""C runtime on the MLPerf Tiny models: Cortex-M4 instructions per inference (QEMU -icount, exact), modelled
cycles (tinymlaas.verify.m4cycles: the TRM's timings on a block profile of the same inference), MAC per instruction
and per cycle, projected latency at 120 MHz beside the published STM32L4R5 results, per model and per layer, and
host latency against TFLite Micro on this machine.

    python -m bench c_mlperf            all models, DSP kernels
    python bench/c_mlperf.py --portable kws ic   also the portable-C kernels on the M4, for comparison
    python bench/c_mlperf.py --by-function kws   also the second inference's modelled cycles per function

Cycles and instructions are a second inference's (the first widens CONV_2D weights into the arena beyond
arena_bytes and keeps them: its cycles and the bytes kept are in the table too).
Projection: ms = modelled cycles / 120e3 (taken-branch refill P = 2; cycles_p1 / cycles_p3 bound it), all memory
zero-wait (code and weights in flash count as ART hits). The MLPerf anchors are measured wall-clock latencies with
the weights in flash.
"""

import argparse
import json
import time

# Published latency, STM32L4R5 @ 120 MHz, ms (/work/shared/ANCHORS.md, mlcommons tiny_results v0.5-v1.3);
# "X-CUBE-AI" is 10.2's (v1.3, the best on this board), 9.0's beside it
PUBLISHED = {
    "kws": {"TFLM+CMSIS-NN": 181.9, "microTVM": 99.8, "X-CUBE-AI": 43.4, "X-CUBE-AI 9.0": 43.2, "Plumerai": 47.8},
    "vww": {"TFLM+CMSIS-NN": 600.6, "microTVM": 301.2, "X-CUBE-AI": 89.4, "X-CUBE-AI 9.0": 88.9, "Plumerai": 98.8},
    "ic": {"TFLM+CMSIS-NN": 704.2, "microTVM": 389.6, "X-CUBE-AI": 166, "X-CUBE-AI 9.0": 165.1, "Plumerai": 167.8},
    "ad": {"TFLM+CMSIS-NN": 10.05, "microTVM": 8.6, "X-CUBE-AI": 4.79, "X-CUBE-AI 9.0": 5.3, "Plumerai": 4.1},
}
MODELS = ["kws", "vww", "ic", "ad", "sww"]


def host_latency(blob, tflite_bytes, inputs, repeat=40):
    """Best wall-clock seconds of one inference of the host C library and of TFLite Micro, their invokes
    interleaved (C, TFLM, C, TFLM, ...) so that a load change on this shared machine hits both alike; the best of
    `repeat` is the figure least touched by what else runs."""
    from tflite_micro.python.tflite_micro import runtime

    from tinymlaas.devices.cruntime import Model

    m = Model(blob)
    m.invoke(inputs)
    interp = runtime.Interpreter.from_bytes(bytes(tflite_bytes))
    for k, x in enumerate(inputs):
        interp.set_input(x, k)
    interp.invoke()
    c_times, tflm_times = [], []
    for _ in range(repeat):
        c_times.append(m.time_again())
        t0 = time.perf_counter()
        interp.invoke()
        tflm_times.append(time.perf_counter() - t0)
    return min(c_times), min(tflm_times)


def device_run(blob, inputs, kernels="dsp", board="mps2-an386"):
    """Exact instructions of the first and of a second inference (the M4's CONV_2D widens its weights into the
    arena beyond arena_bytes during the first and keeps them), install time, and the bytes kept so."""
    from tinymlaas.devices.qemu import QemuDevice, _blob_io, encode_inputs

    ins, _ = _blob_io(blob)
    with QemuDevice(board, kernels=kernels) as dev:
        t0 = time.perf_counter()
        dev.link.install(blob)
        install_s = time.perf_counter() - t0
        _, first = dev.link.infer(encode_inputs(ins, inputs))
        _, cycles = dev.link.infer(encode_inputs(ins, inputs))
        return dev.instructions(first), dev.instructions(cycles), install_s, scratch_used(dev)


def scratch_used(dev):
    """The firmware's active model's scratch_used (tml_model's 7th word: blob, blob_len, arena, arena_bytes,
    scratch, scratch_bytes, scratch_used), read through QEMU's monitor."""
    import re
    import socket
    import subprocess

    sym = subprocess.run(["arm-none-eabi-nm", str(dev.elf)], capture_output=True, text=True, check=True).stdout
    addr = int(re.search(r"^([0-9a-f]{8}) [bd] active$", sym, re.M).group(1), 16) + 24
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect("%s/monitor.sock" % dev._monitor_dir)
        s.sendall(b"xp /1wx 0x%x\n" % addr)
        buf, pat = b"", re.compile(rb"%08x: (0x[0-9a-f]+)" % addr)
        while not pat.search(buf):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("QEMU's monitor closed before answering xp")
            buf += chunk
    return int(pat.search(buf).group(1), 16)


def by_function(counter, dis, region=1):
    """{function: [modelled cycles, calls]} of one region of a BlockCounter (P = 2), most cycles first."""
    from tinymlaas.verify.m4cycles import Profile, block_cost

    profiles, calls = {}, {}
    for per in counter.regions[region][1].values():
        for pc, (runs, taken) in per.items():
            cost = block_cost(dis, counter.blocks[pc])
            f = dis.function_at(pc)
            profiles.setdefault(f, Profile()).add(cost, runs, taken if cost.ends_in_branch else 0)
            if dis.symbols.get(f) == pc:  # a run of the function's first block: a call
                calls[f] = calls.get(f, 0) + runs
    rows = {f: [prof.cycles(), calls.get(f, 0)] for f, prof in profiles.items()}
    return dict(sorted(rows.items(), key=lambda kv: -kv[1][0]))


def top_level(cm):
    """cm.layers as the firmware's profile hook sees them: a PATCH stage's ops run inside their PATCH op (one layer,
    which gets the stage's MACs)."""
    sizes = iter(len(p["ops"]) for p in cm.patches)
    out, stage = [], 0
    for info in cm.layers:
        if stage:
            out[-1] = dict(out[-1], macs=out[-1]["macs"] + info["macs"])
            stage -= 1
            continue
        out.append(info)
        if info["op"] == "PATCH":
            stage = next(sizes)
    return out


def cycle_profile(cm, inputs):
    """Modelled cycles of a first and a second inference (in total), per layer of the second (the layers of
    top_level(cm)) and per function of the second (m4trace.profile_inference, two runs)."""
    from tinymlaas.devices.qemu import build_firmware
    from tinymlaas.verify.m4trace import profile_inference

    elf = build_firmware("mps2-an386", "dsp")
    counter, _ = profile_inference(cm.blob, inputs, elf=elf, runs=2)
    dis = counter.dis
    first = counter.profiles(0)["total"].summary(cm.macs)
    profiles = counter.profiles(1)
    layers = []
    for k, info in enumerate(top_level(cm)):
        prof = profiles.get(k)
        if prof is None:
            continue
        layers.append({"index": k, "op": info["op"], "macs": info["macs"], "instructions": prof.instructions,
                       "cycles": prof.cycles(), "by_class": prof.by_class})
    return profiles["total"].summary(cm.macs), first["cycles"], layers, by_function(counter, dis)


def measure(key, portable=False):
    from tinymlaas.compiler import compile_tflite
    from tinymlaas.paths import mlperf_model
    from tinymlaas.verify.inputs import input_specs, random_inputs

    path = mlperf_model(key)
    data = path.read_bytes()
    cm = compile_tflite(path)
    inputs = random_inputs(input_specs(data), 1, seed=1)[0]
    row = {"model": key, "macs": cm.macs, "blob_bytes": len(cm.blob), "arena_bytes": cm.arena_bytes}
    row["instructions_first"], row["instructions"], row["install_s"], row["scratch_bytes"] = device_run(cm.blob, inputs)
    row["mac_per_instruction"] = cm.macs / row["instructions"]
    cyc, row["cycles_first"], row["layers"], row["functions"] = cycle_profile(cm, inputs)
    row["cycles"], row["cycles_p1"], row["cycles_p3"] = cyc["cycles"], cyc["cycles_p1"], cyc["cycles_p3"]
    row["cycles_by_class"] = cyc["cycles_by_class"]
    row["mac_per_cycle"] = cm.macs / row["cycles"]
    row["projected_ms_120mhz"] = row["cycles"] / 120e3
    if portable:
        _, row["instructions_portable"], _, _ = device_run(cm.blob, inputs, kernels="portable")
    c_s, tflm_s = host_latency(cm.blob, data, inputs)
    row["host_c_ms"], row["host_tflm_ms"], row["host_ratio"] = c_s * 1e3, tflm_s * 1e3, c_s / tflm_s
    return row


def layer_table(rows):
    """Per model, the modelled cycles grouped by op kind (every layer is in --json)."""
    out = ["| model | op | layers | MACs | instructions | cycles | MAC/instr | MAC/cycle | share of cycles |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        kinds = {}
        for la in r["layers"]:
            k = kinds.setdefault(la["op"], [0, 0, 0, 0])
            k[0] += 1
            k[1] += la["macs"]
            k[2] += la["instructions"]
            k[3] += la["cycles"]
        for op, (n, macs, ins, cyc) in sorted(kinds.items(), key=lambda kv: -kv[1][3]):
            out.append("| %s | %s | %d | {:,} | {:,} | {:,} | %.3f | %.3f | %.1f%% |".format(macs, ins, cyc) % (
                r["model"], op, n, macs / ins if ins else 0, macs / cyc if cyc else 0, 100.0 * cyc / r["cycles"]))
    return "\n".join(out)


def function_table(rows, top=12):
    """Per model, the functions with the most modelled cycles of the second inference."""
    out = ["| model | function | cycles | share | calls |", "|---|---|---|---|---|"]
    for r in rows:
        for f, (cyc, calls) in list(r["functions"].items())[:top]:
            out.append("| %s | `%s` | {:,} | %.1f%% | {:,} |".format(cyc, calls)
                       % (r["model"], f, 100.0 * cyc / r["cycles"]))
    return "\n".join(out)


def table(rows):
    out = ["| model | MACs | M4 instructions | MAC/instr | modelled cycles (P=1..3) | MAC/cycle | first inference "
           "cycles | scratch B | projected ms @120 MHz | TFLM+CMSIS-NN ms | X-CUBE-AI 10.2 ms | host C ms | host TFLM ms | "
           "C/TFLM |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub = PUBLISHED.get(r["model"], {})
        out.append("| %s | %s | %s | %.3f | %s (%s..%s) | %.3f | %s | %s | %.1f | %s | %s | %.3f | %.3f | %.2f |" % (
            r["model"], "{:,}".format(r["macs"]), "{:,}".format(r["instructions"]), r["mac_per_instruction"],
            "{:,}".format(r["cycles"]), "{:,}".format(r["cycles_p1"]), "{:,}".format(r["cycles_p3"]),
            r["mac_per_cycle"], "{:,}".format(r["cycles_first"]), "{:,}".format(r["scratch_bytes"]),
            r["projected_ms_120mhz"], pub.get("TFLM+CMSIS-NN", "-"), pub.get("X-CUBE-AI", "-"),
            r["host_c_ms"], r["host_tflm_ms"], r["host_ratio"]))
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
    ap.add_argument("--by-function", action="store_true", help="also the modelled cycles per function")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    rows = []
    for key in args.models:
        rows.append(measure(key, args.portable))
        print("%s: %s" % (key, json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                          for k, v in rows[-1].items() if k not in ("layers", "functions")})),
              flush=True)
    print()
    print(table(rows))
    print()
    print(layer_table(rows))
    if args.by_function:
        print()
        print(function_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
