"""`tinymlaas models add|list|show`: the model registry."""

import sys
import time
from pathlib import Path

from ..cli import UserError
from ..registry import RegistryError
from ..service.catalog import Catalog
from ..service.config import add_data_argument, db_url
from ._http import add_api_argument, call, expect, upload
from ._output import print_json, print_table

REMOTE = "the local data directory (add: the model file and its datasets are uploaded; needs an admin token)"


def register(sub):
    p = sub.add_parser("models", help="model registry: add, list, show models and their compiled variants")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")

    a = msub.add_parser("add", help="add a source model and compile its variants")
    a.add_argument("path", help="model file: .tflite, .keras, .onnx, SavedModel directory, or pickled scikit-learn "
                                     "model")
    a.add_argument("--name", required=True)
    a.add_argument("--version", default="1")
    a.add_argument("--task", default="")
    a.add_argument("--labels", default="", help="comma-separated class labels")
    a.add_argument("--accuracy", type=float, default=None, help="accuracy on the model's evaluation set")
    a.add_argument("--representative", metavar="X.npy",
                   help="calibration inputs for int8 post-training quantization (float Keras / SavedModel / "
                        "ONNX, linear scikit-learn models)")
    a.add_argument("--train", metavar="XY.npz", help="x, y (and x_val, y_val) for fine-tuning pruned variants")
    a.add_argument("--eval", metavar="XY.npz", help="x, y: each variant's accuracy is measured on it")
    a.add_argument("--normal-data", metavar="X.npy", help="--task anomaly: normal input samples; each variant's "
                   "alarm threshold is set on them at --false-alarm-rate (and is the default --representative)")
    a.add_argument("--anomaly-data", metavar="X.npy", help="--task anomaly: anomalous samples, to measure the "
                   "detection rate at the threshold")
    a.add_argument("--false-alarm-rate", type=float, default=None, metavar="RATE",
                   help="--task anomaly: share of normal samples allowed above the threshold (default 0.01)")
    a.add_argument("--no-compile", action="store_true", help="register the source only")
    a.add_argument("--json", action="store_true")
    add_data_argument(a)
    add_api_argument(a, local_alternative=REMOTE)
    a.set_defaults(func=cmd_add)

    ls = msub.add_parser("list", help="list models")
    ls.add_argument("--json", action="store_true")
    add_data_argument(ls)
    add_api_argument(ls, local_alternative=REMOTE)
    ls.set_defaults(func=cmd_list)

    s = msub.add_parser("show", help="show one model and its variants")
    s.add_argument("name")
    s.add_argument("--version", default=None)
    s.add_argument("--json", action="store_true")
    add_data_argument(s)
    add_api_argument(s, local_alternative=REMOTE)
    s.set_defaults(func=cmd_show)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _catalog(args):
    return Catalog(db_url(args), args.data)


def step_printer(out=sys.stderr):
    """progress(text) for long work: each step on its own line with the seconds since the first."""
    started = time.monotonic()

    def say(text):
        print("[%5.1fs] %s" % (time.monotonic() - started, text), file=out, flush=True)
    return say


def _upload(args):
    """models add --server: the same registration on the service's machine -> what `models add --json` prints."""
    fields = {"name": args.name, "version": args.version, "task": args.task, "labels": args.labels}
    if args.accuracy is not None:
        fields["accuracy"] = repr(args.accuracy)
    if args.no_compile:
        fields["no_compile"] = "1"
    if Path(args.path).is_dir():
        raise UserError("%s is a directory: a SavedModel is registered on the service's machine (models add without "
                        "--server), or saved as .keras or .tflite and uploaded" % args.path)
    if args.normal_data or args.anomaly_data or args.false_alarm_rate is not None:
        raise UserError("anomaly models are registered on the service's machine for now (models add without "
                        "--server): the upload API takes no normal data yet")
    files = {"model": args.path}
    files.update({role: getattr(args, role) for role in ("representative", "train", "eval") if getattr(args, role)})
    return expect(*upload(args.api, "/api/models", fields, files), 201)


def _print_added(answer, where=""):
    m = answer["model"]
    print("added %s %s (%s), %d variant(s)%s" % (m["name"], m["version"], m["kind"], len(answer["variants"]), where))
    for v in answer["variants"]:
        print("  variant %d: %s for %s, %d B flash, %d B RAM, %d MACs%s"
              % (v["id"], v["backend"], v["runtime"], v["flash_bytes"], v["ram_bytes"], v["macs"],
                 ", accuracy %.3f" % v["accuracy"] if v.get("accuracy") is not None else ""))
    for key, msg in answer["errors"].items():
        print("  %s for %s: not built: %s" % (*key.split("/", 1), msg))


