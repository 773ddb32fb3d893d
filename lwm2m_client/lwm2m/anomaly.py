# Anomaly alarms (docs/tinyml-object.md, resources 33-36): after each inference of an anomaly model the device
# computes its anomaly score and, when the score is above the threshold its package carries (calibrated by the
# service on normal data, host/tinymlaas/service/anomaly.py), counts an alarm and reports it to the server with
# LwM2M Send (lwm2m/send.py). Imported by obj_tinyml only when the active model is an anomaly model: other devices
# never load this code. Memory: one copy of the model's first input (the arena may reuse it during inference).
import struct

import hal

from . import senml

_FORMAT = {"int8": "<b", "uint8": "<B", "int16": "<h", "int32": "<i", "float32": "<f"}
SCORES = ("mse", "output")
MAX_QUEUED = 4  # alarms waiting for their Send; beyond, the oldest goes unsent (Alarm Count still tells of it)


def _reader(info):
    fmt = _FORMAT.get(info["dtype"])
    if fmt is None:
        raise ValueError("no anomaly score for %s tensors" % info["dtype"])
    scale = info["scale"] if info["dtype"] != "float32" else 0.0
    return fmt, struct.calcsize(fmt), scale, info["zero_point"]


def _value(buf, reader, i):
    fmt, size, scale, zp = reader
    v = struct.unpack_from(fmt, buf, i * size)[0]
    return (v - zp) * scale if scale else v


def watch(obj):
    """After a model change of the TinyML object `obj`: a Monitor for an anomaly model, none (and this code
    dropped) for another."""
    config = obj.info and obj.info.get("anomaly")
    obj.anomaly = None
    if not config or obj.model is None:
        hal.unload("lwm2m.anomaly", "lwm2m.send")  # collected once nothing refers to them (unless resident)
        return
    try:
        obj.anomaly = Monitor(obj, obj.model, config)
    except ValueError as e:  # the package's metadata says what this device cannot score: no model runs unwatched
        obj.unload()
        obj.state = "load-failed: %s" % e


class Monitor:
    def __init__(self, obj, model, config):
        """config: the package's {"score": "mse" | "output", "threshold": number} (metadata, checked here)."""
        kind = config.get("score") if isinstance(config, dict) else None
        threshold = config.get("threshold") if isinstance(config, dict) else None
        if kind not in SCORES or not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise ValueError("anomaly config must be {score: mse|output, threshold: number}, not %r" % (config,))
        threshold = float(threshold)
        if not senml.finite(threshold):
            # inf would never alarm, -inf always, NaN never: a broken package, not a setting
            raise ValueError("anomaly threshold %r is not a finite number" % threshold)
        self.obj = obj
        self.kind = kind
        self.threshold = threshold
        self.out = _reader(model.outputs[0])
        self.n = len(model.output_buffer(0)) // self.out[1]
        self.inp = None
        if kind == "mse":
            self.inp = _reader(model.inputs[0])
            if len(model.input_buffer(0)) // self.inp[1] != self.n:
                raise ValueError("an mse score needs an output of the input's size")
            self.copy = bytearray(len(model.input_buffer(0)))
        self.score = 0.0
        self.alarms = 0
        self.queue = []  # (inference count, score, alarm count) of alarms not sent yet, oldest first
        from .send import Sender

        self.sender = Sender(obj.client, "/32770/0/")

    def keep_input(self, model):
        """Before the inference: the input as written (the arena may hold activations there afterwards)."""
        if self.inp is not None:
            self.copy[:] = model.input_buffer(0)

    def check(self, model):
        """After the inference: score, compare, alarm."""
        out = model.output_buffer(0)
        if self.kind == "output":
            s = float(_value(out, self.out, 0))
        else:
            s = 0.0
            for i in range(self.n):
                d = _value(out, self.out, i) - _value(self.copy, self.inp, i)
                s += d * d
            s /= self.n
        self.score = s
        self.obj.changed(0, 34)
        if s > self.threshold:
            self.alarms += 1
            self.obj.changed(0, 35)
            if len(self.queue) == MAX_QUEUED:
                self.queue.pop(0)
            self.queue.append((self.obj.count, s, self.alarms))
            self.flush()

    def flush(self):
        """Send the oldest alarm not sent yet, unless a Send is in flight (then it follows that one)."""
        if not self.queue:
            return
        if self.sender.client is None:
            self.sender.client = self.obj.client
        count, score, n = self.queue[0]
        # what an alarm's Send carries (names under /32770/0/): model name, inference count, threshold, score and
        # alarm count as they were at that inference
        self.sender.send([("11", str(self.obj._info("name"))), ("17", count), ("33", self.threshold),
                          ("34", score), ("35", n)], self._sent)

    def _sent(self, answered):
        if answered is None:  # no answer: kept, tried again with the next alarm
            return
        self.queue.pop(0)  # taken, or refused (sending it again would be refused again)
        self.flush()

    def read(self, rid):
        if rid == 33:
            return self.threshold
        if rid == 34:
            return self.score
        if rid == 35:
            return self.alarms
        return self.sender.delivered
