"""The model catalogue: registry + back-ends. Adds source models and builds their variants."""

from pathlib import Path

from ..backends import BackendError, SourceModel, Target, UnsupportedModel, available_backends, backend, steps_to
from ..db import Database
from ..registry import ArtifactStore, ModelRegistry, RegistryError
from .anomaly import is_anomaly_task

DEFAULT_FALSE_ALARM_RATE = 0.01

# Which back-end builds what for which runtime, by source model kind.
DEFAULT_BUILDS = {
    "tflite": [("tmlb-int8", "tinyml-mpy", {}), ("tflite", "tflm", {})],
    "keras": [("tmlb-int8", "tinyml-mpy", {"quantize": True})],
    "savedmodel": [("tmlb-int8", "tinyml-mpy", {"quantize": True})],
    "onnx": [("tmlb-int8", "tinyml-mpy", {"quantize": True})],
    "sklearn": [("trees", "tinyml-mpy", {}), ("linear", "tinyml-mpy", {}), ("classic", "tinyml-mpy", {})],
}


def model_kind(path):
    """Tell the kind of a model file from its contents, not its name; raise RegistryError if it is not a model."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return "savedmodel"
        raise RegistryError("%s is a directory but not a SavedModel (no saved_model.pb)" % path)
    try:
        head = path.read_bytes()[:64]
    except OSError as e:
        raise RegistryError("cannot read %s: %s" % (path, e.strerror)) from None
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if head[:4] == b"PK\x03\x04" and path.suffix == ".keras":
        from ..backends.quantize import check_keras_archive

        try:
            check_keras_archive(path.read_bytes())
        except BackendError as e:
            raise RegistryError("%s: %s" % (path, e)) from None
        return "keras"
    if head[:1] == b"\x08" and path.suffix == ".onnx":    # protobuf field 1 (ir_version), a varint
        return "onnx"
    if head[:1] == b"\x80" and path.suffix in (".pkl", ".pickle", ".joblib", ".skops"):
        return "sklearn"
    if _archive_holds_savedmodel(path):
        return "savedmodel"
    raise RegistryError("%s is not a model tinymlaas can read (expected a .tflite flatbuffer, a .keras archive, a "
                        "SavedModel directory or a .zip / .tar(.gz) of one, or a pickled scikit-learn estimator)"
                        % path)


def _archive_holds_savedmodel(path):
    """True for a zip or tar (.tgz, .tar.gz, ...) archive with a saved_model.pb (the int8 back-end unpacks it)."""
    import tarfile
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as t:
                names = t.getnames()
        else:
            return False
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
        raise RegistryError("%s: damaged archive: %s" % (path, e)) from None
    return any(Path(n).name == "saved_model.pb" for n in names)


def variant_accuracy(model, options, artifact):
    """The variant's accuracy: measured on the model's evaluation set through the compiled blob itself when the
    model has one (metadata "eval": an .npz with x and y); otherwise, for a pruned variant, what the pruner measured
    after fine-tuning, or none (selection then prefers variants with a known accuracy) — never the source's."""
    eval_set = (model.get("metadata") or {}).get("eval")
    if artifact.report.get("task") == "regression":
        return None                      # top-1 accuracy means nothing for a regressor
    if eval_set and artifact.kind == "tmlb":
        import numpy as np

        try:
            with np.load(eval_set, allow_pickle=False) as z:
                return blob_accuracy(artifact.data, z["x"], z["y"],
                                     (artifact.report.get("onnx") or {}).get("input_transpose"))
        except (OSError, ValueError, KeyError) as e:   # unreadable, no x / y, or samples of another shape
            raise BackendError("cannot measure accuracy on the evaluation set %s (an .npz with x and y): %s"
                               % (eval_set, e)) from None
    if "prune" in (options or {}):
        return (artifact.report.get("prune") or {}).get("accuracy_after")
    return model.get("accuracy")


def calibrate_variant(model, artifact):
    """An anomaly model's variant: its threshold, set on the model's normal data at its false-alarm rate
    (service/anomaly.py), goes in the artifact's report; returns the balanced accuracy (mean of the normal samples
    passed and the anomalous ones caught) when anomalous samples were given, else None."""
    from .anomaly import CalibrationError, calibrate, load_samples

    meta = model.get("metadata") or {}
    if artifact.kind != "tmlb":
        raise BackendError("anomaly scores are computed on tmlb blobs only, not %s artifacts" % artifact.kind)
    if not meta.get("normal"):
        raise BackendError("an anomaly model needs normal data to set its threshold (--normal-data X.npy)")
    try:
        normal = load_samples(meta["normal"], "normal")
        anomalous = load_samples(meta["anomalous"], "anomalous") if meta.get("anomalous") else None
        a = calibrate(artifact.data, normal, float(meta.get("false_alarm_rate", DEFAULT_FALSE_ALARM_RATE)), anomalous)
    except CalibrationError as e:
        raise BackendError(str(e)) from None
    artifact.report["anomaly"] = a
    if a["detection_rate"] is None:
        return None
    return (1 - a["false_alarm_rate"] + a["detection_rate"]) / 2


