"""Fuzz of the anomaly alarm config a package's metadata carries (lwm2m/anomaly.py, docs/tinyml-object.md "Anomaly
alarms"): seeded JSON texts (read the way the installer reads the metadata: tinyml/strictjson.py, RFC 8259 and
finite numbers only, so malformed text and 1e999 / -1e999 are refused as text) of valid configs,
of configs with wrong types, missing or extra keys, edge numbers (huge, tiny, -0.0, 1e999, big integers, booleans)
and of byte-mutated valid ones, each given to the device's watch() with int8 and float32 model stand-ins. Each must
be no config (a falsy one: the model runs unwatched, as any other model), make a Monitor with the score and threshold the rule {"score": "mse" | "output", "threshold": number}
gives (bool is not a number) or leave the model unloaded with a "load-failed: ..." state, never another exception;
every Monitor made then scores 5 random outputs without an exception. 400 configs by default; `--fuzz-long` runs
20,000."""

import json
import math
import random

from test_anomaly_client import FAKES

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import compiled_path

DEVICE = r"""
import random
from lwm2m import anomaly
from tinyml import strictjson
def texts():
    with open(sys.argv[1]) as f:  # one JSON string per line: argv cannot hold 20,000, nor the heap their list
        for line in f:
            yield json.loads(line)
class Float32Model(Model):
    def __init__(self, n):
        Model.__init__(self, bytes(4 * n), bytes(4 * n), 0.0, 0, 0.0, 0)
        self.inputs[0]["dtype"] = self.outputs[0]["dtype"] = "float32"
class Tml(Obj):
    def unload(self): self.model = None
random.seed(5)
models = [Model(bytes(8), bytes(8), 0.05, -3, 0.04, 2), Model(bytes(8), bytes(1), 0.05, 0, 0.1, -128), Float32Model(4)]
for k, text in enumerate(texts()):
    try:
        cfg = strictjson.loads(text.encode())  # as the installer reads a package's metadata
    except ValueError:
        print('SYNTAX')
        continue
    o = Tml()
    o.model, o.info, o.state, o.anomaly = models[k % 3], {"anomaly": cfg}, "active", None
    try:
        anomaly.watch(o)
        m = o.anomaly
        if m is None and o.model is not None and o.state == "active":
            print('NONE')  # no config (a falsy one): not an anomaly model
            continue
        if m is None:
            print('REJ', o.model is None and o.state.startswith('load-failed: '), repr(cfg)[:60])
            continue
        for _ in range(5):
            for i in range(len(o.model.o)):
                o.model.o[i] = random.getrandbits(8)
            m.keep_input(o.model)
            m.check(o.model)
        print('OK', m.kind, repr(m.threshold))
    except Exception as e:
        print('CRASH', type(e).__name__, e)
"""
VALUES = [0, 1, -1, 0.25, -0.0, 1e308, 5e-324, 2 ** 64, -(2 ** 70), True, False, None, "", "mse", "output", "MSE",
          [], ["mse"], {}, {"score": "mse"}]
NUMBER_TEXTS = ["1e999", "-1e999", "1e-400", "0.1e1", "12345678901234567890123", "-0"]


def _config(rng):
    cfg = {}
    if rng.random() < 0.85:
        cfg["score"] = rng.choice(["mse", "output"]) if rng.random() < 0.6 else rng.choice(VALUES)
    if rng.random() < 0.85:
        cfg["threshold"] = rng.uniform(-5, 5) if rng.random() < 0.5 else rng.choice(VALUES)
    if rng.random() < 0.2:
        cfg[rng.choice(["extra", "Score", "threshold "])] = rng.choice(VALUES)
    text = json.dumps(cfg) if rng.random() < 0.9 else json.dumps(rng.choice(VALUES))
    if rng.random() < 0.15 and '"threshold": ' in text:  # a number JSON can write but Python would not
        head, _, tail = text.partition('"threshold": ')
        text = head + '"threshold": ' + rng.choice(NUMBER_TEXTS) + tail[tail.find(",") if "," in tail else
                                                                        tail.find("}"):]
    if rng.random() < 0.2:
        b = bytearray(text.encode())
        b[rng.randrange(len(b))] = rng.choice(b'{}[]":,0123456789.eE-+ tnf')
        text = b.decode("latin-1")
    return text


def _strict_json(text):
    def finite(t):  # JSON has no infinity: 1e999 is no number (MicroPython's json.loads would give inf)
        if not math.isfinite(float(t)):
            raise ValueError(t)
        return float(t) if any(c in t for c in ".eE") else int(t)

    def refuse(name):
        raise ValueError(name)
    return json.loads(text, parse_float=finite, parse_int=finite, parse_constant=refuse)


def _expected(cfg, k):
    """(score, threshold) of the Monitor the documented rule makes of `cfg` (decoded as CPython decodes it) for
    model stand-in k % 3, or None for a refusal (an mse score on model 1, whose output is not the input's size)."""
    if not cfg:
        return "none"  # no anomaly config: the model runs without a Monitor
    if not isinstance(cfg, dict):
        return None
    score, threshold = cfg.get("score"), cfg.get("threshold")
    if score not in ("mse", "output") or score == "mse" and k % 3 == 1 or isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        return None
    if not math.isfinite(float(threshold)):  # inf never alarms, -inf always: refused
        return None
    return score, float(threshold)


def test_the_device_takes_exactly_the_configs_the_rule_allows(request, tmp_path):
    count = 20_000 if request.config.getoption("--fuzz-long") else 400
    rng = random.Random(33)
    texts = [_config(rng) for _ in range(count)]
    (tmp_path / "texts.json").write_text("".join(json.dumps(t) + "\n" for t in texts))
    out = unixport.run(code=FAKES + DEVICE, heap="1m", args=[tmp_path / "texts.json"], path=compiled_path(),
                       timeout=900).stdout.decode().splitlines()
    assert len(out) == count, out[-3:]
    crashes = [ln for ln in out if ln.startswith("CRASH") or ln.startswith("REJ False")]
    assert not crashes, crashes[:5]
    wrong, made = [], 0
    for k, (text, line) in enumerate(zip(texts, out)):
        try:
            cfg = _strict_json(text)
        except ValueError:  # not JSON, or a number beyond a double (1e999): the device must refuse the text
            if line != "SYNTAX":
                wrong.append((text, line, "SYNTAX"))
            continue
        want = _expected(cfg, k)
        if line == "SYNTAX":  # the device refuses what CPython reads: only text that is not UTF-8 (latin-1 here)
            assert not text.isascii(), text
            continue
        got = "none" if line == "NONE" else None if line.startswith("REJ") else (line.split()[1], float(line.split()[2]))
        made += isinstance(got, tuple)
        if got != want and not (isinstance(got, tuple) and isinstance(want, tuple) and got[0] == want[0] and
                                math.isclose(got[1], want[1], rel_tol=2 ** -52)):  # MicroPython prints 16 digits
            wrong.append((text, line, want))
    assert not wrong, (len(wrong), wrong[:5])
    assert count // 10 < made < count - count // 10
