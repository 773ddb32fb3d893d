"""On-device learning from the service (docs/learning.md "On the service"): what `tinymlaas learn` and the
/api/devices/{ep}/learn routes do with a device that runs a model with a trainable head (heads.py).

    sample  -> /32770/0/37  u16 LE label + the model input (quantized like `infer`'s), one write per sample
    label   -> /32770/0/38  the label of the device's last inference
    status  <- /39 samples, /40 accuracy (prequential, last 50; -1 before any), /43 learning on/off
    reset   -> /42 (Execute)           freeze / resume -> /43
    head    <- /41 the TMLH head (learning/head.py decodes and checks it)
    register: the pulled head as a new int8 model (learning/register.py), registered through the catalog, so
              its variants are compiled and measured like any other model's

The device answers 4.04 for 37-43 while its model has no head; that and its other refusals reach the caller as
LwM2M errors with the device's code.
"""

import asyncio
import struct
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..learning import head as H
from .heads import is_embedding_variant
from .inference import TINYML, InferenceError

SAMPLE, LABEL, SAMPLES, ACCURACY, HEAD, RESET, LEARNING = 37, 38, 39, 40, 41, 42, 43
MAX_LABEL = 0xFFFF
CALIBRATION_ROWS = 256     # representative inputs whose embeddings set a registered head's output range


def _path(resource):
    return "/%d/0/%d" % (TINYML, resource)


def _int(value):
    return int(value.decode() if isinstance(value, (bytes, bytearray)) else value)


def _float(value):
    return float(value.decode() if isinstance(value, (bytes, bytearray)) else value)


def _bool(value):
    if isinstance(value, (bytes, bytearray, str)):
        return (value.decode() if isinstance(value, (bytes, bytearray)) else value).strip() in ("1", "true")
    return bool(value)


class Learning:
    def __init__(self, svc):
        self.svc = svc

    async def trainable(self, endpoint):
        """(model, variant, ModelIO) of the device's model; InferenceError when it has no trainable head."""
        model, variant, io = await self.svc.inference.installed(endpoint)
        if not is_embedding_variant(variant):
            raise InferenceError("device %s runs %s %s without a trainable head: deploy it with --trainable-head"
                                 % (endpoint, model["name"], model["version"]))
        return model, variant, io

    @staticmethod
    def _check_label(label, classes):
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
            raise UserError("label %r: the model has classes 0..%d" % (label, classes - 1))
        return label

    async def sample(self, endpoint, label, values, raw=False):
        """Learn `label` (one class index, or one per row of a batch) from input `values` on the device."""
        model, variant, io = await self.trainable(endpoint)
        payloads = io.encode(values, raw)
        labels = label if isinstance(label, list) else [label] * len(payloads)
        if len(labels) != len(payloads):
            raise UserError("%d labels for %d inputs" % (len(labels), len(payloads)))
        labels = [self._check_label(lb, io.output.elements) for lb in labels]
        server = self.svc.server
        async with self.svc.inference.lock(endpoint):   # a sample is an inference: not beside an `infer`
            for lb, p in zip(labels, payloads):
                await server.write(endpoint, _path(SAMPLE), struct.pack("<H", lb) + p)
        return dict(await self.status(endpoint), learned=len(payloads))

    async def label(self, endpoint, label):
        model, variant, io = await self.trainable(endpoint)
        await self.svc.server.write(endpoint, _path(LABEL), self._check_label(label, io.output.elements))
        return await self.status(endpoint)

    async def status(self, endpoint):
        model, variant, io = await self.trainable(endpoint)
        server = self.svc.server
        samples = _int(await server.read_value(endpoint, _path(SAMPLES)))
        accuracy = _float(await server.read_value(endpoint, _path(ACCURACY)))
        learning = _bool(await server.read_value(endpoint, _path(LEARNING)))
        return {"device": endpoint, "model": model["name"], "version": model["version"], "variant": variant["id"],
                "head": self.head_config(endpoint, variant), "samples": samples,
                "accuracy": None if accuracy < 0 else round(accuracy, 6), "learning": learning}

    def head_config(self, endpoint, variant):
        return self.svc.heads.for_variant(variant["id"], endpoint)

    async def reset(self, endpoint):
        await self.trainable(endpoint)
        await self.svc.server.execute(endpoint, _path(RESET))
        return await self.status(endpoint)

    async def set_learning(self, endpoint, on):
        await self.trainable(endpoint)
        await self.svc.server.write(endpoint, _path(LEARNING), bool(on))
        return await self.status(endpoint)

    async def head(self, endpoint):
        """(TMLH bytes, decoded learning.head.Head) of the device's head."""
        await self.trainable(endpoint)
        data = await self.svc.server.read_value(endpoint, _path(HEAD), fmt="opaque")
        try:
            return bytes(data), H.decode(data)
        except H.HeadError as e:
            raise InferenceError("device %s answered a head that cannot be read: %s" % (endpoint, e)) from None

    async def register(self, endpoint, name, version="1"):
        """The device's learned head as a new model `name` (learning/register.py), registered and compiled."""
        model, variant, io = await self.trainable(endpoint)
        _, head = await self.head(endpoint)
        return await asyncio.to_thread(register_head, self.svc, model, variant, head, name, version)