def blob_accuracy(blob, X, y, transpose=None):
    """Top-1 accuracy of a compiled classifier blob on (X, y), run by the NumPy reference executor (bit-exact
    with TFLite Micro, so this is the accuracy the device will have). `transpose`: axes that turn a sample of X
    (with its batch axis) into the blob's layout, e.g. [0, 2, 3, 1] for an ONNX model's NCHW images."""
    import numpy as np

    from ..blob import format as F
    from ..blob import reference
    from ..blob.reader import parse

    b = parse(blob)
    t_in = b.tensors[b.inputs[0]]
    ex = reference.Executor(blob)
    correct = 0
    X = np.asarray(X, dtype=np.float32)
    if transpose:
        X = X.reshape((len(X),) + tuple(t_in.shape[i] for i in np.argsort(transpose))[1:]).transpose(transpose)
    for x, label in zip(X, y):
        x = x.reshape(t_in.shape)
        if t_in.dtype != F.DTYPE_FLOAT32:
            x = np.clip(np.round(x / t_in.scale) + t_in.zero_point, -128, 127).astype(np.int8)
        out = np.asarray(ex.run([x])[0]).reshape(-1)
        correct += int(np.argmax(out) == label)
    return correct / len(y)


def _zip_dir(path):
    """A SavedModel directory as zip bytes (what the int8 back-end takes), stored like any other source."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(Path(path).rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(path).as_posix())
    return buf.getvalue()


class Catalog:
    def __init__(self, db_url, data_dir):
        self.db = Database(db_url)
        # absolute: dataset paths are stored, and a later command may run in another directory
        self.data_dir = Path(data_dir).resolve()
        self.registry = ModelRegistry(self.db, ArtifactStore(self.data_dir / "artifacts"))

    def add(self, path, name, version="1", builds=None, progress=None, datasets=None, **meta):
        """Register a model file and compile its default variants. datasets: {"representative": .npy (calibration
        inputs for post-training quantization), "train": .npz (x, y[, x_val, y_val]: fine-tuning after pruning),
        "eval": .npz (x, y: the accuracy of every variant), "normal" / "anomalous": .npy (an anomaly model's
        threshold and its rates, service/anomaly.py)} — copied into the data directory, so the registry
        does not depend on files the user may move. Nothing is registered when builds are asked for (the default)
        and none compiles: RegistryError with every back-end's reason."""
        path = Path(path)
        kind = model_kind(path)
        if self.registry.exists(name, version):
            raise RegistryError("model %s version %s already exists" % (name, version))
        data = _zip_dir(path) if kind == "savedmodel" and path.is_dir() else path.read_bytes()
        metadata = dict(meta.pop("metadata", None) or {})
        datasets = {role: Path(file).resolve() for role, file in (datasets or {}).items()}
        if is_anomaly_task(meta.get("task")) and "normal" in datasets:
            datasets.setdefault("representative", datasets["normal"])   # quantize for the inputs it will score
        for role, file in datasets.items():
            if not file.is_file():
                raise RegistryError("cannot read dataset %s (the %s set): no such file" % (file, role))
        source = dict(meta, name=name, kind=kind, metadata=dict(metadata, **{r: str(f) for r, f in datasets.items()}))
        compiled, errors = self._compile(source, data, builds, progress)
        if not compiled and builds != []:
            raise RegistryError("nothing registered: no back-end compiles %s: %s"
                                % (path, "; ".join("%s: %s" % (be, msg) for (be, rt), msg in errors.items())
                                   or "no back-end takes %s models" % kind))
        for role, file in datasets.items():
            metadata[role] = self._keep_dataset(file)
        model = self.registry.add_model(name, version, kind, data, metadata=metadata, **meta)
        for backend_name, runtime, options, artifact, accuracy in compiled:
            self.registry.add_variant(model, backend_name, options, runtime, artifact, accuracy=accuracy)
        return model, errors

    def _keep_dataset(self, file):
        import hashlib
        import shutil

        try:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
        except OSError as e:
            raise RegistryError("cannot read dataset %s: %s" % (file, e.strerror)) from None
        dest = self.data_dir / "datasets" / ("%s-%s" % (digest, file.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copyfile(file, dest)
        return str(dest)

    def build(self, model, builds=None, progress=None):
        """Compile variants of a registered model; return {(backend, runtime): error message} for builds that
        failed."""
        compiled, errors = self._compile(model, self.registry.source(model), builds, progress)
        for backend_name, runtime, options, artifact, accuracy in compiled:
            self.registry.add_variant(model, backend_name, options, runtime, artifact, accuracy=accuracy)
        return errors

    def _compile(self, model, data, builds, progress):
        """([(backend, runtime, options, artifact, accuracy)], {(backend, runtime): error}) for `model` (a registry
        row or what add() will register) with source bytes `data`. progress(text) hears each step."""
        say = progress or (lambda text: None)
        compiled, errors, unsupported = [], {}, set()
        source = SourceModel(kind=model["kind"], data=data, name=model["name"], metadata=model["metadata"])
        for backend_name, runtime, options in builds if builds is not None else DEFAULT_BUILDS.get(model["kind"], []):
            try:
                be = backend(backend_name)
                target = Target(runtime=runtime)
                be.check(source, target, options)
                with steps_to(lambda what: say("%s for %s: %s" % (backend_name, runtime, what))):
                    artifact = be.compile(source, target, options)
                if is_anomaly_task(model.get("task")):
                    say("%s for %s: calibrate the anomaly threshold on the normal data" % (backend_name, runtime))
                    accuracy = calibrate_variant(model, artifact)
                else:
                    if (model.get("metadata") or {}).get("eval") and artifact.kind == "tmlb":
                        say("%s for %s: measure accuracy on the evaluation set" % (backend_name, runtime))
                    accuracy = variant_accuracy(model, options, artifact)
            except BackendError as e:
                errors[(backend_name, runtime)] = str(e)
                if isinstance(e, UnsupportedModel):
                    unsupported.add((backend_name, runtime))
                continue
            compiled.append((backend_name, runtime, options, artifact, accuracy))
        if compiled:   # a tree model is no news to the linear back-end, and the other way round
            errors = {k: msg for k, msg in errors.items() if k not in unsupported}
        return compiled, errors

    def backends(self):
        return available_backends()
