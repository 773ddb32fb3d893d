"""Float model -> full-integer int8 .tflite by post-training quantization with TensorFlow's TFLiteConverter.

Sources: a Keras model (object, or the bytes of a `.keras` archive) or a SavedModel directory (a path, or the bytes of
a zip / tar archive of the directory). Calibration uses a representative dataset: an array or an `.npy` file with
one sample per row; up to `samples` rows are drawn with a seeded generator, so the same inputs always give the same
quantization parameters.

Internals are always int8 (TFLITE_BUILTINS_INT8 only: an op without an int8 kernel fails the conversion rather than
silently staying float). The graph's inputs and outputs are int8 (`io="int8"`, what a sensor pipeline on an MCU
feeds) or stay float32 (`io="float"`: the converter adds QUANTIZE / DEQUANTIZE at the edges).

A float `.tflite` cannot be re-quantized: the converter needs the original graph (Keras or SavedModel).
"""

import io
import os
import sys
import tarfile
import tempfile
import zipfile
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .interface import BackendError  # noqa: E402

IO_MODES = ("int8", "float")
DEFAULT_SAMPLES = 200


def representative_rows(representative, input_shape=None, samples=DEFAULT_SAMPLES, seed=0):
    """float32 calibration rows from an array or an .npy path; `samples` rows drawn without replacement, seeded."""
    if representative is None:
        raise BackendError("int8 post-training quantization needs a representative dataset: an .npy of input "
                           "samples, one per row, a few hundred like the training data (`tinymlaas models add "
                           "--representative X.npy`; 'representative' in the options or metadata in Python)")
    if isinstance(representative, (str, Path)):
        try:
            representative = np.load(representative, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise BackendError("cannot read the representative dataset %s: %s" % (representative, e)) from None
    rows = np.asarray(representative, dtype=np.float32)
    if rows.ndim < 1 or len(rows) == 0:
        raise BackendError("the representative dataset is empty")
    if input_shape is not None:
        want = tuple(int(d) for d in input_shape[1:] if d is not None)
        if len(want) == len(input_shape) - 1 and tuple(rows.shape[1:]) != want:
            if int(np.prod(rows.shape[1:])) != int(np.prod(want)):
                raise BackendError("representative samples have shape %s, the model's input is %s"
                                   % (tuple(rows.shape[1:]), want))
            rows = rows.reshape((len(rows),) + want)
    if len(rows) > samples:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), samples, replace=False))]
    return rows


