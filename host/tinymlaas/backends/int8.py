"""The int8 blob back-end ("tmlb-int8"): int8 .tflite, Keras or SavedModel -> tinymlaas blob.

    int8 .tflite ------------------------------------------------------------> compile_tflite -> blob
    Keras .keras -- [prune + fine-tune] -- int8 PTQ (TFLiteConverter) -- int8 .tflite --^
    SavedModel ------------------------------ int8 PTQ ----------------------^
    ONNX ---- onnx_import (TF function, NHWC) -- int8 PTQ -------------------^

Sources (SourceModel.kind):
* "tflite": an int8 (full-integer) flatbuffer. A float .tflite is refused: re-quantizing needs the original graph,
  so register the Keras model or SavedModel instead.
* "keras": the bytes of a `.keras` archive.
* "savedmodel": the bytes of a zip or tar archive of the SavedModel directory, or empty bytes with
  metadata["path"] naming the directory.
* "onnx": the bytes of a float .onnx model (opsets 13-21, the ops of onnx_import.SUPPORTED_OPS); images are NCHW in
  the representative set as in the ONNX model, NHWC in the blob (report["onnx"]["input_transpose"]).

Options (also `representative` and `name`):
* quantize: True / "int8" -> int8 graph inputs and outputs; "float" -> float32 inputs and outputs around int8
  internals. Float sources are always quantized (default "int8"); for an int8 .tflite the option must be absent.
* prune: a fraction in (0, 1) of hidden Conv2D/Dense channels to remove (Keras only), or a dict
  {"fraction": f, "epochs": 3, "data": "train.npz"}; the training set (npz with x, y, optional x_val, y_val) comes
  from the dict or metadata["train"].
* fuse: activation and pad fusion; always applied by the compiler (True is accepted, False is refused).
* representative: calibration inputs, an .npy path or array (else metadata["representative"]).
* embedding_output: True -> the input of the model's last FULLY_CONNECTED op becomes graph output 1 (int8, the
  embedding a device's trainable head learns from, docs/learning.md); output 0 is unchanged.
"""

import hashlib
import struct

import numpy as np

from ..blob import format as F
from .interface import Artifact, Backend, BackendError, check_abi, step


def _io_mode(quantize):
    if quantize is True or quantize in (None, "int8"):
        return "int8"
    if quantize == "float":
        return "float"
    raise BackendError("option quantize=%r: use true, \"int8\" or \"float\"" % (quantize,))


