"""`tinymlaas emulate`: boot the bare-metal firmware in an emulator and, optionally, install a model and run it.

    tinymlaas emulate --board mps2-an386                      boot, print the device's capabilities
    tinymlaas emulate --board stm32f4 kws_ref_model.tflite    compile, install over the UART, run, compare with TFLM
    tinymlaas emulate --backend renode --board stm32f4 m.tmlb  the same under Renode (when `renode` is installed)
"""

import json
import sys
from pathlib import Path


def register(subparsers):
    p = subparsers.add_parser("emulate", help="run the Cortex-M4 firmware in QEMU or Renode",
                              description="Boot the tinymlaas bare-metal firmware in an emulator, talk to it over its "
                              "emulated UART, optionally install a model (.tflite is compiled first) and run it on "
                              "seeded inputs; a .tflite model is also run by TFLite Micro and the outputs compared.")
    p.add_argument("model", nargs="?", help="a .tflite model or a compiled blob (optional)")
    p.add_argument("--backend", choices=["qemu", "renode"], default="qemu")
    p.add_argument("--board", choices=["mps2-an386", "stm32f4"], default="mps2-an386")
    p.add_argument("--count", type=int, default=1, help="input sets to run (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernels", choices=["dsp", "portable"], default="dsp",
                   help="firmware kernel set (QEMU only): Cortex-M DSP (default) or portable C")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _device(args):
    from ..cli import UserError

    if args.backend == "renode":
        from ..devices.renode import RenodeDevice, RenodeUnavailable

        if args.board != "stm32f4":
            raise UserError("Renode runs the stm32f4 board (stm32f4_discovery); use --backend qemu for %s"
                            % args.board)
        try:
            return RenodeDevice()
        except RenodeUnavailable as e:
            raise UserError(str(e)) from None
    from ..devices.qemu import QemuDevice, QemuError

    try:
        return QemuDevice(args.board, kernels=args.kernels)
    except QemuError as e:
        raise UserError(str(e)) from None


def load_model(path):
    """-> (blob bytes, tflite bytes or None)"""
    from ..cli import UserError

    p = Path(path)
    if not p.is_file():
        raise UserError("no such model file: %s" % p)
    data = p.read_bytes()
    if data[:4] == b"TMLB":
        return data, None
    from ..compiler import CompileError, compile_tflite

    try:
        return compile_tflite(p).blob, data
    except CompileError as e:
        raise UserError("%s: %s" % (p, e)) from None


def run(args):
    from ..cli import UserError
    from ..devices.qemu import _blob_io, decode_outputs, encode_inputs
    from ..devices.uart_protocol import Nak, ProtocolError

    if args.count < 1:
        raise UserError("--count must be at least 1")
    blob = tflite = None
    if args.model:
        blob, tflite = load_model(args.model)
    dev = _device(args)
    result = {"backend": args.backend, "board": args.board}
    try:
        with dev:
            result["capabilities"] = dev.caps
            if blob is None:
                return _report(args, result, 0)
            try:
                result["install"] = dev.link.install(blob)
            except Nak as e:
                result["refused"] = e.reason
                print("tinymlaas emulate: the device refused the blob: %s" % e.reason, file=sys.stderr)
                return _report(args, result, 1)
            ins, outs = _blob_io(blob)
            inputs = _inputs(tflite, ins, args)
            got, runs = [], []
            for one in inputs:
                raw, cycles = dev.link.infer(encode_inputs(ins, one))
                got.append(decode_outputs(outs, raw))
                instr = dev.instructions(cycles)
                runs.append({"systick_cycles": cycles, "instructions": instr,
                             "outputs": [o.reshape(-1).tolist() for o in got[-1]]})
            result["runs"] = runs
            if tflite is not None:
                from ..verify.compare import compare
                from ..verify.judge import load_judge

                report = compare(load_judge(tflite).run(inputs), got)
                result["bit_exact"] = bool(report["bit_exact"])
                return _report(args, result, 0 if report["bit_exact"] else 1)
            return _report(args, result, 0)
    except ProtocolError as e:
        raise UserError("device protocol error: %s" % e) from None


def _inputs(tflite, ins, args):
    import numpy as np

    if tflite is not None:
        from ..verify.inputs import input_specs, random_inputs

        return random_inputs(input_specs(tflite), args.count, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    sets = []
    for _ in range(args.count):
        one = []
        for shape, dtype in ins:
            if np.dtype(dtype).kind == "f":
                one.append(rng.uniform(-1, 1, shape).astype(dtype))
            else:
                info = np.iinfo(dtype)
                one.append(rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype))
        sets.append(one)
    return sets


def _report(args, result, code):
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return code
    caps = result["capabilities"]
    print("%s on %s: firmware %s, ABI %s, kernels %s, RAM %s B, model slot %s B in %s, arena %s B"
          % (args.board, args.backend, caps.get("version"), caps.get("abi"), caps.get("kernels"), caps.get("ram"),
             caps.get("slot"), caps.get("storage"), caps.get("arena")))
    if "install" in result:
        print("install: %s" % result["install"])
    for k, r in enumerate(result.get("runs", [])):
        instr = r["instructions"]
        print("run %d: %s, outputs %s%s" % (k, "%d instructions" % instr if instr is not None
                                            else "%d SysTick cycles" % r["systick_cycles"],
                                            r["outputs"][0][:12], " ..." if len(r["outputs"][0]) > 12 else ""))
    if "bit_exact" in result:
        print("bit-exact with TFLite Micro: %s" % ("yes" if result["bit_exact"] else "NO"))
    return code
