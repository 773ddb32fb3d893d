"""The device's anomaly alarms (lwm2m/anomaly.py, lwm2m/send.py) in the real MicroPython VM: a device whose model is
not an anomaly model never imports them; the score of int8 tensors against the host's formula; an alarm's Send is
a CON POST /dp with Content-Format 112 and SenML-CBOR records, one in flight at a time; and what the code costs
(heap after import of the .mpy, .mpy bytes)."""

import json

import cbor2
import pytest

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import compiled_path

# a model stand-in with int8 I/O (what tinyml.model.Model offers the monitor), and a client whose endpoint keeps
# what it would send
FAKES = r"""
import gc, json, sys
class Model:
    def __init__(self, inp, out, si, zi, so, zo):
        self.i, self.o = bytearray(inp), bytearray(out)
        self.inputs = [{"dtype": "int8", "scale": si, "zero_point": zi, "shape": [len(inp)]}]
        self.outputs = [{"dtype": "int8", "scale": so, "zero_point": zo, "shape": [len(out)]}]
    def input_buffer(self, i): return memoryview(self.i)
    def output_buffer(self, i): return memoryview(self.o)
class Ep:
    def __init__(self): self.sent = []
    def new_token(self): return b"tk"
    def start(self, addr, msg, done): self.sent.append((addr, msg, done))
class Client:
    def __init__(self): self.ep, self.server, self.location = Ep(), ("127.0.0.1", 5683), ["rd", "x"]
    def changed(self, *a): pass
class Obj:
    count = 7
    def __init__(self): self.client, self.changes = Client(), []
    def _info(self, k, d=""): return "vib-ad"
    def changed(self, iid, rid): self.changes.append(rid)
"""


def run(code, heap="256k"):
    """Run code after FAKES in micropython, the client precompiled as emulated devices run it -> stdout."""
    return unixport.run(code=FAKES + code, heap=heap, path=compiled_path(), timeout=60).stdout.decode()


def test_a_device_without_an_anomaly_model_never_imports_the_alarm_code(tmp_path):
    out = run("from lwm2m.obj_tinyml import TinyML\n"
              "t = TinyML(None, %r)\nt.reload()\n"
              "print(json.dumps([t.read(0, r) for r in (33, 34, 35, 36)]),"
              " 'lwm2m.anomaly' in sys.modules, 'lwm2m.send' in sys.modules)" % str(tmp_path))
    assert out.split() == ["[0.0,", "0.0,", "0,", "0]", "False", "False"]


def test_the_alarm_code_comes_and_goes_with_the_model(tmp_path):
    """A package's anomaly config loads the monitor; one it cannot use leaves no model running; the next model
    without one drops the code from sys.modules."""
    out = run("""
from lwm2m.obj_tinyml import TinyML
class Installer:
    trust = None
    def __init__(self): self.config = {"score": "l1", "threshold": 1}
    def active(self): return {"name": "m", "version": "1", "sha256": "", "anomaly": self.config}
    def load_active(self): return Model(bytes(4), bytes(4), 0.1, 0, 0.1, 0)
inst = Installer()
t = TinyML(inst, %r)
print(t.state, t.model is None, t.anomaly is None)
inst.config = {"score": "mse", "threshold": 0.5}
t.reload()
print(t.state, t.anomaly is not None, t.read(0, 33), 'lwm2m.anomaly' in sys.modules, 'lwm2m.send' in sys.modules)
inst.config = None
t.reload()
print(t.state, t.anomaly is None, 'lwm2m.anomaly' in sys.modules, 'lwm2m.send' in sys.modules, t.read(0, 33))
""" % str(tmp_path))
    refused, watched, dropped = out.splitlines()
    assert refused.startswith("load-failed: anomaly config must be {score: mse|output, threshold: number}, not {")
    assert "'l1'" in refused and refused.endswith(" True True")
    assert [watched, dropped] == ["active True 0.5 True True", "active True False False 0.0"]