def load_keras(data):
    """A Keras model from a model object or the bytes of a .keras archive."""
    import keras
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return data
    check_keras_archive(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(bytes(data))
        try:
            return keras.models.load_model(path, compile=False)
        except Exception as e:  # Keras raises ValueError, OSError, zipfile errors ... for a bad archive
            raise BackendError("cannot load the Keras model: %s: %s" % (type(e).__name__, e)) from None


def check_keras_archive(data):
    """BackendError unless `data` is a whole .keras archive (a zip with config.json): Keras itself reports a cut-off
    file as "File not found" on a temporary path."""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            names = z.namelist()
            broken = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise BackendError("the .keras file is not a complete zip archive (%s): it is truncated or damaged; save the "
                           "model again with model.save('model.keras')" % e) from None
    if broken is not None:
        raise BackendError("the .keras archive's member %s is damaged; save the model again" % broken)
    if "config.json" not in names:
        raise BackendError("the zip holds no config.json: it is not a .keras model archive")


def _safe_members(names, root):
    root = os.path.realpath(root)
    for name in names:
        dest = os.path.realpath(os.path.join(root, name))
        if dest != root and not dest.startswith(root + os.sep):
            raise BackendError("the SavedModel archive has a path outside its directory: %r" % name)


@contextmanager
def savedmodel_dir(data=None, path=None):
    """Yield a SavedModel directory: `path` as given, or `data` (zip or tar bytes) unpacked into a temporary one.
    The archive may hold the directory itself or one folder containing it."""
    if path is not None:
        if not (Path(path) / "saved_model.pb").exists():
            raise BackendError("%s is not a SavedModel directory (no saved_model.pb)" % path)
        yield str(path)
        return
    with tempfile.TemporaryDirectory() as tmp:
        blob = bytes(data or b"")
        if blob[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(blob)) as z:
                _safe_members(z.namelist(), tmp)
                z.extractall(tmp)
        else:
            try:
                with tarfile.open(fileobj=io.BytesIO(blob)) as t:
                    members = t.getmembers()
                    _safe_members([m.name for m in members], tmp)
                    if any(not (m.isfile() or m.isdir()) for m in members):
                        raise BackendError("the SavedModel archive holds links or devices; only files are allowed")
                    t.extractall(tmp, filter="data")
            except tarfile.TarError:
                raise BackendError("a savedmodel source must be a zip or tar archive of the SavedModel directory "
                                   "(or give metadata['path'])") from None
        found = [os.path.dirname(os.path.join(d, "saved_model.pb")) for d, _, files in os.walk(tmp)
                 if "saved_model.pb" in files]
        if len(found) != 1:
            raise BackendError("the archive holds %d SavedModels, expected exactly one" % len(found))
        yield found[0]


@contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the duration (C++ code writes there, not to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _convert(converter, rows, io_mode):
    import tensorflow as tf
    if io_mode not in IO_MODES:
        raise BackendError("quantize I/O mode %r: use one of %s" % (io_mode, ", ".join(IO_MODES)))

    def gen():
        for r in rows:
            yield [r[None, ...]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_mode == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        # Keras' export step prints its signature to stdout and the MLIR quantizer a status line straight to the
        # process's stderr; a service's output is not the place for either. Errors still arrive as exceptions.
        with redirect_stdout(io.StringIO()), _native_stderr_silenced():
            return bytes(converter.convert())
    except Exception as e:  # the converter raises ConverterError / RuntimeError / ValueError with MLIR diagnostics
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError("int8 post-training quantization failed: %s" % first[:400]) from None


def keras_input_shape(model):
    shape = model.inputs[0].shape
    return tuple(shape)


def quantize_keras(model, representative, io="int8", samples=DEFAULT_SAMPLES, seed=0):
    """int8 .tflite bytes of a Keras model (object or .keras bytes)."""
    import tensorflow as tf
    model = load_keras(model)
    if len(model.inputs) != 1:
        raise BackendError("models with %d inputs are not supported (one input)" % len(model.inputs))
    rows = representative_rows(representative, keras_input_shape(model), samples, seed)
    return _convert(tf.lite.TFLiteConverter.from_keras_model(model), rows, io)


def quantize_savedmodel(path, representative, io="int8", samples=DEFAULT_SAMPLES, seed=0):
    """int8 .tflite bytes of a SavedModel directory (serving_default signature)."""
    rows = representative_rows(representative, None, samples, seed)
    import tensorflow as tf
    return _convert(tf.lite.TFLiteConverter.from_saved_model(str(path)), rows, io)


def quantize_function(concrete_fn, trackable, rows, io="int8"):
    """int8 .tflite bytes of a TensorFlow concrete function of one float32 input (the ONNX and scikit-learn
    back-ends build one); `rows` are calibration inputs already in the function's input shape (less the batch)."""
    import tensorflow as tf
    return _convert(tf.lite.TFLiteConverter.from_concrete_functions([concrete_fn], trackable), rows, io)


def tflite_is_float(data):
    """True when a .tflite model computes in float (any float32 weight feeding CONV / FC), i.e. is not int8."""
    from ..compiler.errors import CompileError
    from ..compiler.frontend import parse_tflite
    try:
        graph = parse_tflite(data)
    except CompileError as e:
        raise BackendError(str(e)) from None
    for op in graph.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 1:
            if graph.tensors[op.inputs[1]].dtype == "float32":
                return True
    return False
