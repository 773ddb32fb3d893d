"""Inference on a device from numbers a user gives: `tinymlaas infer` and POST /api/devices/<ep>/infer.

The device's TinyML object (docs/tinyml-object.md) takes the model's raw input tensor on /32770/0/21, runs it, and
notifies the raw output on /32770/0/22. The model it runs is named by the SHA-256 it reports (/32770/0/13), the
registry holds that blob, and the blob's tensors say how to cross between numbers and bytes:

    float values --quantize (input scale, zero point)--> int8 bytes --/21--> device --/22--> int8 bytes
        --dequantize (output scale, zero point; a tree ensemble's fixed point)--> scores --> class and label

The class is the one the device computed (/32770/0/23); its latency (/32770/0/18) is the device's own measure.
A model with a trainable head (a variant with the embedding output, heads.py) answers /22 with the head's K
float32 scores (softmax logits or ncm -distance^2, docs/learning.md), decoded as they are.
"""

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from ..blob import format as F
from ..blob.reader import parse
from ..blob.reference import quantize_steps
from ..errors import UserError
from .deployments import DeliveryError

TINYML = 32770
INPUT, RESULT, LAST_LATENCY, TOP_CLASS = 21, 22, 18, 23
MAX_BATCH = 1000
# Tree ensembles whose scores are the sum of each tree's class probabilities (scikit-learn's predict_proba is their
# mean); gradient boosting's scores are its decision_function as they are.
AVERAGING_ENSEMBLES = ("DecisionTreeClassifier", "RandomForestClassifier", "ExtraTreesClassifier")
NUMPY_DTYPES = {F.DTYPE_INT8: np.int8, F.DTYPE_UINT8: np.uint8, F.DTYPE_INT16: np.int16, F.DTYPE_INT32: np.int32,
                F.DTYPE_FLOAT32: np.float32}


class InferenceError(RuntimeError):
    """The device cannot run an inference for us now: it runs no model, one this registry does not know, or it
    did not answer."""


@dataclass
class ModelIO:
    """How one blob's single input and first output cross between numbers and bytes."""

    input: object        # blob reader Tensor
    output: object
    # an int32 output without a scale (a tree ensemble) is fixed point: scores = value / fixed_point_one
    fixed_point_one: float
    labels: list
    # axes from the caller's sample layout to the blob's (an ONNX model's NCHW images -> NHWC), or None
    transpose: list = None
    head: bool = False   # /22 holds the trainable head's K float32 scores, not output 0's bytes

    @classmethod
    def of(cls, blob, labels=(), head=False):
        b = parse(blob)
        meta = b.meta or {}
        if len(b.inputs) != 1:
            raise InferenceError("the model has %d inputs; infer feeds models with one" % len(b.inputs))
        t_out = b.tensors[b.outputs[0]]
        one = float(1 << int(((meta.get("outputs") or [{}])[0]).get("frac_bits", 0)))
        if meta.get("model") in AVERAGING_ENSEMBLES:
            one *= int(meta.get("n_trees") or 1)    # the trees' class probabilities summed: their mean, as sklearn
        labels = list(labels or meta.get("classes") or ())
        transpose = meta.get("input_transpose")
        t_in = b.tensors[b.inputs[0]]
        if not (isinstance(transpose, list) and sorted(transpose) == list(range(len(t_in.shape)))):
            transpose = None
        return cls(t_in, t_out, one, labels if len(labels) == t_out.elements else [], transpose, head)

    def describe(self):
        t = self.input
        shape = [t.shape[i] for i in np.argsort(self.transpose)] if self.transpose else t.shape
        return "%s %s" % ("x".join(str(d) for d in shape), F.DTYPE_NAMES[t.dtype])

    def encode(self, values, raw=False):
        """Input bytes for each row of `values` (one input of the model's shape, or a batch of N of them)."""
        t = self.input
        x = np.asarray(values, dtype=np.float64)
        if x.size == t.elements:
            rows = x.reshape(1, t.elements)
        elif x.ndim >= 2 and int(np.prod(x.shape[1:])) == t.elements:
            rows = x.reshape(len(x), t.elements)
        else:
            raise UserError("the input has shape %s; the model takes %d values (%s) or a batch N x %d"
                            % (tuple(x.shape), t.elements, self.describe(), t.elements))
        if self.transpose:      # rows in the source model's layout (NCHW), each made the blob's (NHWC)
            source_shape = tuple(t.shape[i] for i in np.argsort(self.transpose))[1:]
            rows = rows.reshape((len(rows),) + source_shape).transpose(self.transpose).reshape(len(rows), -1)
        if len(rows) > MAX_BATCH:
            raise UserError("a batch of %d inputs; at most %d per request" % (len(rows), MAX_BATCH))
        if not np.isfinite(rows).all():
            raise UserError("the input holds NaN or infinite values")
        dtype = NUMPY_DTYPES[t.dtype]
        if t.dtype == F.DTYPE_FLOAT32:
            if raw:
                raise UserError("--raw gives quantized integers, but this model's input is float32: give the "
                                "values as they are")
            return [r.astype("<f4").tobytes() for r in rows]
        info = np.iinfo(dtype)
        if raw:
            bad = (rows != np.round(rows)) | (rows < info.min) | (rows > info.max)
            if bad.any():
                i = np.argwhere(bad)[0]
                raise UserError("--raw input value %r (row %d, index %d) is not a %s" % (rows[i[0], i[1]], i[0], i[1],
                                                                                          np.dtype(dtype).name))
            q = rows
        elif t.scale:
            # the blob's QUANTIZE rule, as the device applies it to a float input (np.round would round ties to
            # even and disagree with the device)
            q = quantize_steps(rows, t.scale) + t.zero_point
        else:
            raise UserError("the model's %s input has no quantization scale: give --raw integers"
                            % np.dtype(dtype).name)
        return [np.clip(r, info.min, info.max).astype(np.dtype(dtype).newbyteorder("<")).tobytes() for r in q]

    def decode(self, data):
        """Scores (floats) from the device's output bytes."""
        t = self.output
        if self.head:
            if len(data) != 4 * t.elements:
                raise InferenceError("the device answered %d result bytes; its head's %d scores take %d"
                                     % (len(data), t.elements, 4 * t.elements))
            return np.frombuffer(data, "<f4").astype(np.float64)
        dtype = np.dtype(NUMPY_DTYPES[t.dtype]).newbyteorder("<")
        if len(data) != t.elements * dtype.itemsize:
            raise InferenceError("the device answered %d output bytes, the model's output has %d"
                                 % (len(data), t.elements * dtype.itemsize))
        q = np.frombuffer(data, dtype=dtype).astype(np.float64)
        if t.dtype == F.DTYPE_FLOAT32:
            return q
        if t.scale:
            return (q - t.zero_point) * t.scale
        return q / self.fixed_point_one

    def label(self, k):
        return self.labels[k] if 0 <= k < len(self.labels) else None


