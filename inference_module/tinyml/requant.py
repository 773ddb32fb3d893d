"""Viper requantization: int32 accumulators -> int8 via MBQM (docs/blob-format.md §5), bit-exact.

SRDHM needs the high half of a 32x32-bit product. A viper `int` is a machine word, so there are two
versions of each routine, picked once at import time:

* WIDE (64-bit words, e.g. the unix port on x64): the product fits a word; SRDHM = (a*m + 2^30) >> 31.
* 32-bit words (ESP32, Cortex-M): the product is assembled from 16-bit limbs so that no intermediate value leaves
  the int32 range (the bounds are argued next to each line and checked by tests/device/test_fixedpoint.py).

For m >= 0, SRDHM(a, m) = floor((a*m + 2^30) / 2^31): TFLite's nudge-and-truncate equals "floor, then add 1 if
the remainder is >= 2^30" for both signs of a*m. Multipliers are 0 or in [2^30, 2^31), except MEAN's, which may
be anything in [0, 2^31) (TFLite Micro folds 1/count into it); nothing below depends on m >= 2^30: the wide
product fits a 64-bit word and the limb algorithm is exact for every 0 <= m < 2^31.

ptr32 loads are unsigned on 64-bit ports, so every loaded int32 is sign-extended portably via its 16-bit halves.
"""

import sys
import micropython

WIDE = sys.maxsize > 0x7FFFFFFF


@micropython.viper
def srdhm_pos32(a: int, b: int) -> int:
    """SRDHM(a, b) for int32 a and 0 <= b < 2^31 using only int32 intermediates (the 32-bit path, callable)."""
    al = a & 0xFFFF  # [0, 2^16)
    ah = a >> 16  # [-2^15, 2^15)
    bl = b & 0xFFFF  # [0, 2^16)
    bh = b >> 16  # [0, 2^15)
    t = al * (bl >> 1)  # < 2^31
    lr = (t & 0x7FFF) * 2 + al * (bl & 1)  # < 2^17
    lo_hi = (t >> 15) + (lr >> 16)  # (al*bl) >> 16, < 2^17
    lo_lo = lr & 0xFFFF  # (al*bl) & 0xFFFF
    m1 = ah * bl  # |m1| < 2^31
    m2 = al * bh  # < 2^31
    low = (m1 & 0x7FFF) + (m2 & 0x7FFF) + (lo_hi & 0x7FFF)  # < 3 * 2^15
    q = (m1 >> 15) + (m2 >> 15) + (lo_hi >> 15) + (low >> 15)  # |q| < 2^17
    f = 2 * ah * bh + q  # floor(a*b / 2^31); |2*ah*bh| < 2^31, the sum is the (in-range) result
    r = ((low & 0x7FFF) << 16) | lo_lo  # (a*b) mod 2^31, in [0, 2^31)
    return f + (r >> 30)  # r >> 30 is 1 iff r >= 2^30


@micropython.viper
def _mbqm_vec_w(buf: ptr32, n: int, m: int, s: int):
    """buf[i] = MBQM(buf[i], m, s) in place (m >= 0)."""
    rnd = 1 << 15
    rnd = rnd << 15
    for i in range(n):
        v = int(buf[i])
        v = (((((v >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (v & 0xFFFF)
        if s > 0:
            v = v << s
        v = (v * m + rnd) >> 31
        if s < 0:
            e = 0 - s
            mask = (1 << e) - 1
            th = mask >> 1
            if v < 0:
                th += 1
            rem = v & mask
            v = v >> e
            if rem > th:
                v += 1
        buf[i] = v


@micropython.viper
def _mbqm_vec_32(buf: ptr32, n: int, b: int, s: int):
    bl = b & 0xFFFF; bh = b >> 16
    for i in range(n):
        a = int(buf[i])
        a = (((((a >> 16) & 0xFFFF) ^ 0x8000) - 0x8000) << 16) | (a & 0xFFFF)
        if s > 0:
            a = a << s
        al = a & 0xFFFF; ah = a >> 16
        t = al * (bl >> 1)
        lr = (t & 0x7FFF) * 2 + al * (bl & 1)
        lo_hi = (t >> 15) + (lr >> 16)
        m1 = ah * bl; m2 = al * bh
        low = (m1 & 0x7FFF) + (m2 & 0x7FFF) + (lo_hi & 0x7FFF)
        v = 2 * ah * bh + (m1 >> 15) + (m2 >> 15) + (lo_hi >> 15) + (low >> 15)
        v += ((((low & 0x7FFF) << 16) | (lr & 0xFFFF)) >> 30)
        if s < 0:
            e = 0 - s
            mask = (1 << e) - 1
            th = mask >> 1
            if v < 0:
                th += 1
            rem = v & mask
            v = v >> e
            if rem > th:
                v += 1
        buf[i] = v


mbqm_vec = _mbqm_vec_w if WIDE else _mbqm_vec_32
wide = 1 if WIDE else 0  # which product the kernel that requantizes inline (conv.py) takes


def use_32bit_path(on=True):
    """Tests: run the 32-bit-word routines on a 64-bit port (they are exact on any word size >= 32)."""
    global mbqm_vec, wide
    wide = 1 if WIDE and not on else 0
    mbqm_vec = _mbqm_vec_w if wide else _mbqm_vec_32