def head_summary(data, head):
    return {"bytes": len(data), "kind": head.kind, "classes": head.classes, "dim": head.dim,
            "samples": head.samples, "lr": head.lr, "embedding_scale": head.scale,
            "embedding_zero_point": head.zero_point, "hex": data.hex()}


def calibration_inputs(model, blob):
    """Quantized inputs for the embedding blob: the model's representative set (or its evaluation set's x),
    else seeded random int8 inputs (a model registered from an int8 .tflite without data)."""
    from ..blob import format as F
    from ..blob.reader import parse
    from ..blob.reference import quantize_steps

    meta = model.get("metadata") or {}
    b = parse(blob)
    t = b.tensors[b.inputs[0]]
    rows = None
    try:
        if meta.get("representative"):
            rows = np.load(meta["representative"], allow_pickle=False)
        elif meta.get("eval"):
            with np.load(meta["eval"], allow_pickle=False) as z:
                rows = z["x"]
    except (OSError, ValueError, KeyError):
        rows = None
    if rows is None:
        rng = np.random.default_rng(1234)
        return [rng.integers(-128, 128, size=t.shape, dtype=np.int8) for _ in range(CALIBRATION_ROWS)]
    rows = np.asarray(rows, np.float64).reshape(len(rows), -1)[:CALIBRATION_ROWS]
    if rows.shape[1] != t.elements:
        raise UserError("the model's representative set has %d values per sample, its input %d"
                        % (rows.shape[1], t.elements))
    if t.dtype == F.DTYPE_FLOAT32:
        return [r.astype(np.float32).reshape(t.shape) for r in rows]
    q = np.clip(quantize_steps(rows, t.scale) + t.zero_point, -128, 127).astype(np.int8)
    return [r.reshape(t.shape) for r in q]


def source_tflite(svc, model, variant):
    """The int8 .tflite the variant was compiled from, made again (the int8 back-end is deterministic)."""
    from ..backends import SourceModel, backend

    options = {k: v for k, v in (variant.get("options") or {}).items() if k in ("quantize", "prune", "fuse")}
    source = SourceModel(kind=model["kind"], data=svc.registry.source(model), name=model["name"],
                         metadata=model["metadata"])
    tflite, _ = backend("tmlb-int8").int8_tflite(source, options)
    return tflite


def register_head(svc, model, variant, head, name, version="1"):
    """Register `head` (learned on a device running `variant` of `model`) as model `name`: the new .tflite
    compiled by the catalog for the runtime of the variant; -> what the route answers."""
    from ..blob.reader import parse
    from ..blob.reference import Executor
    from ..learning.register import RegisterError, dequantized, replace_head
    from ..registry import RegistryError

    if svc.registry.exists(name, version):
        raise UserError("model %s version %s already exists" % (name, version))
    blob = svc.registry.artifact(variant)
    out = int(((variant.get("report") or {}).get("embedding") or {}).get("output", 1))
    b = parse(blob)
    t_emb = b.tensors[b.outputs[out]]
    ex = Executor(blob)
    inputs = calibration_inputs(model, blob)
    emb = np.array([dequantized(np.asarray(ex.run([x])[out]).reshape(-1), t_emb.scale, t_emb.zero_point)
                    for x in inputs])
    try:
        tflite, info = replace_head(source_tflite(svc, model, variant), head, emb)
    except RegisterError as e:
        raise UserError("the device's head cannot replace the model's last layer: %s" % e) from None
    # how often the new int8 model's answer is the device head's own, on the calibration inputs
    want = np.argmax(head.scores(emb), axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (name + ".tflite")
        path.write_bytes(tflite)
        try:
            # the source's evaluation set (if any) measures the new model's variants, as for any model
            datasets = {r: f for r, f in (model.get("metadata") or {}).items()
                        if r in ("eval", "representative") and Path(f).is_file()}
            learned = {"model": model["name"], "version": model["version"], "variant": variant["id"],
                       "kind": head.kind, "samples": int(head.samples)}
            new, errors = svc.catalog.add(path, name, version, builds=[("tmlb-int8", variant["runtime"], {})],
                                          datasets=datasets, labels=model.get("labels") or (),
                                          task=model.get("task") or "", metadata={"learned_from": learned})
        except RegistryError as e:
            raise UserError(str(e)) from None
    variants = svc.registry.variants(new)
    got = [int(np.argmax(np.asarray(Executor(svc.registry.artifact(variants[0])).run([x])[0]).reshape(-1)))
           for x in inputs] if variants else []
    agreement = float(np.mean(np.array(got) == want)) if got else None
    return {"model": name, "version": version, "from": {"model": model["name"], "version": model["version"],
                                                          "variant": variant["id"]},
            "head": dict(info, agreement=agreement, calibration_inputs=len(inputs)),
            "variants": [{"id": v["id"], "backend": v["backend"], "runtime": v["runtime"],
                          "flash_bytes": v["flash_bytes"], "ram_bytes": v["ram_bytes"]} for v in variants],
            "errors": {"%s/%s" % k: msg for k, msg in errors.items()}}
