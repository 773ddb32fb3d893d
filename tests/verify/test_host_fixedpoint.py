"""The blob's fixed-point helpers against hand-computed values, edge cases, and scalar == vectorized."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymlaas.blob import fixedpoint as fp

I32 = st.integers(fp.INT32_MIN, fp.INT32_MAX)


@pytest.mark.parametrize(
    "a, b, want",
    [
        (fp.INT32_MIN, fp.INT32_MIN, fp.INT32_MAX),  # the one saturating case
        (1 << 30, 1 << 30, 1 << 29),  # 0.5 * 0.5 * 2 = 0.5 in Q0.31 -> 2^29 ... exactly, the half is truncated
        (1, 1 << 30, 1),  # +0.5 rounds up
        (-1, 1 << 30, 0),  # -0.5 rounds toward zero (gemmlowp's nudge is asymmetric)
        (-1, (1 << 30) + 1, -1),  # just past -0.5 rounds away
        (fp.INT32_MAX, fp.INT32_MAX, fp.INT32_MAX - 1),
        (fp.INT32_MIN, fp.INT32_MAX, -fp.INT32_MAX),
        (0, fp.INT32_MIN, 0),
    ],
)
def test_srdhm(a, b, want):
    assert fp.srdhm(a, b) == want


@pytest.mark.parametrize(
    "x, e, want",
    [
        (5, 1, 3),  # 2.5 -> 3
        (-5, 1, -3),  # -2.5 -> -3 (ties away from zero)
        (-3, 1, -2),
        (3, 1, 2),
        (-4, 2, -1),
        (-6, 2, -2),  # -1.5 -> -2
        (-5, 2, -1),  # -1.25 -> -1
        (12345, 0, 12345),
        (fp.INT32_MIN, 31, -1),
        (fp.INT32_MAX, 31, 1),
        (-(1 << 30), 31, -1),  # -0.5 -> -1
        ((1 << 30) - 1, 31, 0),
    ],
)
def test_rdbpot(x, e, want):
    assert fp.rdbpot(x, e) == want


def test_rdbpot_rejects_bad_exponent():
    with pytest.raises(ValueError):
        fp.rdbpot(1, 32)
    with pytest.raises(ValueError):
        fp.rdbpot(1, -1)


@pytest.mark.parametrize(
    "x, m, s, want",
    [
        (100, 1 << 30, 0, 50),
        (100, 1 << 30, -1, 25),
        (100, 1 << 30, 1, 100),
        (3, 1 << 30, -1, 1),  # 0.75: SRDHM rounds 1.5 -> 2, then RDBPOT 1.0 -> 1
        (-3, 1 << 30, -1, -1),  # -0.75: SRDHM takes -1.5 to -1 (negative ties go up), RDBPOT(-1, 1) = -1
        (7, 0, 5, 0),
        (1 << 20, 1518500250, -31, 0),
        (-(1 << 24), 1 << 30, -20, -8),
    ],
)
def test_mbqm(x, m, s, want):
    assert fp.mbqm(x, m, s) == want


def test_mbqm_left_shift_wraps_like_int32():
    # TFLite multiplies by (1 << s) in int32; the device does the same, so the overflow must wrap, not grow.
    assert fp.mbqm(1 << 30, 1 << 30, 2) == fp.srdhm(0, 1 << 30)


def test_sat_shl_half_sum_clz():
    assert fp.sat_shl(1 << 29, 1) == 1 << 30
    assert fp.sat_shl(1 << 30, 1) == fp.INT32_MAX
    assert fp.sat_shl(-(1 << 30), 1) == fp.INT32_MIN
    assert fp.sat_shl(-(1 << 29), 2) == fp.INT32_MIN
    assert fp.sat_shl(-3, 2) == -12
    assert fp.half_sum(1, 2) == 2
    assert fp.half_sum(-1, -2) == -2
    assert fp.half_sum(0, fp.INT32_MAX) == 1 << 30
    assert fp.half_sum(fp.INT32_MIN, 0) == -(1 << 30)
    assert [fp.clz32(v) for v in (0, 1, -1, fp.INT32_MAX, 1 << 16)] == [32, 31, 0, 1, 15]


@pytest.mark.parametrize("x_real", [0.0, 0.25, 0.5, 0.75, 0.999])
def test_one_over_one_plus_x_approximates_reciprocal(x_real):
    a = min(int(round(x_real * 2**31)), fp.INT32_MAX)
    got = fp.one_over_one_plus_x(a) / 2**31
    assert abs(got - 1.0 / (1.0 + x_real)) < 1e-8 + 2**-30


def test_one_over_one_plus_x_pinned_values():
    # Pinned outputs of gemmlowp's exact sequence; they also appear in tests/vectors/softmax_* via the runtimes.
    assert fp.one_over_one_plus_x(0) == fp.INT32_MAX
    assert fp.one_over_one_plus_x(1 << 30) == 1431655762  # 2/3 after three Newton steps


def test_quantize_multiplier():
    assert fp.quantize_multiplier(0.5) == (1 << 30, 0)
    assert fp.quantize_multiplier(0.25) == (1 << 30, -1)
    assert fp.quantize_multiplier(1.0) == (1 << 30, 1)
    assert fp.quantize_multiplier(0.0) == (0, 0)
    m, s = fp.quantize_multiplier(0.0123)
    assert (1 << 30) <= m < (1 << 31) and abs(m * 2.0 ** (s - 31) - 0.0123) < 1e-10


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(I32, I32, st.integers(0, 31), st.integers(-31, 30)), min_size=1, max_size=20))
def test_vectorized_equals_scalar(rows):
    a = np.array([r[0] for r in rows], dtype=np.int64)
    b = np.array([r[1] for r in rows], dtype=np.int64)
    e = np.array([r[2] for r in rows], dtype=np.int64)
    s = np.array([r[3] for r in rows], dtype=np.int64)
    m = np.abs(b) | (1 << 30)  # a valid multiplier in [2^30, 2^31)
    m = np.minimum(m, fp.INT32_MAX)
    assert list(fp.np_srdhm(a, b)) == [fp.srdhm(int(x), int(y)) for x, y in zip(a, b)]
    assert list(fp.np_rdbpot(a, e)) == [fp.rdbpot(int(x), int(y)) for x, y in zip(a, e)]
    assert list(fp.np_mbqm(a, m, s)) == [fp.mbqm(int(x), int(y), int(z)) for x, y, z in zip(a, m, s)]
    assert list(fp.np_half_sum(a, b)) == [fp.half_sum(int(x), int(y)) for x, y in zip(a, b)]
    assert list(fp.np_clz32(a)) == [fp.clz32(int(x)) for x in a]
    assert list(fp.np_sat_shl(a, 2)) == [fp.sat_shl(int(x), 2) for x in a]
    nonneg = np.abs(a) & 0x7FFFFFFF
    assert list(fp.np_one_over_one_plus_x(nonneg)) == [fp.one_over_one_plus_x(int(x)) for x in nonneg]


def test_single_rounding_differs_from_double_at_ties():
    # 1 * 0.75 * 2^-1 = 0.375: TFLite Micro's double rounding takes SRDHM(1, 0.75) = 1 (0.75 rounds up), then
    # RDBPOT(1, 1) = 1 (0.5 rounds away); TFLITE_SINGLE_ROUNDING (LiteRT wheels) rounds 0.375 once, to 0.
    assert fp.mbqm(1, 3 << 29, -1) == 1
    assert int(fp.np_mbqm_single_rounding(1, 3 << 29, -1)) == 0
    x = np.arange(-5000, 5000, dtype=np.int64)
    single = fp.np_mbqm_single_rounding(x, 1518500250, -7)
    exact = x * (1518500250 / 2**31) * 2.0**-7
    assert np.all(np.abs(single - exact) <= 0.5 + 1e-9)  # one rounding: always the nearest integer
