"""ECDSA P-256 / SHA-256 signature verification (FIPS 186-5 §6.4.2) in MicroPython, for the signed manifest.

    from tinyml import p256
    p256.verify(pub, digest, sig)   # pub: 0x04||X||Y (65 B), digest: SHA-256 (32 B), sig: r||s (64 B)
                                    # -> VALID (0), BAD_KEY (1), OUT_OF_RANGE (2) or MISMATCH (3)

Arithmetic is MicroPython's arbitrary-precision int (MICROPY_LONGINT_IMPL_MPZ: the unix, ESP32, RP2 and STM32
ports): a 256-bit product and its reduction run in the VM's C code, so the Python level only sequences them.
Viper does not pay here: its machine words are 32 bits on the ESP32 with no 32x32->64 multiply, so limb arithmetic
in viper would do 16-bit half-limb products one bytecode-free instruction at a time, slower than one mpz call.
Sums are left unreduced (ints do not overflow) and reduced once with the product that uses them.

Points are Jacobian (X, Y, Z) with Z = 0 for the point at infinity; G, Q and G + Q are kept affine so that the
additions in Shamir's trick (u1 G + u2 Q in one pass of 256 doublings) are mixed additions (8M + 3S). Inverses
are pow(a, m - 2, m) (3-argument pow, C in the VM) or, on a port built without it, the extended Euclidean algorithm.
Nothing here is constant-time: the inputs are public. The C twin is inference_module/c/tml_p256.c.
"""

from micropython import const

VALID = const(0)
BAD_KEY = const(1)
OUT_OF_RANGE = const(2)
MISMATCH = const(3)

# SP 800-186 §3.2.1.3
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5


def _euclid_inverse(a, m):
    # invariant: r0 = s0 * a (mod m), r1 = s1 * a (mod m)
    r0, r1, s0, s1 = m, a % m, 0, 1
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        s0, s1 = s1, s0 - q * s1
    return s0 % m if r0 == 1 else 0


def inverse(a, m):
    """a^-1 mod m for prime m and a not divisible by m."""
    try:
        return pow(a, m - 2, m)
    except (TypeError, NotImplementedError):  # MICROPY_PY_BUILTINS_POW3 disabled
        return _euclid_inverse(a, m)


def on_curve(x, y):
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x + 3 * x - B) % P == 0


def decode_point(pub):
    """(x, y) of a SEC 1 uncompressed point (0x04 || X || Y), or None: the point at infinity (0x00), compressed
    points, other lengths, coordinates >= p and points off the curve are all refused."""
    if len(pub) != 65 or pub[0] != 4:
        return None
    x = int.from_bytes(pub[1:33], "big")
    y = int.from_bytes(pub[33:65], "big")
    return (x, y) if on_curve(x, y) else None


def _double(x, y, z):
    # a = -3: delta = Z^2, gamma = Y^2, beta = X gamma, alpha = 3 (X - delta)(X + delta)
    if not z or not y:
        return 0, 1, 0
    p = P
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) * (y + z) - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return x3, y3, z3


def _add_affine(x1, y1, z1, x2, y2):
    # (X1, Y1, Z1) + (x2, y2, 1): U1 = X1, S1 = Y1, U2 = x2 Z1^2, S2 = y2 Z1^3
    p = P
    if not z1:
        return x2, y2, 1
    zz = z1 * z1 % p
    h = (x2 * zz - x1) % p
    r = (y2 * zz * z1 - y1) % p
    if not h:
        return _double(x1, y1, z1) if not r else (0, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - y1 * hhh) % p
    return x3, y3, z1 * h % p


def _to_affine(x, y, z):
    zi = inverse(z, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def verify(pub, digest, sig):
    """FIPS 186-5 §6.4.2 for a SHA-256 digest -> VALID, BAD_KEY, OUT_OF_RANGE or MISMATCH."""
    q = decode_point(pub)
    if q is None:
        return BAD_KEY
    if len(sig) != 64:
        return OUT_OF_RANGE
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if not (0 < r < N and 0 < s < N):
        return OUT_OF_RANGE
    e = int.from_bytes(digest, "big")  # 256 bits = the bit length of n: no truncation
    w = inverse(s, N)
    u1 = e * w % N
    u2 = r * w % N
    # table[i]: affine point for the bits (u1, u2) = (i & 1, i >> 1); G + Q may be infinity (None) or need a doubling
    gq = _add_affine(q[0], q[1], 1, GX, GY)
    table = (None, (GX, GY), q, None if not gq[2] else _to_affine(*gq))
    x, y, z = 0, 1, 0
    for bit in range(255, -1, -1):
        x, y, z = _double(x, y, z)
        pt = table[((u1 >> bit) & 1) | (((u2 >> bit) & 1) << 1)]
        if pt is not None:
            x, y, z = _add_affine(x, y, z, pt[0], pt[1])
    if not z:
        return MISMATCH
    return VALID if _to_affine(x, y, z)[0] % N == r else MISMATCH