def cmd_add(args):
    if args.api:
        answer = _upload(args)
        if args.json:
            print_json(answer)
        else:
            _print_added(answer, " on %s" % args.api)
        return 0
    cat = _catalog(args)
    labels = [l for l in args.labels.split(",") if l]
    progress = step_printer()
    try:
        datasets = {role: getattr(args, role) for role in ("representative", "train", "eval") if getattr(args, role)}
        metadata = _anomaly_arguments(args, datasets)
        progress("read %s" % args.path)
        model, errors = cat.add(args.path, args.name, args.version, builds=[] if args.no_compile else None,
                                datasets=datasets, task=args.task, labels=labels, accuracy=args.accuracy,
                                progress=progress, metadata=metadata)
    except RegistryError as e:
        raise UserError(str(e)) from None
    progress("done")
    answer = {"model": model, "variants": cat.registry.variants(model),
              "errors": {"%s/%s" % k: v for k, v in errors.items()}}
    if args.json:
        print_json(answer)
    else:
        _print_added(answer)
    return 0


def _anomaly_arguments(args, datasets):
    """--normal-data / --anomaly-data / --false-alarm-rate -> datasets and model metadata (an anomaly task only)."""
    from ..service.anomaly import is_anomaly_task

    given = [f for f in ("normal_data", "anomaly_data", "false_alarm_rate") if getattr(args, f) is not None]
    if not is_anomaly_task(args.task):
        if given:
            raise UserError("--%s is for anomaly models (--task anomaly)" % given[0].replace("_", "-"))
        return {}
    if not args.normal_data and not args.no_compile:
        raise UserError("--task anomaly needs --normal-data X.npy: the alarm threshold is set on normal samples")
    for role, value in (("normal", args.normal_data), ("anomalous", args.anomaly_data)):
        if value:
            datasets[role] = value
    return {} if args.false_alarm_rate is None else {"false_alarm_rate": args.false_alarm_rate}


def cmd_list(args):
    if args.api:
        rows = expect(*call(args.api, "GET", "/api/models"), 200)
    else:
        cat = _catalog(args)
        rows = [dict(m, variants=len(cat.registry.variants(m))) for m in cat.registry.models()]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, [("name", "NAME"), ("version", "VERSION"), ("kind", "KIND"), ("task", "TASK"),
                           ("accuracy", "ACCURACY"), ("variants", "VARIANTS")])
    return 0


def cmd_show(args):
    if args.api:
        from urllib.parse import quote, urlencode

        query = "?" + urlencode({"version": args.version}) if args.version else ""
        m = expect(*call(args.api, "GET", "/api/models/%s%s" % (quote(args.name, safe=""), query)), 200)
        variants = m.pop("variants")
    else:
        cat = _catalog(args)
        try:
            m = cat.registry.model(args.name, args.version)
        except RegistryError as e:
            raise UserError(str(e)) from None
        variants = cat.registry.variants(m)
    if args.json:
        print_json({"model": m, "variants": variants})
        return 0
    print("%s %s  kind=%s task=%s accuracy=%s source=%s" % (m["name"], m["version"], m["kind"], m["task"],
                                                           m["accuracy"], m["source_sha256"][:12]))
    print_table(variants, [("id", "ID"), ("backend", "BACKEND"), ("runtime", "RUNTIME"), ("options", "OPTIONS"),
                           ("flash_bytes", "FLASH B"), ("ram_bytes", "RAM B"), ("macs", "MACS"),
                           ("accuracy", "ACCURACY"), ("artifact_sha256", "ARTIFACT")])
    from ..service.anomaly import summary

    for v in variants:
        patches = (v.get("report") or {}).get("patches")
        if patches:  # the compiler's patch-based stages: the arena with them and layer by layer
            extra = sum(p["extra_macs"] for p in patches)
            print("variant %d: arena %d B with %d patch-based stage(s), %d B layer by layer; %d MACs recomputed "
                  "(+%.1f%%)" % (v["id"], v["report"]["arena_bytes"], len(patches), v["report"]["arena_layerwise"],
                                 extra, 100.0 * extra / max(v["macs"], 1)))
        if summary(v):
            print("variant %d alarm threshold: %s" % (v["id"], summary(v)))
    return 0
