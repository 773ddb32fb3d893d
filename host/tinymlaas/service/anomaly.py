"""Anomaly detection as a task (issue 15 item 3): a model whose output is an anomaly score, and the threshold
that turns the score into an alarm, calibrated here from normal data at a chosen false-alarm rate.

The score is what the device computes after each inference (lwm2m_client/lwm2m/anomaly.py), from the same int8
tensors: for an autoencoder (`"mse"`) the mean squared difference between the dequantized input and the
dequantized reconstruction; for a model that outputs its score itself (`"output"`: a Mahalanobis distance, an
isolation depth) the first output value, dequantized. The service runs the compiled blob in the NumPy reference
executor (bit-exact with the device's kernels), so the threshold is set on the scores the device will compute.

Calibration: the normal samples are split in two (even and odd rows). The threshold is the smallest score above
which at most `false_alarm_rate` of the first half lies; the false-alarm rate measured on the second half (never
seen by the threshold) is what `models show` reports, with the detection rate on anomalous samples when given.
"""

import math

import numpy as np

SCORES = ("mse", "output")
TASK = "anomaly"


class CalibrationError(ValueError):
    pass


def is_anomaly_task(task):
    return str(task or "").split(" ", 1)[0].lower() == TASK


def score_kind(blob):
    """The score of a blob: "mse" when its one output has the input's size (an autoencoder), "output" otherwise and
    for int32 scores (a tree ensemble's: an IsolationForest)."""
    from ..blob import format as F
    from ..blob.reader import parse

    b = parse(blob)
    t_in, t_out = b.tensors[b.inputs[0]], b.tensors[b.outputs[0]]
    same = int(np.prod(t_in.shape)) == int(np.prod(t_out.shape)) and len(b.outputs) == 1
    return "mse" if same and t_out.dtype != F.DTYPE_INT32 else "output"


def _dequantize(values, t):
    from ..blob import format as F

    v = np.asarray(values).reshape(-1)
    if t.dtype == F.DTYPE_FLOAT32 or not t.scale:       # float, or raw fixed point (tree scores): as they are
        return v.astype(np.float64)
    return (v.astype(np.float64) - t.zero_point) * t.scale


def scores(blob, X, kind=None):
    """The device's anomaly score of every sample of X (float inputs, quantized as the service's `infer` does)."""
    from ..blob import format as F
    from ..blob import reference
    from ..blob.reader import parse

    b = parse(blob)
    kind = kind or score_kind(blob)
    t_in, t_out = b.tensors[b.inputs[0]], b.tensors[b.outputs[0]]
    ex = reference.Executor(blob)
    out = np.empty(len(X))
    for i, x in enumerate(np.asarray(X, dtype=np.float32)):
        x = x.reshape(t_in.shape)
        if t_in.dtype != F.DTYPE_FLOAT32:
            x = np.clip(np.round(x / t_in.scale) + t_in.zero_point, -128, 127).astype(np.int8)
        y = _dequantize(ex.run([x])[0], t_out)
        if kind == "mse":
            out[i] = float(np.mean((y - _dequantize(x, t_in)) ** 2))
        else:
            out[i] = float(y[0])
    return out


def load_samples(path, what):
    try:
        X = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CalibrationError("cannot read the %s data %s (an .npy of input samples): %s" % (what, path, e)) from None
    if X.ndim < 2 or not len(X):
        raise CalibrationError("the %s data %s holds no samples (shape %s)" % (what, path, X.shape))
    return X


def calibrate(blob, normal, false_alarm_rate, anomalous=None):
    """{"score", "threshold", "false_alarm_target", "false_alarm_rate", "normal_samples", "detection_rate",
    "anomalous_samples"} for a compiled blob; normal/anomalous: arrays of input samples."""
    if not (0 < false_alarm_rate < 0.5):
        raise CalibrationError("the false-alarm rate must lie between 0 and 0.5, not %r" % false_alarm_rate)
    normal = np.asarray(normal)
    need = 2 * math.ceil(1 / false_alarm_rate)
    if len(normal) < need:
        raise CalibrationError("a false-alarm rate of %g needs at least %d normal samples (half to set the "
                               "threshold, half to measure it), got %d" % (false_alarm_rate, need, len(normal)))
    kind = score_kind(blob)
    try:
        s = scores(blob, normal, kind)
    except ValueError as e:   # samples of another shape than the model's input
        raise CalibrationError("cannot score the normal data: %s" % e) from None
    fit, held = np.sort(s[0::2]), s[1::2]
    # the k-th largest score of the calibration half: at most floor(rate * n) of those samples lie above it
    k = int(math.floor(false_alarm_rate * len(fit)))
    threshold = float(fit[len(fit) - 1 - k])
    result = {"score": kind, "threshold": threshold, "false_alarm_target": false_alarm_rate,
              "false_alarm_rate": float(np.mean(held > threshold)), "normal_samples": int(len(normal)),
              "detection_rate": None, "anomalous_samples": 0}
    if anomalous is not None and len(anomalous):
        result["detection_rate"] = float(np.mean(scores(blob, anomalous, kind) > threshold))
        result["anomalous_samples"] = int(len(anomalous))
    return result


def device_config(variant):
    """What an install package tells the device (package metadata "anomaly"), or None for other models."""
    a = (variant.get("report") or {}).get("anomaly")
    return {"score": a["score"], "threshold": a["threshold"]} if a else None


def summary(variant):
    """One line for `models show`: threshold and the rates measured at it."""
    a = (variant.get("report") or {}).get("anomaly")
    if not a:
        return ""
    text = "%s > %.6g: false alarms %.3f (target %g, %d normal)" % (a["score"], a["threshold"], a["false_alarm_rate"],
                                                                   a["false_alarm_target"], a["normal_samples"])
    if a.get("detection_rate") is not None:
        text += ", detects %.3f of %d anomalous" % (a["detection_rate"], a["anomalous_samples"])
    return text
