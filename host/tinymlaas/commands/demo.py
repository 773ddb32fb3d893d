"""`tinymlaas demo`: the service, its console, emulated devices and two models, end to end (see tinymlaas.demo.run)."""

from pathlib import Path


def register(sub):
    p = sub.add_parser("demo", help="run the whole service on this machine: models, emulated devices, "
                                    "selection, over-the-air deployment and inference")
    p.add_argument("--data", type=Path, default=None, help="keep the demo's state here (default: a temporary "
                                                           "directory, removed afterwards)")
    p.add_argument("--summary-json", default=None, help="also write the summary as JSON to this file")
    p.add_argument("--keep-running", action="store_true",
                   help="after the summary, keep the service, its console and the devices up until Ctrl-C")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args):
    from ..demo.run import run

    return run(args.data, keep=args.data is not None, summary_json=args.summary_json, keep_running=args.keep_running)
