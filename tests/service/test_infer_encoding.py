"""infer quantizes float inputs exactly as the device does (blob-format.md QUANTIZE: the binary32 quotient rounded
half away from zero, plus the zero point, saturated), so a value the service sends as int8 is the value the device
would have made of the same float."""

from pathlib import Path

import numpy as np

from tinymlaas.service.inference import ModelIO

AD_BLOB = Path(__file__).parents[1] / "vectors" / "mlperf_ad.blob"


def quantize_half_away(values, scale, zero_point):
    q = [float(np.float32(v) / np.float32(scale)) for v in values]
    r = [(int(x + 0.5) if x >= 0 else -int(-x + 0.5)) + zero_point for x in q]
    return [max(-128, min(127, x)) for x in r]


def test_ties_round_half_away_from_zero_like_the_device():
    io = ModelIO.of(AD_BLOB.read_bytes())
    t = io.input
    scale = float(np.float32(t.scale))
    # quotients of exactly k + 0.5 (binary32-exact here): ties-to-even would give 0, 2, -0, -2
    halves = [0.5, 2.5, -0.5, -2.5]
    row = np.zeros(t.elements)
    row[:len(halves)] = [h * scale for h in halves]
    assert [float(np.float32(v) / np.float32(scale)) for v in row[:len(halves)]] == halves
    got = np.frombuffer(io.encode(row)[0], dtype=np.int8)
    assert list(got[:len(halves)]) == [t.zero_point + k for k in (1, 3, -1, -3)]


def test_random_inputs_and_saturation_match_the_rule():
    io = ModelIO.of(AD_BLOB.read_bytes())
    t = io.input
    rng = np.random.default_rng(7)
    rows = rng.normal(0, 40 * t.scale, size=(3, t.elements))
    rows[0, :4] = [1e6, -1e6, 127.49 * t.scale, -300 * t.scale]
    for row, data in zip(rows, io.encode(rows)):
        assert list(np.frombuffer(data, dtype=np.int8)) == quantize_half_away(row, t.scale, t.zero_point)
