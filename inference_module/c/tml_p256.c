/* ECDSA P-256 verification from the standards: FIPS 186-5 §6.4.2 (the verification steps), SP 800-186 §3.2.1.3
 * (the curve's constants, below as printed there), SEC 1 v2 §2.3.4 and §3.2.2.1 (point decoding and validation).
 *
 * Numbers are 8 little-endian 32-bit words. Coordinates (mod p) are multiplied by schoolbook and reduced with
 * the Solinas reduction FIPS 186-4 §D.2.3 gives for this prime (p = 2^256 - 2^224 + 2^192 + 2^96 - 1: the
 * 512-bit product folds back with word additions only); scalars (mod n, which has no special form) use Montgomery
 * multiplication (CIOS). Why both: a verification spends ~5,000 multiplications mod p and ~400 mod n. Montgomery
 * alone would be one routine for both, but its reduction doubles the word products of each multiplication: it
 * measured 9.4 M Cortex-M4 instructions per verification, too close to the 10 M budget; with Solinas for p it is
 * the figure in docs/manifest.md.
 *
 * Points are Jacobian (X, Y, Z) <-> affine (X/Z^2, Y/Z^3), the point at infinity has Z = 0; the formulas for a = -3
 * are the standard doubling (4M+4S) and addition (12M+4S; 8M+3S when the second point has Z = 1) ones (Guide to
 * Elliptic Curve Cryptography §3.2.2). u1*G + u2*Q is one pass of Shamir's trick over the bits of u1 and u2 (256
 * doublings, ~192 additions, two thirds of them of the affine G or Q). Inverses are Fermat's little theorem,
 * a^(m-2) mod m. Nothing is constant-time: every input is public. */
#include "tml_p256.h"

#include <string.h>

#define WORDS 8

typedef uint32_t fe[WORDS];

