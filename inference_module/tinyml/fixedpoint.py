"""TFLite's fixed-point helpers on exact Python integers (docs/blob-format.md §5 "Shared integer arithmetic").

These are the readable definitions: reference kernels and SOFTMAX use them. The hot kernels use the viper
versions in requant.py, which tests check against these.
"""

INT32_MIN = -0x80000000
INT32_MAX = 0x7FFFFFFF


def wrap32(v):
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def tdiv(a, b):
    """Integer division truncating toward zero, as in C."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def srdhm(a, b):
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    return tdiv(ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30)), 1 << 31)


def rdbpot(x, e):
    mask = (1 << e) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if (x & mask) > threshold else 0)


def mbqm(x, m, s):
    return rdbpot(srdhm(x * (1 << max(s, 0)), m), max(-s, 0))


def half_sum(a, b):
    s = a + b
    return tdiv(s + (1 if s >= 0 else -1), 2)


def sat_shl(x, k):
    t = (1 << (31 - k)) - 1
    if x > t:
        return INT32_MAX
    if x < -t:
        return INT32_MIN
    return x << k


def one_over_one_plus_x(a):
    """gemmlowp's Newton-Raphson reciprocal 1/(1+a), a in Q0.31; result Q0.31."""
    half_den = half_sum(a, INT32_MAX)
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))
    for _ in range(3):
        t = srdhm(half_den, x)
        one_minus = wrap32((1 << 29) - t)
        x = wrap32(x + sat_shl(srdhm(x, one_minus), 2))
    return sat_shl(x, 1)


def clz32(v):
    n = 0
    while n < 32 and not v & (0x80000000 >> n):
        n += 1
    return n


def softmax_row(xs, table):
    """xs: int8 values of one row; table: 256 exp values (Q0.31). Returns the int8 outputs."""
    mx = max(xs)
    total = 0
    for v in xs:
        total += rdbpot(table[mx - v], 12)
    headroom = clz32(total)
    recip = one_over_one_plus_x(wrap32((total << headroom) - (1 << 31)))
    e = (12 - headroom) + 31 - 8
    out = []
    for v in xs:
        r = rdbpot(srdhm(recip, table[mx - v]), e) - 128
        out.append(-128 if r < -128 else 127 if r > 127 else r)
    return out