def test_score_threshold_and_the_send_it_raises():
    inp, out, si, zi, so, zo = [10, -20, 30, 0], [12, -20, 20, 5], 0.05, -3, 0.04, 2
    deq = lambda v, s, z: [(x - z) * s for x in v]  # noqa: E731
    mse = sum((a - b) ** 2 for a, b in zip(deq(out, so, zo), deq(inp, si, zi))) / 4
    text = run("""
from lwm2m.anomaly import Monitor
m = Model(%r, %r, %r, %r, %r, %r)
o = Obj()
for bad in ({"score": "mse"}, {"score": "l1", "threshold": 1}, {"score": "mse", "threshold": True}, None):
    try:
        Monitor(o, m, bad)
    except ValueError as e:
        print("refused", e)
a = Monitor(o, m, {"score": "mse", "threshold": %r})
a.keep_input(m)
m.i[:] = bytes(4)                # the arena reuses the input during inference: the copy is what counts
a.check(m)
print(json.dumps([a.score, a.alarms, len(o.client.ep.sent)]))
a.check(m)                       # a second alarm while the first Send is in flight: queued, sent after it
print(json.dumps([a.alarms, len(o.client.ep.sent), len(a.queue)]))
addr, msg, done = o.client.ep.sent[0]
print(msg.type, msg.code, ",".join("%%d=%%s" %% (n, bytes(v).hex()) for n, v in msg.options), msg.payload.hex())
class T:
    state = "done"
    class response:
        code = 0x44
        payload = b""
done(T)
print(json.dumps([len(o.client.ep.sent), a.sender.delivered, a.sender.status, a.read(36)]))
print(json.dumps([r for r in o.client.ep.sent[1][1].payload]))
T.response.code, T.response.payload = 0x80, b"malformed Send: x"
o.client.ep.sent[1][2](T)
print(a.sender.status, a.read(36), len(a.queue))
a.check(m)                       # no answer at all: the alarm stays queued and goes first with the next one
T.state = "timeout"
o.client.ep.sent[2][2](T)
print(a.sender.status, len(a.queue))
o.client.location = None         # not registered: alarms wait, at most 4, the oldest dropped
for i in range(5):
    a.check(m)
print(len(o.client.ep.sent), [n for c, s, n in a.queue])
o.client.location = ["rd", "x"]
a.check(m)
print(len(o.client.ep.sent), list(o.client.ep.sent[3][1].payload)[-1])
b = Monitor(o, m, {"score": "output", "threshold": 0.3})
b.check(m)
print(json.dumps([b.score, b.alarms]))
""" % (inp, out, si, zi, so, zo, mse * 0.9))
    lines = text.splitlines()
    assert [l.startswith("refused anomaly config must be") for l in lines[:4]] == [True] * 4
    score, alarms, sent = json.loads(lines[4])
    assert score == pytest.approx(mse, rel=1e-12) and alarms == 1 and sent == 1
    assert json.loads(lines[5]) == [2, 1, 2]
    mtype, code, opts, payload = lines[6].split(" ", 3)
    assert (mtype, code) == ("0", "2")                            # CON POST
    assert opts == "11=6470,12=70"                                # Uri-Path "dp", Content-Format 112
    records = cbor2.loads(bytes.fromhex(payload))
    assert records[0][-2] == "/32770/0/"
    assert [(r[0], r.get(2, r.get(3))) for r in records] == [("11", "vib-ad"), ("17", 7), ("33", mse * 0.9),
                                                            ("34", pytest.approx(mse, rel=1e-12)), ("35", 1)]
    assert json.loads(lines[7]) == [2, 1, "delivered", 1]         # the queued one went when the first was done
    assert cbor2.loads(bytes(json.loads(lines[8])))[4] == {0: "35", 2: 2}   # with its own alarm count
    assert lines[9:11] == ["send to /dp: 4.00 malformed Send: x",   # refused: in the log, not counted as reported
                           "4.00 malformed Send: x 1 0"]
    assert lines[11:13] == ["send to /dp: no answer (timeout)", "no answer (timeout) 1"]
    assert lines[13] == "3 [5, 6, 7, 8]"                          # alarms 3 (unanswered) and 4 dropped
    assert lines[14] == "4 6"                     # registered, a 9th alarm: 5 drops out too, 6 goes first
    assert json.loads(lines[15]) == [pytest.approx((12 - 2) * 0.04), 1]


def test_what_the_alarm_code_costs(capsys):
    """Heap taken by importing lwm2m/anomaly.py and lwm2m/send.py (.mpy, what a board runs; the rest of the client
    already loaded), one Monitor for a 32-byte input, and the .mpy bytes."""
    text = run("""
import lwm2m.obj_tinyml, lwm2m.senml, lwm2m.content, coap.message
o, mdl, config = Obj(), Model(bytes(32), bytes(32), 0.1, 0, 0.1, 0), {"score": "mse", "threshold": 1}
gc.collect(); a = gc.mem_free()
import lwm2m.anomaly, lwm2m.send
gc.collect(); b = gc.mem_free()
m = lwm2m.anomaly.Monitor(o, mdl, config)
gc.collect(); c = gc.mem_free()
print(a - b, b - c)
""")
    code, monitor = map(int, text.split())
    sizes = {name: next(p for p in compiled_path()[0].rglob(name)).stat().st_size
             for name in ("anomaly.mpy", "send.mpy")}
    with capsys.disabled():
        print("\nalarm code: %d B heap after import, %d B per Monitor (32-byte input), .mpy %s" % (code, monitor, sizes))
    assert code < 8000 and monitor < 1000 and sum(sizes.values()) < 4000