/* SP 800-186 §3.2.1.3, P-256 */
static const uint8_t P_BE[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t N_BE[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
static const uint8_t B_BE[32] = {
    0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98, 0x86, 0xbc,
    0x65, 0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e, 0x27, 0xd2, 0x60, 0x4b};
static const uint8_t GX_BE[32] = {
    0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2,
    0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96};
static const uint8_t GY_BE[32] = {
    0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16,
    0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5};

/* A modulus m (odd, 2^255 < m < 2^256) with what Montgomery multiplication needs (R = 2^256; used for n). */
typedef struct {
    fe m;
    fe one; /* R mod m: 1 in Montgomery form */
    fe rr;  /* R^2 mod m: converts into Montgomery form */
    uint32_t m0inv; /* -m^-1 mod 2^32 */
} modulus;

typedef struct {
    fe x, y, z;
} jpoint;

static void load_be(fe out, const uint8_t in[32])
{
    int i;
    for (i = 0; i < WORDS; i++) {
        const uint8_t *q = in + 28 - 4 * i;
        out[i] = ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | (uint32_t)q[3];
    }
}

static int is_zero(const fe a)
{
    uint32_t acc = 0;
    int i;
    for (i = 0; i < WORDS; i++)
        acc |= a[i];
    return acc == 0;
}

static int equal(const fe a, const fe b) { return memcmp(a, b, sizeof(fe)) == 0; }

/* a >= b as 256-bit numbers */
static int geq(const fe a, const fe b)
{
    int i;
    for (i = WORDS - 1; i >= 0; i--)
        if (a[i] != b[i])
            return a[i] > b[i];
    return 1;
}

static uint32_t add_words(fe r, const fe a, const fe b)
{
    uint64_t acc = 0;
    int i;
    for (i = 0; i < WORDS; i++) {
        acc += (uint64_t)a[i] + b[i];
        r[i] = (uint32_t)acc;
        acc >>= 32;
    }
    return (uint32_t)acc;
}

static uint32_t sub_words(fe r, const fe a, const fe b)
{
    uint32_t borrow = 0;
    int i;
    for (i = 0; i < WORDS; i++) {
        uint64_t d = (uint64_t)a[i] - b[i] - borrow;
        r[i] = (uint32_t)d;
        borrow = (uint32_t)(d >> 63); /* wrapped below zero */
    }
    return borrow;
}

/* r = a + b mod m, for a, b < m */
static void mod_add(fe r, const fe a, const fe b, const modulus *M)
{
    if (add_words(r, a, b) || geq(r, M->m))
        sub_words(r, r, M->m);
}

/* r = a - b mod m, for a, b < m */
static void mod_sub(fe r, const fe a, const fe b, const modulus *M)
{
    if (sub_words(r, a, b))
        add_words(r, r, M->m);
}

/* r = a * b / R mod m, for a < R and b < m (then the result before the final subtraction is below 2m). */
static void mont_mul(fe r, const fe a, const fe b, const modulus *M)
{
    uint32_t t[WORDS + 2] = {0};
    int i, j;
    for (i = 0; i < WORDS; i++) {
        uint64_t acc;
        uint32_t carry = 0, u;
        for (j = 0; j < WORDS; j++) {
            acc = (uint64_t)a[j] * b[i] + t[j] + carry; /* <= (2^32-1)^2 + 2(2^32-1) = 2^64-1: no overflow */
            t[j] = (uint32_t)acc;
            carry = (uint32_t)(acc >> 32);
        }
        acc = (uint64_t)t[WORDS] + carry;
        t[WORDS] = (uint32_t)acc;
        t[WORDS + 1] = (uint32_t)(acc >> 32);
        /* add u*m, u chosen so that the lowest word becomes 0, and shift one word down */
        u = (uint32_t)((uint64_t)t[0] * M->m0inv);
        acc = (uint64_t)u * M->m[0] + t[0];
        carry = (uint32_t)(acc >> 32);
        for (j = 1; j < WORDS; j++) {
            acc = (uint64_t)u * M->m[j] + t[j] + carry;
            t[j - 1] = (uint32_t)acc;
            carry = (uint32_t)(acc >> 32);
        }
        acc = (uint64_t)t[WORDS] + carry;
        t[WORDS - 1] = (uint32_t)acc;
        t[WORDS] = t[WORDS + 1] + (uint32_t)(acc >> 32);
    }
    if (t[WORDS] || geq(t, M->m))
        sub_words(t, t, M->m);
    memcpy(r, t, sizeof(fe));
}

static void to_mont(fe r, const fe a, const modulus *M) { mont_mul(r, a, M->rr, M); }

/* t = a * b, 16 words (schoolbook, one row of the multiplier at a time) */
static void mul_wide(uint32_t t[2 * WORDS], const fe a, const fe b)
{
    int i, j;
    memset(t, 0, 2 * WORDS * sizeof(uint32_t));
    for (i = 0; i < WORDS; i++) {
        uint32_t carry = 0;
        for (j = 0; j < WORDS; j++) {
            uint64_t acc = (uint64_t)a[j] * b[i] + t[i + j] + carry; /* <= 2^64 - 1 */
            t[i + j] = (uint32_t)acc;
            carry = (uint32_t)(acc >> 32);
        }
        t[i + WORDS] = carry;
    }
}

/* value = sum * 2^32k of the signed word sums s[k] -> r (8 words) + returned top (value = r + top * 2^256).
 * Divisions are of exact multiples of 2^32, so no signed shift (implementation-defined) is involved. */
static int64_t carry_words(fe r, const int64_t s[WORDS])
{
    int64_t carry = 0;
    int i;
    for (i = 0; i < WORDS; i++) {
        int64_t acc = s[i] + carry;
        r[i] = (uint32_t)acc; /* modulo 2^32, well defined for negative values */
        carry = (acc - (int64_t)r[i]) / 4294967296;
    }
    return carry;
}

/* r = a * b mod p. FIPS 186-4 §D.2.3: with c0..c15 the product's words,
 *   r = s1 + 2 s2 + 2 s3 + s4 + s5 - s6 - s7 - s8 - s9 mod p, collected here per result word; then the top is
 * folded with 2^256 = 2^224 - 2^192 - 2^96 + 1 (mod p) and at most a few p are added or subtracted. */
static void mul_p(fe r, const fe a, const fe b, const modulus *F)
{
    uint32_t c[2 * WORDS];
    int64_t s[WORDS], top;
    mul_wide(c, a, b);
#define C(i) ((int64_t)c[i])
    s[0] = C(0) + C(8) + C(9) - C(11) - C(12) - C(13) - C(14);
    s[1] = C(1) + C(9) + C(10) - C(12) - C(13) - C(14) - C(15);
    s[2] = C(2) + C(10) + C(11) - C(13) - C(14) - C(15);
    s[3] = C(3) + 2 * C(11) + 2 * C(12) + C(13) - C(15) - C(8) - C(9);
    s[4] = C(4) + 2 * C(12) + 2 * C(13) + C(14) - C(9) - C(10);
    s[5] = C(5) + 2 * C(13) + 2 * C(14) + C(15) - C(10) - C(11);
    s[6] = C(6) + 3 * C(14) + 2 * C(15) + C(13) - C(8) - C(9);
    s[7] = C(7) + 3 * C(15) + C(8) - C(10) - C(11) - C(12) - C(13);
#undef C
    top = carry_words(r, s); /* |top| < 8 */
    if (top) {
        int i;
        for (i = 0; i < WORDS; i++)
            s[i] = r[i];
        s[0] += top;
        s[3] -= top;
        s[6] -= top;
        s[7] += top;
        top = carry_words(r, s); /* now -1, 0 or 1 */
    }
    while (top < 0)
        top += add_words(r, r, F->m);
    while (top > 0 || geq(r, F->m))
        top -= sub_words(r, r, F->m);
}

static void sqr_p(fe r, const fe a, const modulus *F) { mul_p(r, a, a, F); }

typedef void (*mul_fn)(fe r, const fe a, const fe b, const modulus *M);

/* r = a^(m-2) = a^-1 mod m for a != 0, with mul (mul_p, or mont_mul on Montgomery-form values) */
static void inverse(fe r, const fe a, const modulus *M, mul_fn mul)
{
    fe e, acc;
    int bit;
    memcpy(e, M->m, sizeof(fe));
    e[0] -= 2; /* m is odd and its low word is > 2 for both moduli: no borrow */
    memcpy(acc, a, sizeof(fe)); /* the top bit of m-2 is 1 */
    for (bit = 254; bit >= 0; bit--) {
        mul(acc, acc, acc, M);
        if ((e[bit >> 5] >> (bit & 31)) & 1u)
            mul(acc, acc, a, M);
    }
    memcpy(r, acc, sizeof(fe));
}

static void modulus_init(modulus *M, const uint8_t m_be[32])
{
    uint32_t inv = 1;
    int i;
    static const fe zero = {0};
    load_be(M->m, m_be);
    /* Newton's iteration for m[0]^-1 mod 2^32: each step doubles the number of correct low bits (1 -> 32). */
    for (i = 0; i < 5; i++)
        inv = (uint32_t)((uint64_t)inv * (2u - (uint32_t)((uint64_t)M->m[0] * inv)));
    M->m0inv = 0u - inv;
    sub_words(M->one, zero, M->m); /* 2^256 - m = R mod m, since m > 2^255 */
    memcpy(M->rr, M->one, sizeof(fe));
    for (i = 0; i < 256; i++) /* R * 2^256 = R^2 */
        mod_add(M->rr, M->rr, M->rr, M);
}

/* r = 2a (Jacobian, a = -3). r may be a. */
static void point_double(jpoint *r, const jpoint *a, const modulus *F)
{
    fe delta, gamma, beta, alpha, t, x3, y3, z3;
    if (is_zero(a->z) || is_zero(a->y)) { /* y = 0 has no point of order 2 on P-256; kept for totality */
        memset(r, 0, sizeof *r);
        return;
    }
    sqr_p(delta, a->z, F);
    sqr_p(gamma, a->y, F);
    mul_p(beta, a->x, gamma, F);
    mod_sub(t, a->x, delta, F);
    mod_add(alpha, a->x, delta, F);
    mul_p(alpha, alpha, t, F);
    mod_add(t, alpha, alpha, F);
    mod_add(alpha, alpha, t, F); /* alpha = 3 (x - delta)(x + delta) */
    sqr_p(x3, alpha, F);
    mod_add(t, beta, beta, F);
    mod_add(t, t, t, F); /* 4 beta */
    mod_sub(x3, x3, t, F);
    mod_sub(x3, x3, t, F); /* alpha^2 - 8 beta */
    mod_add(z3, a->y, a->z, F);
    sqr_p(z3, z3, F);
    mod_sub(z3, z3, gamma, F);
    mod_sub(z3, z3, delta, F); /* (y + z)^2 - gamma - delta = 2yz */
    mod_sub(t, t, x3, F);
    mul_p(y3, alpha, t, F);
    sqr_p(gamma, gamma, F);
    mod_add(gamma, gamma, gamma, F);
    mod_add(gamma, gamma, gamma, F);
    mod_add(gamma, gamma, gamma, F); /* 8 gamma^2 */
    mod_sub(y3, y3, gamma, F);
    memcpy(r->x, x3, sizeof(fe));
    memcpy(r->y, y3, sizeof(fe));
    memcpy(r->z, z3, sizeof(fe));
}

static const fe ONE = {1, 0, 0, 0, 0, 0, 0, 0};

/* r = a + b (Jacobian), every case: either at infinity, a = b (doubling), a = -b (infinity). r may be a or b.
 * When b is affine (Z = 1) the products with b's Z are skipped (8M + 3S instead of 12M + 4S). */
static void point_add(jpoint *r, const jpoint *a, const jpoint *b, const modulus *F)
{
    fe z1z1, z2z2, u1, u2, s1, s2, h, rr, hh, hhh, v, x3, y3, z3;
    int b_affine = equal(b->z, ONE);
    if (is_zero(a->z)) {
        *r = *b;
        return;
    }
    if (is_zero(b->z)) {
        *r = *a;
        return;
    }
    sqr_p(z1z1, a->z, F);
    if (b_affine) {
        memcpy(u1, a->x, sizeof(fe));
        memcpy(s1, a->y, sizeof(fe));
    } else {
        sqr_p(z2z2, b->z, F);
        mul_p(u1, a->x, z2z2, F);
        mul_p(s1, a->y, b->z, F);
        mul_p(s1, s1, z2z2, F);
    }
    mul_p(u2, b->x, z1z1, F);
    mul_p(s2, b->y, a->z, F);
    mul_p(s2, s2, z1z1, F);
    mod_sub(h, u2, u1, F);
    mod_sub(rr, s2, s1, F);
    if (is_zero(h)) {
        if (is_zero(rr))
            point_double(r, a, F);
        else
            memset(r, 0, sizeof *r);
        return;
    }
    sqr_p(hh, h, F);
    mul_p(hhh, h, hh, F);
    mul_p(v, u1, hh, F);
    sqr_p(x3, rr, F);
    mod_sub(x3, x3, hhh, F);
    mod_sub(x3, x3, v, F);
    mod_sub(x3, x3, v, F); /* r^2 - h^3 - 2 u1 h^2 */
    mod_sub(y3, v, x3, F);
    mul_p(y3, y3, rr, F);
    mul_p(s1, s1, hhh, F);
    mod_sub(y3, y3, s1, F); /* r (u1 h^2 - x3) - s1 h^3 */
    if (b_affine)
        mul_p(z3, a->z, h, F);
    else {
        mul_p(z3, a->z, b->z, F);
        mul_p(z3, z3, h, F);
    }
    memcpy(r->x, x3, sizeof(fe));
    memcpy(r->y, y3, sizeof(fe));
    memcpy(r->z, z3, sizeof(fe));
}

/* Decode and validate 0x04 || X || Y into an affine point (Z = 1). 0 when invalid. */
static int decode_point(jpoint *q, const uint8_t pub[65], const modulus *F)
{
    fe lhs, rhs, t;
    if (pub[0] != 0x04) /* 0x00 is the point at infinity; compressed points (0x02/0x03) are not accepted */
        return 0;
    load_be(q->x, pub + 1);
    load_be(q->y, pub + 33);
    if (geq(q->x, F->m) || geq(q->y, F->m))
        return 0;
    memcpy(q->z, ONE, sizeof(fe));
    /* y^2 = x^3 - 3x + b */
    sqr_p(lhs, q->y, F);
    sqr_p(rhs, q->x, F);
    mul_p(rhs, rhs, q->x, F);
    mod_add(t, q->x, q->x, F);
    mod_add(t, t, q->x, F);
    mod_sub(rhs, rhs, t, F);
    load_be(t, B_BE);
    mod_add(rhs, rhs, t, F);
    return equal(lhs, rhs);
}

int tml_p256_public_key_valid(const uint8_t pub[65])
{
    modulus F;
    jpoint q;
    load_be(F.m, P_BE); /* the field needs only p itself */
    return decode_point(&q, pub, &F);
}

static int bit_of(const fe a, int bit) { return (int)((a[bit >> 5] >> (bit & 31)) & 1u); }

tml_p256_result tml_p256_verify(const uint8_t pub[65], const uint8_t digest[32], const uint8_t sig[64])
{
    modulus F, N;
    jpoint table[4], acc; /* table[1] = G, [2] = Q, [3] = G + Q */
    fe r, s, e, w, u1, u2, t;
    int bit;
    load_be(F.m, P_BE);
    if (!decode_point(&table[2], pub, &F))
        return TML_P256_BAD_KEY;
    /* FIPS 186-5 §6.4.2 step 1: r and s in [1, n-1] */
    modulus_init(&N, N_BE);
    load_be(r, sig);
    load_be(s, sig + 32);
    if (is_zero(r) || is_zero(s) || geq(r, N.m) || geq(s, N.m))
        return TML_P256_OUT_OF_RANGE;
    /* step 3-4: e = the digest as an integer (256 bits = the bit length of n: no truncation), reduced mod n */
    load_be(e, digest);
    if (geq(e, N.m))
        sub_words(e, e, N.m);
    /* step 5: w = s^-1, u1 = e w, u2 = r w. With w in Montgomery form, mont_mul(e, w) = e * w mod n directly. */
    to_mont(t, s, &N);
    inverse(w, t, &N, mont_mul);
    mont_mul(u1, e, w, &N);
    mont_mul(u2, r, w, &N);
    /* step 6: R = u1 G + u2 Q */
    load_be(table[1].x, GX_BE);
    load_be(table[1].y, GY_BE);
    memcpy(table[1].z, ONE, sizeof(fe));
    point_add(&table[3], &table[2], &table[1], &F);
    memset(&acc, 0, sizeof acc);
    for (bit = 255; bit >= 0; bit--) {
        int idx = bit_of(u1, bit) | (bit_of(u2, bit) << 1);
        point_double(&acc, &acc, &F);
        if (idx)
            point_add(&acc, &acc, &table[idx], &F);
    }
    if (is_zero(acc.z)) /* step 7: R at infinity */
        return TML_P256_MISMATCH;
    /* step 8: x of R in affine coordinates, mod n; step 9: compare with r */
    inverse(t, acc.z, &F, mul_p);
    sqr_p(t, t, &F);
    mul_p(t, acc.x, t, &F);
    if (geq(t, N.m))
        sub_words(t, t, N.m);
    return equal(t, r) ? TML_P256_VALID : TML_P256_MISMATCH;
}
