# Anomaly alarms (docs/tinyml-object.md, resources 33-36): after each inference of an anomaly model the device
# computes its anomaly score and, when the score is above the threshold its package carries (calibrated by the
# service on normal data, host/tinymlaas/service/anomaly.py), counts an alarm and reports it to the server with
# LwM2M Send (lwm2m/send.py). Imported by obj_tinyml only when the active model is an anomaly model: other devices
# never load this code. Memory: one copy of the model's first input (the arena may reuse it during inference).
import struct

import hal

_FORMAT = {"int8": "<b", "uint8": "<B", "int16": "<h", "int32": "<i", "float32": "<f"}
SCORES = ("mse", "output")


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
        self.obj = obj
        self.kind = kind
        self.threshold = float(threshold)
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
        from .send import Sender

        self.sender = Sender(obj.client, "/32770/0/", self.report_values)

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
            if self.sender.client is None:
                self.sender.client = self.obj.client
            self.sender.report()

    def report_values(self):
        """What an alarm's Send carries (names under /32770/0/): score, threshold, alarm count, inference count,
        model name."""
        o = self.obj
        return [("11", str(o._info("name"))), ("17", o.count), ("33", self.threshold), ("34", self.score),
                ("35", self.alarms)]

    def read(self, rid):
        if rid == 33:
            return self.threshold
        if rid == 34:
            return self.score
        if rid == 35:
            return self.alarms
        return self.sender.delivered
