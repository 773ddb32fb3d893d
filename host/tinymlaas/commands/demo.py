"""`tinymlaas demo`: the service, three emulated devices and two models, end to end (see tinymlaas.demo.run)."""

from pathlib import Path


def register(sub):
    p = sub.add_parser("demo", help="run the whole service on this machine: models, emulated devices, "
                                    "selection, over-the-air deployment and inference")
    p.add_argument("--data", type=Path, default=None, help="keep the demo's state here (default: a temporary "
                                                           "directory, removed afterwards)")
    p.add_argument("--summary-json", default=None, help="also write the summary as JSON to this file")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args):
    from ..demo.run import run

    return run(args.data, keep=args.data is not None, summary_json=args.summary_json)
