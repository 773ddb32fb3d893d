"""`tinymlaas verify BLOB --reference MODEL.tflite --runtime R`: is the blob bit-exact with TFLite Micro?

Runs the same seeded inputs through the runtime under test and through the judge (TFLite Micro; LiteRT's reference
kernels when TFLite Micro cannot run the model) and compares every output element. Exit 0 bit-exact, 1 not,
2 for bad input -- including a blob the runtime's loader rejects, with the loader's message.
"""

import json
import sys
from pathlib import Path

from ..verify.runtimes import RUNTIMES

DEFAULT_INPUTS = 10


def register(subparsers):
    p = subparsers.add_parser("verify", help="check a compiled blob is bit-exact with TFLite Micro",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("blob", help="compiled model blob (.blob)")
    p.add_argument("--reference", required=True, metavar="MODEL.tflite", help="the .tflite it was compiled from")
    p.add_argument("--runtime", default="host", choices=list(RUNTIMES),
                   help="runtime under test (default: host, the NumPy reference executor)")
    p.add_argument("--inputs", type=int, default=DEFAULT_INPUTS, metavar="N",
                   help="number of random input sets (default %d)" % DEFAULT_INPUTS)
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--heap", metavar="SIZE",
                   help="micropython only: the VM's heap (-X heapsize), e.g. 256k, to verify under a device's RAM "
                        "(default 4m)")
    p.add_argument("--stream", action="store_true",
                   help="micropython only: load the blob by path so weights stream from the file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _read(path, what):
    from ..cli import UserError

    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UserError("cannot read %s %s: %s" % (what, path, e.strerror or e))


def verify(blob_bytes, model_bytes, runtime="host", n_inputs=DEFAULT_INPUTS, seed=0, runtime_options=None):
    """Library form of the command: returns the result dict (see docs/verification.md).

    runtime: a name from verify.runtimes.RUNTIMES, or an object with `.name` and `.run(blob_bytes, inputs)`.

    Raises runtimes.BlobRejected when the runtime's loader refuses the blob and ValueError when the blob's graph
    does not match the model's inputs.
    """
    import numpy as np

    from ..blob.reader import BlobFormatError, parse
    from ..blob.reference import NP_DTYPE
    from ..verify import compare, inputs, judge, runtimes

    specs = inputs.input_specs(model_bytes)
    try:
        blob = parse(blob_bytes)
    except BlobFormatError:
        blob = None  # let the runtime's own loader say what is wrong
    if blob is not None:
        graph = [blob.tensors[i] for i in blob.inputs]
        if len(graph) != len(specs) or any(
                t.elements != int(np.prod(s.shape)) or NP_DTYPE[t.dtype] != s.dtype for t, s in zip(graph, specs)):
            raise ValueError("the blob's inputs %s do not match the model's inputs %s" % (
                [(list(t.shape), np.dtype(NP_DTYPE[t.dtype]).name) for t in graph],
                [(list(s.shape), np.dtype(s.dtype).name) for s in specs]))
    sets = inputs.random_inputs(specs, n_inputs, seed)
    rt = runtimes.get_runtime(runtime, **(runtime_options or {})) if isinstance(runtime, str) else runtime
    # a runtime whose first inference differs from the later ones (the M4 firmware widens weights into its scratch
    # then) runs the first set once more at the end: its steady state, compared like the others
    runs = sets + sets[:1] if getattr(rt, "first_run_differs", False) else sets
    got = rt.run(blob_bytes, runs)
    ref = judge.load_judge(model_bytes)
    expected = ref.run(runs)
    result = compare.compare(expected, got)
    result.update({
        "reference": ref.name,
        "reference_note": ref.why_fallback,
        "reference_rounding": ref.rounding,
        "runtime": rt.name,
        "inputs": n_inputs,
        "first_set_again": len(runs) > len(sets),   # its outputs are among the elements compared
        "seed": seed,
    })
    result.update(_m4_counts(rt, blob_bytes, sets[0]))
    result.update(_latency(rt, result))
    return result


M4_CLOCK_MHZ = 120  # the STM32L4R5 clock the published MLPerf Tiny results use (../shared/ANCHORS.md)


def _latency(rt, result):
    """latency_us: the best inference time over the input sets, as the runtime measures it (latency_basis says
    how); under QEMU, whose time is not a device's, the modelled cycles of one inference at M4_CLOCK_MHZ."""
    us = getattr(rt, "last_latency_us", None)
    if us:
        return {"latency_us": round(min(us), 1), "latency_us_per_input": [round(v, 1) for v in us],
                "latency_basis": rt.latency_basis}
    if "cycles" in result:
        return {"latency_us": round(result["cycles"] / M4_CLOCK_MHZ, 1),
                "latency_basis": "modelled Cortex-M4 cycles of one inference at %d MHz" % M4_CLOCK_MHZ}
    return {}


def _m4_counts(rt, blob_bytes, first_set):
    """For the Cortex-M4 firmware under QEMU: the exact instructions of one steady-state inference (the first input
    set run again after the others; QEMU -icount) and the cycles of the same inference by the Cortex-M4 cycle model
    (tinymlaas.verify.m4cycles: the TRM's timings on a block profile, taken-branch refill P = 2, P = 1..3 as the
    range), beside the first inference's (which also widens weights into the scratch): the figures
    bench/c_mlperf.py reports."""
    counts = getattr(rt, "last_instructions", None)
    if not counts or getattr(rt, "elf", None) is None:
        return {}
    from ..verify.m4trace import profile_inference

    counter, _ = profile_inference(blob_bytes, first_set, board=rt.board, elf=rt.elf, runs=2)
    first, total = counter.profiles(0)["total"], counter.profiles(1)["total"]
    return {"instructions": counts[-1], "instructions_first": counts[0], "instructions_per_input": list(counts[:-1]),
            "cycles": total.cycles(2), "cycles_range": [total.cycles(1), total.cycles(3)],
            "cycles_first": first.cycles(2), "cycles_model": "cortex-m4 TRM timings, zero-wait"}


def run(args):
    from ..cli import UserError
    from ..verify.judge import JudgeError
    from ..verify.runtimes import BlobRejected, RuntimeUnavailable

    if args.inputs < 1:
        raise UserError("--inputs must be at least 1")
    blob_bytes = _read(args.blob, "blob")
    model_bytes = _read(args.reference, "reference model")
    options = {}
    if args.heap or args.stream:
        if args.runtime != "micropython":
            raise UserError("--heap and --stream apply to --runtime micropython only")
        if args.heap:
            options["heap"] = args.heap
        options["stream"] = args.stream
    try:
        result = verify(blob_bytes, model_bytes, args.runtime, args.inputs, args.seed, options)
    except BlobRejected as e:
        raise UserError("%s: invalid blob: %s" % (args.blob, e))
    except (ValueError, JudgeError, RuntimeUnavailable) as e:
        raise UserError(str(e))
    result["blob"] = str(args.blob)
    result["model"] = str(args.reference)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_human(result, sys.stdout)
    return 0 if result["bit_exact"] else 1


def _print_human(r, out):
    what = "%d input set%s%s, %d output elements, runtime %s vs %s (seed %d)" % (
        r["inputs"], "" if r["inputs"] == 1 else "s", " and set 0 again" if r.get("first_set_again") else "",
        r["elements"], r["runtime"], r["reference"], r["seed"])
    if r["bit_exact"]:
        print("bit-exact: " + what, file=out)
    else:
        f = r["first_mismatch"]
        print("NOT bit-exact: %d of %d elements differ, max abs diff %g; first at input set %d%s, output %d, "
              "element %d: expected %r, got %r" % (r["mismatches"], r["elements"], r["max_abs_diff"],
                                                   f["input_set"], " (set 0 run again)" if f["input_set"] ==
                                                   r["inputs"] else "", f["output"], f["index"], f["expected"],
                                                   f["got"]), file=out)
        print("  " + what, file=out)
    if "latency_us" in r:
        print("  latency: %s us (%s)" % (r["latency_us"], r["latency_basis"]), file=out)
    if "cycles" in r:
        print("  Cortex-M4: %s instructions, %s modelled cycles (P = 1..3: %s..%s) in the steady state; the first "
              "inference %s / %s" % tuple("{:,}".format(v) for v in (
                  r["instructions"], r["cycles"], *r["cycles_range"], r["instructions_first"], r["cycles_first"])),
              file=out)
    if r["reference_note"]:
        print("  note: %s; judged by TFLite's reference kernels instead, which round requantization once "
              "(TFLite Micro and the blob round twice): expect rare 1-LSB differences" % r["reference_note"],
              file=out)
