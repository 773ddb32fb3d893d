"""The blob's integer arithmetic (docs/blob-format.md, "Shared integer arithmetic" and SOFTMAX), stated exactly.

Two statements of the same functions:

* scalar functions on Python ints (`srdhm`, `rdbpot`, `mbqm`, ...) -- the normative, readable form, used by the
  compiler to fold parameters and by tests as the oracle;
* `np_*` functions on NumPy int64 arrays -- the same arithmetic, vectorized for the reference executor.
  Every intermediate fits in int64: an SRDHM product is at most 2^62 in magnitude.

`>>` is an arithmetic shift; "truncating division" rounds toward zero as C's `/` does. Inputs documented as int32
are wrapped to int32 where C would do so (`wrap32`), so the functions never silently compute with wider values
than a 32-bit device.
"""

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def wrap32(v):
    """`v` reduced to int32 two's complement (what C's int32 addition/multiplication gives on every real target)."""
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _trunc_div(n, d):
    """Integer division rounding toward zero (C's `/`), d > 0."""
    q = abs(n) // d
    return q if n >= 0 else -q


def srdhm(a, b):
    """Saturating rounding doubling high multiply of two int32 values (gemmlowp SaturatingRoundingDoublingHighMul)."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _trunc_div(ab + nudge, 1 << 31)


def rdbpot(x, e):
    """Rounding divide by 2^e, 0 <= e <= 31, ties away from zero (gemmlowp RoundingDivideByPOT)."""
    if not 0 <= e <= 31:
        raise ValueError("RDBPOT exponent %d outside 0..31" % e)
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def mbqm(x, m, s):
    """TFLite's MultiplyByQuantizedMultiplier: x * m * 2^(s-31), with TFLite's two roundings.

    m is in [2^30, 2^31) or 0; s in [-31, 30]. The left shift happens in int32, as in TFLite (`x * (1 << s)`).
    """
    if not -31 <= s <= 30:
        raise ValueError("MBQM shift %d outside -31..30" % s)
    left = s if s > 0 else 0
    right = -s if s < 0 else 0
    return rdbpot(srdhm(wrap32(x * (1 << left)), m), right)


def sat_shl(x, k):
    """gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent k: x * 2^k saturated to int32."""
    t = (1 << (31 - k)) - 1
    if x > t:
        return INT32_MAX
    if x < -t:
        return INT32_MIN
    return x * (1 << k)


def half_sum(a, b):
    """gemmlowp RoundingHalfSum on int32: (a + b) / 2 rounded half away from zero."""
    s = a + b
    return _trunc_div(s + (1 if s >= 0 else -1), 2)


def _reciprocal(a, half_sum, srdhm, wrap32, sat_shl):
    """gemmlowp's Newton-Raphson sequence, written once for the exact-int and the NumPy primitives."""
    half_den = half_sum(a, INT32_MAX)
    # 48/17 and -32/17 as gemmlowp's constants (Q2.29 and Q0.31).
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))
    for _ in range(3):
        t = srdhm(half_den, x)
        one_minus = wrap32((1 << 29) - t)
        x = wrap32(x + sat_shl(srdhm(x, one_minus), 2))
    return sat_shl(x, 1)


def one_over_one_plus_x(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 on raw int32 values: input Q0.31 in [0, 1), result Q0.31."""
    return _reciprocal(a, half_sum, srdhm, wrap32, sat_shl)


def clz32(v):
    """Count leading zeros of v read as a u32 (32 for 0)."""
    v &= 0xFFFFFFFF
    return 32 - v.bit_length()


def quantize_multiplier(real):
    """Split a positive real multiplier into (m, s) with real ~= m * 2^(s-31), m in [2^30, 2^31) (TFLite's
    QuantizeMultiplier, frexp + round half away from zero). Returns (0, 0) for 0."""
    import math

    if real == 0.0:
        return 0, 0
    q, s = math.frexp(real)
    m = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)
    if m == (1 << 31):
        m //= 2
        s += 1
    if s < -31:
        return 0, 0
    return m, s


# ----------------------------------------------------------------------------------------------------------------
# Vectorized forms (NumPy int64). Each accepts arrays (or scalars) that broadcast together.


def np_wrap32(v):
    v = np.asarray(v, dtype=np.int64)
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _np_trunc_div_pot(n, e):
    """n / 2^e rounded toward zero, elementwise."""
    return np.where(n >= 0, n >> e, -((-n) >> e))


def np_srdhm(a, b):
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    out = _np_trunc_div_pot(ab + nudge, 31)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), out)


def np_rdbpot(x, e):
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    if np.any((e < 0) | (e > 31)):
        raise ValueError("RDBPOT exponent outside 0..31")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def np_mbqm(x, m, s):
    """Vectorized MBQM; `m` and `s` may be per-channel arrays broadcasting against `x`."""
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if np.any((s < -31) | (s > 30)):
        raise ValueError("MBQM shift outside -31..30")
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    return np_rdbpot(np_srdhm(np_wrap32(x << left), m), right)


def np_mbqm_single_rounding(x, m, s):
    """TFLite's MBQM when built with TFLITE_SINGLE_ROUNDING: one rounding, (x*m + 2^(30-s)) >> (31-s).

    NOT the blob's arithmetic (which is TFLite Micro's double rounding above). The LiteRT wheels on PyPI are built
    this way, so the reference executor can switch to it to reproduce LiteRT exactly when LiteRT is the judge.
    """
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    total = 31 - np.asarray(s, dtype=np.int64)
    return (x * m + (np.int64(1) << (total - 1))) >> total


def np_sat_shl(x, k):
    x = np.asarray(x, dtype=np.int64)
    t = (1 << (31 - k)) - 1
    return np.where(x > t, np.int64(INT32_MAX), np.where(x < -t, np.int64(INT32_MIN), x << k))


def np_half_sum(a, b):
    s = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    s = s + np.where(s >= 0, 1, -1)
    return np.where(s >= 0, s // 2, -((-s) // 2))


def np_one_over_one_plus_x(a):
    return _reciprocal(a, np_half_sum, np_srdhm, np_wrap32, np_sat_shl)


def np_clz32(v):
    """Leading zeros of each element read as u32 (32 for 0)."""
    v = np.asarray(v, dtype=np.int64) & 0xFFFFFFFF
    # An exact bit scan: clearer than bit tricks, and it runs once per softmax row.
    out = np.full(v.shape, 32, dtype=np.int64)
    for bit in range(31, -1, -1):
        hit = (out == 32) & (((v >> bit) & 1) == 1)
        out = np.where(hit, 31 - bit, out)
    return out
