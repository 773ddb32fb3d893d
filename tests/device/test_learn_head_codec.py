"""TMLH v1, the on-device learning head (issue 15 item 4; format in host/tinymlaas/learning/head.py and
inference_module/tinyml/learn.py): one spec, two readers, the shared vectors in tests/vectors/head. The host codec
decodes every valid vector and re-encodes it byte for byte and refuses every invalid one with the check the vector
names; the device's reader (in the real MicroPython VM) loads every valid vector into a head of its kind, D, K and
embedding quantization and writes back the same bytes, and refuses every invalid one with a HeadError, leaving the
head it had untouched."""

import json

import pytest

from tinymlaas.learning.head import HeadError, decode, encode
from tinymlaas.paths import VECTORS

HEADS = VECTORS / "head"
MANIFEST = json.loads((HEADS / "manifest.json").read_text())


def _meta(name):
    return json.loads((HEADS / (name + ".json")).read_text())


@pytest.mark.parametrize("name", MANIFEST["valid"])
def test_host_codec_round_trips_the_valid_vectors(name):
    raw = (HEADS / (name + ".bin")).read_bytes()
    head = decode(raw)
    meta = _meta(name)
    assert (head.kind, head.weights.shape, head.samples) == (meta["kind"], (meta["K"], meta["D"]), meta["samples"])
    assert encode(head) == raw


@pytest.mark.parametrize("name", MANIFEST["invalid"])
def test_host_codec_refuses_the_invalid_vectors_with_their_check(name):
    with pytest.raises(HeadError) as e:
        decode((HEADS / (name + ".bin")).read_bytes())
    assert e.value.kind == _meta(name)["error"]


DEVICE = """
import tinyml.learn as L
def fresh(m):
    h = L.Head(L.KINDS[m[0]], m[1], m[2], m[3], m[4], m[5])
    h.w[0] = 7.0
    return h
for path, m, valid in CASES:
    h = fresh(m)
    try:
        h.read_file(path)
        ok = h.encode() == open(path, 'rb').read()
        print('loaded', ok)
    except L.HeadError as e:
        print('refused', h.w[0] == 7.0 and h.samples == 0, e)
"""


def test_device_reader_loads_the_valid_vectors_and_refuses_the_invalid_ones(mpy_run):
    cases = []
    for name in MANIFEST["valid"] + MANIFEST["invalid"]:
        valid = name in MANIFEST["valid"]
        meta = _meta(name if valid else _meta(name)["derived_from"])  # the head an invalid vector was made from
        lr = meta["lr"] if meta["kind"] == "softmax" else 0.0
        cases.append((str(HEADS / (name + ".bin")), (meta["kind"], meta["D"], meta["K"], lr, meta["scale"],
                                                     meta["zero_point"]), valid))
    out = mpy_run("CASES = %r\n" % cases + DEVICE).splitlines()
    assert len(out) == len(cases), out
    for (path, _, valid), line in zip(cases, out):
        if valid:
            assert line == "loaded True", (path, line)
        else:
            assert line.startswith("refused True "), (path, line)
