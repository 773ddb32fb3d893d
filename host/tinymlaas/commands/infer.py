"""`tinymlaas infer --device D [--input FILE.npy|FILE.json|-] [--raw] [--json]`: run inputs on a device's model."""

import io
import json
import sys
from pathlib import Path
from urllib.parse import quote

from ..cli import UserError
from ._http import add_api_argument, call, expect
from ._output import print_json, print_table


def register(sub):
    p = sub.add_parser("infer", help="run inputs on the model a device runs (through a running `tinymlaas serve`)",
                       description="Send inputs to a device's model over LwM2M and print what it answers: the class "
                       "(with its label), the scores and the latency the device measured. Values are numbers as the "
                       "model was trained on; they are quantized with the installed variant's input parameters. A "
                       "batch (N x input) runs N inferences, one row each.")
    p.add_argument("--device", required=True, help="endpoint name of a registered device that runs a model")
    p.add_argument("--input", default="-", metavar="FILE.npy|FILE.json|-",
                   help="the input values: a NumPy .npy file, a JSON array, or - for either on stdin (default -)")
    p.add_argument("--raw", action="store_true", help="the values are already the model's int8 input (no quantizing)")
    p.add_argument("--json", action="store_true")
    add_api_argument(p)
    p.set_defaults(func=cmd_infer)


def read_values(source):
    """Nested lists of numbers from an .npy or JSON file, or stdin ("-")."""
    import numpy as np

    if source == "-":
        if sys.stdin.isatty():
            raise UserError("give --input FILE.npy|FILE.json, or pipe a JSON array or .npy file on stdin")
        data, name = sys.stdin.buffer.read(), "stdin"
    else:
        try:
            data, name = Path(source).read_bytes(), source
        except OSError as e:
            raise UserError("cannot read %s: %s" % (source, e.strerror)) from None
    if data.startswith(b"\x93NUMPY"):
        try:
            return np.load(io.BytesIO(data), allow_pickle=False).tolist()
        except ValueError as e:
            raise UserError("%s: not a readable .npy array: %s" % (name, e)) from None
    try:
        return json.loads(data)
    except ValueError as e:
        raise UserError("%s is neither a .npy file nor JSON: %s" % (name, e)) from None


def cmd_infer(args):
    values = read_values(args.input)
    rows = len(values) if isinstance(values, list) else 1
    answer = expect(*call(args.api, "POST", "/api/devices/%s/infer" % quote(args.device, safe=""),
                          {"input": values, "raw": args.raw}, timeout=60 + 30 * rows), 200)
    if args.json:
        print_json(answer)
        return 0
    print("%s runs %s %s (variant %s), input %s" % (answer["device"], answer["model"], answer["version"],
                                                    answer["variant"], answer["input"]))
    table = [dict(r, row=i, latency_ms="%.2f" % (r["latency_us"] / 1000), label=r["label"] or "",
                  scores=" ".join("%.3g" % s for s in r["scores"])) for i, r in enumerate(answer["results"])]
    print_table(table, [("row", "ROW"), ("class", "CLASS"), ("label", "LABEL"), ("latency_ms", "DEVICE MS"),
                        ("round_trip_ms", "ROUND TRIP MS"), ("scores", "SCORES")])
    return 0
