"""`tinymlaas compile MODEL -o OUT [--json]`: TFLite int8 model -> tinymlaas blob."""

import json
import sys
from pathlib import Path


def register(subparsers):
    p = subparsers.add_parser("compile", help="compile a TFLite int8 model into a tinymlaas blob",
                              description="Compile a TFLite int8 (or float-I/O int8) model into a tinymlaas blob: "
                              "integer parameters folded, memory planned, ready for the device runtimes.")
    p.add_argument("model", help="the .tflite file")
    p.add_argument("-o", "--output", help="blob file to write (default: MODEL with suffix .tmlb)")
    p.add_argument("--json", action="store_true", help="print the compile report as JSON on stdout")
    p.add_argument("--detail", action="store_true",
                   help="with --json: also per-op layers (MACs, output shape, arena span) and the memory plan")
    p.add_argument("--no-inplace", action="store_true", help="never plan an op's output over its input")
    p.add_argument("--no-fuse", action="store_true", help="keep PAD and standalone activations as ops of their own")
    p.add_argument("--no-patches", action="store_true",
                   help="run every op layer by layer (no patch-based stages: more arena, no recomputed MACs)")
    p.set_defaults(func=run)


def run(args):
    from ..cli import UserError
    from ..compiler import CompileError, compile_tflite

    src = Path(args.model)
    if (src / "saved_model.pb").is_file() or src.suffix in (".keras", ".onnx"):
        raise UserError("%s is a float model; `compile` takes an int8 .tflite. Quantize and compile it with "
                        "`tinymlaas models add %s --name NAME --representative X.npy`" % (src, src))
    if not src.is_file():
        raise UserError("no such model file: %s" % src)
    out = Path(args.output) if args.output else src.with_suffix(".tmlb")
    try:
        cm = compile_tflite(src, inplace=not args.no_inplace, fuse=not args.no_fuse, patches=not args.no_patches)
    except CompileError as e:
        if _computes_in_float(src):
            raise UserError("%s computes in float; `compile` takes int8 models and a float .tflite cannot be "
                            "re-quantized: register the Keras model or SavedModel it came from with `tinymlaas "
                            "models add MODEL --name NAME --representative X.npy`" % src) from None
        raise UserError("%s: %s" % (src, e)) from None
    try:
        out.write_bytes(cm.blob)
    except OSError as e:
        raise UserError("cannot write %s: %s" % (out, e.strerror)) from None
    report = cm.report(detail=args.detail)
    report["output"] = str(out)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("%s -> %s: %d B blob (tflite %d B), arena %d B, %d MACs, %d ops"
              % (src, out, len(cm.blob), cm.tflite_bytes, cm.arena_bytes, cm.macs, len(cm.ops)))
        if cm.patches:
            print("  %d patch-based stage(s): arena %d B layer by layer, %d B with them; %d MACs recomputed (+%.1f%%)"
                  % (len(cm.patches), cm.arena_layerwise, cm.arena_bytes, sum(p["extra_macs"] for p in cm.patches),
                     100.0 * sum(p["extra_macs"] for p in cm.patches) / max(cm.macs, 1)))
    return 0


def _computes_in_float(path):
    from ..backends import BackendError
    from ..backends.quantize import tflite_is_float

    try:
        return tflite_is_float(path.read_bytes())
    except BackendError:
        return False