class Inference:
    """Inferences through the service's LwM2M server. One at a time per device: the result notification does not
    say which input it answers."""

    def __init__(self, svc):
        self.svc = svc
        self._locks = {}

    def lock(self, endpoint):
        """The device's inference lock: one input at a time (an `infer` or a learning sample)."""
        return self._locks.setdefault(endpoint, asyncio.Lock())

    async def installed(self, endpoint):
        """(model row, variant row, ModelIO) of the model the device runs now."""
        svc = self.svc
        svc.server.device(endpoint)              # NotRegistered for a device the server does not know
        try:
            inst = await svc.engine.channel.installed(endpoint)
        except DeliveryError as e:
            raise InferenceError("cannot read which model %s runs: %s" % (endpoint, e)) from None
        if not inst.get("sha256"):
            raise InferenceError("device %s runs no model; deploy one first (`tinymlaas deploy`)" % endpoint)
        model, variant = svc.installed_variant(inst["sha256"])
        if variant is None:
            raise InferenceError("device %s runs %s %s (blob %s), which this service's registry did not compile"
                                 % (endpoint, inst.get("name"), inst.get("version"), inst["sha256"][:12]))
        from .heads import is_embedding_variant

        return model, variant, ModelIO.of(svc.registry.artifact(variant), model.get("labels"),
                                          head=is_embedding_variant(variant))

    async def run(self, endpoint, values, raw=False, timeout=30.0):
        """Run each input row on the device; the answer `infer --json` prints."""
        async with self.lock(endpoint):
            model, variant, io = await self.installed(endpoint)
            payloads = io.encode(values, raw)
            server = self.svc.server
            notes = asyncio.Queue()
            obs = await server.observe(endpoint, "/%d/0/%d" % (TINYML, RESULT),
                                       lambda value, o=None: notes.put_nowait(value))
            try:
                notes.get_nowait()           # the current value, sent when the observation starts (RFC 7641)
                rows = [await self._one(endpoint, io, p, notes, timeout) for p in payloads]
            finally:
                obs.cancel()
        return {"device": endpoint, "model": model["name"], "version": model["version"], "variant": variant["id"],
                "input": io.describe(), "results": rows}

    async def _one(self, endpoint, io, payload, notes, timeout):
        server = self.svc.server
        started = time.perf_counter()
        await server.write(endpoint, "/%d/0/%d" % (TINYML, INPUT), payload)
        try:
            note = await asyncio.wait_for(notes.get(), timeout)
        except asyncio.TimeoutError:
            raise InferenceError("no result from %s within %.0f s" % (endpoint, timeout)) from None
        round_trip = time.perf_counter() - started
        if note is None:
            raise InferenceError("the device ended the observation of its results")
        scores = io.decode(bytes(note[(TINYML, 0, RESULT)]))
        top = int(await server.read_value(endpoint, "/%d/0/%d" % (TINYML, TOP_CLASS)))
        latency = int(await server.read_value(endpoint, "/%d/0/%d" % (TINYML, LAST_LATENCY)))
        if top < 0:                          # a device from before tree models reported their class
            top = int(np.argmax(scores))
        return {"class": top, "label": io.label(top), "scores": [round(float(s), 6) for s in scores],
                "latency_us": latency, "round_trip_ms": round(1000 * round_trip, 2)}