def _prune_settings(prune, metadata):
    if isinstance(prune, dict):
        settings = dict(prune)
    else:
        settings = {"fraction": prune}
    try:
        fraction = float(settings.get("fraction"))
    except (TypeError, ValueError):
        raise BackendError("option prune needs a fraction of channels, e.g. 0.5") from None
    if not 0.0 < fraction < 1.0:
        raise BackendError("prune fraction %r must be between 0 and 1" % fraction)
    data = settings.get("data", metadata.get("train"))
    if data is None:
        raise BackendError("pruning fine-tunes the model: give prune={'fraction': f, 'data': 'train.npz'} or "
                           "metadata['train'] (an .npz with arrays x and y)")
    if isinstance(data, dict):
        arrays = data
    else:
        try:
            with np.load(data, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise BackendError("cannot read the pruning training set %s: %s" % (data, e)) from None
    if "x" not in arrays or "y" not in arrays:
        raise BackendError("the pruning training set needs arrays x and y")
    return fraction, int(settings.get("epochs", 3)), arrays


class Int8Backend(Backend):
    name = "tmlb-int8"
    accepts = frozenset({"tflite", "keras", "savedmodel", "onnx"})
    runtimes = frozenset({"tinyml-mpy", "tinyml-c"})
    optimizations = frozenset({"quantize", "prune", "fuse", "patches", "embedding_output"})

    def int8_tflite(self, source, options):
        """(int8 .tflite bytes, report dict) for the source: as given for an int8 .tflite, else via pruning and
        post-training quantization. Deterministic: the same source and options give the same bytes."""
        from . import quantize as Q
        report = {}
        if options.get("fuse", True) is not True:
            raise BackendError("the compiler always fuses activations and pads; fuse=false is not supported")
        representative = options.get("representative", source.metadata.get("representative"))
        if source.kind == "tflite":
            if "prune" in options:
                raise BackendError("pruning needs the Keras model; a .tflite cannot be pruned")
            if Q.tflite_is_float(source.data):
                raise BackendError("this .tflite computes in float; int8 post-training quantization needs the "
                                   "original graph: register the Keras model or SavedModel with a representative "
                                   "dataset")
            if "quantize" in options:
                raise BackendError("the .tflite is already int8; option quantize does not apply")
            return bytes(source.data), report
        if options.get("quantize", True) is False:
            raise BackendError("a %s model computes in float; the int8 back-end must quantize it" % source.kind)
        io_mode = _io_mode(options.get("quantize"))
        report["quantize"] = {"io": io_mode}
        if source.kind == "keras":
            # settings and data first: a missing file is reported before seconds of loading TensorFlow
            pruning = _prune_settings(options["prune"], source.metadata) if "prune" in options else None
            step("load the Keras model")
            model = Q.load_keras(source.data)
            if pruning:
                from .prune import prune_and_finetune
                fraction, epochs, arrays = pruning
                step("prune %d%% of the channels, fine-tune %d epochs" % (round(100 * fraction), epochs))
                model, pr = prune_and_finetune(model, fraction, arrays["x"], arrays["y"], arrays.get("x_val"),
                                               arrays.get("y_val"), epochs=epochs)
                report["prune"] = pr.as_dict()
                if representative is None:
                    representative = arrays["x"]
            step("quantize to int8")
            tflite = Q.quantize_keras(model, representative, io=io_mode)
        elif source.kind == "onnx":
            if "prune" in options:
                raise BackendError("pruning is implemented for Keras models, not ONNX")
            tflite = self._onnx_tflite(source.data, representative, io_mode, report)
        else:
            if "prune" in options:
                raise BackendError("pruning is implemented for Keras models, not SavedModels")
            path = source.metadata.get("path") if not source.data else None
            with Q.savedmodel_dir(source.data, path) as directory:
                step("quantize the SavedModel to int8")
                tflite = Q.quantize_savedmodel(directory, representative, io=io_mode)
        report["quantize"]["tflite_bytes"] = len(tflite)
        report["quantize"]["tflite_sha256"] = hashlib.sha256(tflite).hexdigest()
        return tflite, report

    @staticmethod
    def _onnx_tflite(data, representative, io_mode, report):
        from . import onnx_import
        from . import quantize as Q
        step("load the ONNX model")
        model = onnx_import.load(data)
        _, shape = onnx_import.input_shape(model)
        rows = Q.representative_rows(representative, shape)      # checked before TensorFlow is imported
        step("translate the ONNX graph to TensorFlow")
        fn, module, _, transpose = onnx_import.to_tf(model)
        tf_rows = rows.transpose(transpose) if transpose else rows
        # The translation checked against onnx's own reference evaluator on a few calibration rows.
        want = onnx_import.reference_outputs(model, rows[:4])
        got = [np.asarray(fn(r[None])).reshape(w.shape) for r, w in zip(tf_rows, want)]
        diff = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
        scale = max(float(np.max(np.abs(w))) for w in want) or 1.0
        if not diff <= 1e-4 * scale + 1e-5:
            raise BackendError("the ONNX translation differs from onnx's reference evaluator by %g" % diff)
        report["onnx"] = {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          "nodes": len(model.graph.node), "input_transpose": transpose,
                          "float_max_abs_diff": diff}
        step("quantize to int8")
        return Q.quantize_function(fn, module, tf_rows, io=io_mode)

    def compile(self, source, target, options):
        self.check(source, target, options)
        check_abi(target, self.name)
        tflite, report = self.int8_tflite(source, options)
        transpose = (report.get("onnx") or {}).get("input_transpose")
        # META tells `infer` (and a device's feature code) that callers hold the samples NCHW
        meta = {"input_layout": "NCHW", "input_transpose": transpose} if transpose else None
        embedding = options.get("embedding_output", False)
        if embedding not in (True, False):
            raise BackendError("option embedding_output=%r: use true or false" % (embedding,))
        return blob_artifact(tflite, target, options.get("name") or source.name or None, report, self.name, meta,
                             patches=options.get("patches", True), embedding_output=embedding)


def blob_artifact(tflite, target, name, report, backend_name, meta=None, patches=True, embedding_output=False):
    """The Artifact of an int8 .tflite compiled to a blob for `target` (ABI and ops checked); `report` gets the
    compiler's report. Shared by the back-ends that reach the blob through an int8 .tflite. patches=False: layer by
    layer even where patch-based stages would lower the arena (for runtimes without the PATCH op)."""
    from ..compiler import CompileError, compile_tflite
    check_abi(target, backend_name)
    step("compile the int8 graph")
    try:
        # patch-based stages only for runtimes that run PATCH ops (an empty op list: every op of the back-end)
        cm = compile_tflite(tflite, name=name, meta=meta,
                            patches=bool(patches) and (not target.ops or "PATCH" in target.ops),
                            embedding_output=embedding_output)
    except CompileError as e:
        raise BackendError("compiler: %s" % e) from None
    ops = list(dict.fromkeys(cm.ops))
    missing = [op for op in ops if target.ops and op not in target.ops]
    if missing:
        raise BackendError("the target runtime does not implement %s" % ", ".join(missing))
    (flags,) = struct.unpack_from("<I", cm.blob, 8)
    report.update(cm.report())
    if embedding_output:
        report["embedding"] = dict(cm.outputs[-1], output=len(cm.outputs) - 1)
    return Artifact(kind="tmlb", data=cm.blob, flash_bytes=len(cm.blob), ram_bytes=cm.arena_bytes, macs=cm.macs,
                    ops=ops, features={"abi": F.ABI, "float_io": bool(flags & F.FLAG_FLOAT_IO)}, report=report)
