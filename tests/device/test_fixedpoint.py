"""Exactness of the requantization arithmetic, including the 32-bit-word (16-bit limb) path used on ESP32 and
Cortex-M. The limb algorithm is replayed here with every intermediate checked against the int32 range (that is
what makes it correct with 32-bit viper ints), and the device's viper routines are compared with exact results."""

import random

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

EDGE_A = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -(1 << 30) - 1, -65536, -65535, -32769, -32768, -1, 0, 1, 32767,
          32768, 65535, 65536, (1 << 30) - 1, 1 << 30, INT32_MAX - 1, INT32_MAX, 123456789, -987654321]
EDGE_M = [0, 1, 0xFFFF, 0x10000, 1 << 30, (1 << 30) + 1, 0x5A5A5A5A, 0x7FFF8000, 0x7FFFFFFF, 1518500250]


def tdiv(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def srdhm_exact(a, b):
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    return tdiv(ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30)), 1 << 31)


def rdbpot_exact(x, e):
    mask = (1 << e) - 1
    return (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


def mbqm_exact(x, m, s):
    return rdbpot_exact(srdhm_exact(x * (1 << max(s, 0)), m), max(-s, 0))


class I32:
    """An int that fails the test if it ever leaves the int32 range (i.e. would wrap on a 32-bit viper int)."""

    def __init__(self, v):
        assert INT32_MIN <= v <= INT32_MAX, "intermediate %d leaves int32" % v
        self.v = v

    def _o(self, other):
        return other.v if isinstance(other, I32) else other

    def __add__(self, o): return I32(self.v + self._o(o))
    def __sub__(self, o): return I32(self.v - self._o(o))
    def __mul__(self, o): return I32(self.v * self._o(o))
    def __rmul__(self, o): return I32(self._o(o) * self.v)
    def __and__(self, o): return I32(self.v & self._o(o))
    def __or__(self, o): return I32(self.v | self._o(o))
    def __rshift__(self, o): return I32(self.v >> self._o(o))
    def __lshift__(self, o): return I32(self.v << self._o(o))


def srdhm_limbs(a, b):
    """Line for line the body of tinyml.requant.srdhm_pos32 (and the inlined copies in _mbqm_vec_32 and
    tinyml.conv.conv), on checked ints. Valid for int32 a and 0 <= b < 2^31."""
    a, b = I32(a), I32(b)
    al = a & 0xFFFF
    ah = a >> 16
    bl = b & 0xFFFF
    bh = b >> 16
    t = al * (bl >> 1)
    lr = (t & 0x7FFF) * 2 + al * (bl & 1)
    lo_hi = (t >> 15) + (lr >> 16)
    lo_lo = lr & 0xFFFF
    m1 = ah * bl
    m2 = al * bh
    low = (m1 & 0x7FFF) + (m2 & 0x7FFF) + (lo_hi & 0x7FFF)
    q = (m1 >> 15) + (m2 >> 15) + (lo_hi >> 15) + (low >> 15)
    f = 2 * ah * bh + q
    r = ((low & 0x7FFF) << 16) | lo_lo
    return (f + (r >> 30)).v


def test_limb_srdhm_stays_in_int32_and_is_exact():
    rng = random.Random(7)
    cases = [(a, m) for a in EDGE_A for m in EDGE_M]
    cases += [(rng.randint(INT32_MIN, INT32_MAX), rng.randint(0, INT32_MAX)) for _ in range(20000)]
    for a, m in cases:
        assert srdhm_limbs(a, m) == srdhm_exact(a, m), (a, m)


def test_device_requant_matches_exact_on_both_word_paths(mpy_script):
    rng = random.Random(11)
    shifts = [-31, -30, -17, -8, -1, 0, 1, 5, 12]
    cases = []
    for s in shifts:
        for m in EDGE_M:
            for a in EDGE_A:
                x = a >> max(s, 0)  # x * 2^s stays int32, as in every blob
                cases.append((x, m, s))
    cases += [(rng.randint(INT32_MIN, INT32_MAX) >> 8, rng.randint(1 << 30, INT32_MAX), rng.randint(-31, 7))
              for _ in range(3000)]
    srd = [(a, m) for a in EDGE_A for m in EDGE_M]
    code = """
import array, tinyml.requant as R
srd = %r
cases = %r
print(' '.join(str(R.srdhm_pos32(a, m)) for a, m in srd))
for vec in (R._mbqm_vec_w, R._mbqm_vec_32):
    out = []
    for x, m, s in cases:
        buf = array.array('i', [x])
        vec(buf, 1, m, s)
        out.append(buf[0])
    print(' '.join(str(v) for v in out))
# The fused conv kernel's inline copies, both word paths: a one-input FULLY_CONNECTED whose input and weight are 0,
# so that its accumulator is the bias, x (requantized unclamped, the low byte stored).
import tinyml.conv as C
w, arena, acc = bytearray(1), bytearray(2), bytearray(4)
for wide in (1, 0):
    out = []
    for x, m, s in cases:
        vec = array.array('i', [x, m, s])   # bias, mult, shift
        c = array.array('i', [0, 0, 1, 1, 0, 0, 1, 0, 0, 1, 3, 0, 0, -128, 0, 1, 1, 0, 1, 2, 0, 0, -2147483647,
                              2147483647, wide, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0])
        C.put_address(c, 39, vec)
        C.put_address(c, 41, acc)
        C.conv(w, acc, arena, c)
        out.append(arena[1])
    print(' '.join(str(v) for v in out))
""" % (srd, cases)
    lines = mpy_script(code, heap="4m").stdout.split("\n")
    assert [int(v) for v in lines[0].split()] == [srdhm_exact(a, m) for a, m in srd]
    exact = [mbqm_exact(x, m, s) for x, m, s in cases]
    assert [int(v) for v in lines[1].split()] == exact  # 64-bit path
    assert [int(v) for v in lines[2].split()] == exact  # 32-bit limb path
    for line in lines[3:5]:  # conv writes the low byte of the (unclamped here) result
        assert [int(v) for v in line.split()] == [v & 0xFF for v in exact]
