/* C unit tests of the runtime's building blocks (run under ASan + UBSan): SHA-256 against FIPS 180-4 examples,
 * the fast MBQM against a literal transcription of docs/blob-format.md's definition, header checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tml_internal.h"
#include "tml_kernels.h"

#ifndef MBQM_RANDOM
#define MBQM_RANDOM 2000000
#endif

static int failures;
#define CHECK(cond, ...)                                                                                         \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                          \
            printf(__VA_ARGS__);                                                                                 \
            printf("\n");                                                                                        \
            failures++;                                                                                          \
        }                                                                                                        \
    } while (0)

static void hex(const uint8_t *d, char *out)
{
    int i;
    for (i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha_case(const char *msg, size_t reps, const char *want)
{
    tml_sha256 s;
    uint8_t d[32];
    char got[65];
    size_t i, len = strlen(msg);
    tml_sha256_init(&s);
    for (i = 0; i < reps; i++)
        tml_sha256_update(&s, msg, len);
    tml_sha256_final(&s, d);
    hex(d, got);
    CHECK(strcmp(got, want) == 0, "sha256(%.20s x%zu) = %s", msg, reps, got);
}

/* docs/blob-format.md, literally, on exact integers */
static int32_t spec_srdhm(int32_t a, int32_t b)
{
    int64_t ab, nudge;
    if (a == INT32_MIN && b == INT32_MIN)
        return INT32_MAX;
    ab = (int64_t)a * b;
    nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static int32_t spec_rdbpot(int32_t x, int e)
{
    int64_t mask = ((int64_t)1 << e) - 1, rem = x & mask, thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)((x >> e) + (rem > thr ? 1 : 0));
}

static int32_t spec_mbqm(int32_t x, int32_t m, int s)
{
    int32_t xs = (int32_t)((uint32_t)x << (s > 0 ? s : 0));
    return spec_rdbpot(spec_srdhm(xs, m), s > 0 ? 0 : -s);
}

static uint64_t rng = 88172645463325252ull;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void test_mbqm(void)
{
    static const int32_t edge_x[] = {0, 1, -1, 2, -2, INT32_MAX, INT32_MIN, INT32_MIN + 1, 1 << 20, -(1 << 20),
                                     12345, -12345, 1 << 30, -(1 << 30)};
    static const int32_t edge_m[] = {0, 1 << 30, INT32_MAX, (1 << 30) + 1, 1518500250};
    int i, j, s, n = 0;
    for (i = 0; i < (int)(sizeof edge_x / sizeof edge_x[0]); i++)
        for (j = 0; j < (int)(sizeof edge_m / sizeof edge_m[0]); j++)
            for (s = -31; s <= 30; s++) {
                int32_t got = tml_mbqm(edge_x[i], edge_m[j], s), want = spec_mbqm(edge_x[i], edge_m[j], s);
                CHECK(got == want, "mbqm(%d, %d, %d) = %d, spec %d", edge_x[i], edge_m[j], s, got, want);
                got = tml_kernel_mbqm(edge_x[i], edge_m[j], s);
                CHECK(got == want, "kernel mbqm(%d, %d, %d) = %d, spec %d", edge_x[i], edge_m[j], s, got, want);
                n++;
            }
    for (i = 0; i < MBQM_RANDOM; i++) {
        int32_t x = (int32_t)next(), m = (int32_t)((next() & 0x3FFFFFFFu) | 0x40000000u);
        int sh = (int)(next() % 62u) - 31;
        if (i & 1)
            x >>= next() % 31u; /* small magnitudes too */
        int32_t want = spec_mbqm(x, m, sh);
        CHECK(tml_mbqm(x, m, sh) == want, "mbqm(%d, %d, %d)", x, m, sh);
        CHECK(tml_kernel_mbqm(x, m, sh) == want, "kernel mbqm(%d, %d, %d)", x, m, sh);
    }
    CHECK(tml_srdhm(INT32_MIN, INT32_MIN) == INT32_MAX, "srdhm saturation");
    CHECK(tml_rdbpot64(-5, 1) == -3 && tml_rdbpot64(5, 1) == 3 && tml_rdbpot64(-4, 1) == -2, "rdbpot64 rounding");
    (void)n;
}

static void test_header(void)
{
    uint8_t h[64] = {'T', 'M', 'L', 'B', 1, 0, 64, 0, 0, 0, 0, 0, 1, 0, 4, 0, 0, 1, 0, 0};
    char reason[120];
    uint32_t total = 0, arena = 0;
    CHECK(tml_check_header(h, 64, &total, &arena, reason, sizeof reason) == TML_OK && total == 256, "good header");
    h[12] = 2;
    CHECK(tml_check_header(h, 64, NULL, NULL, reason, sizeof reason) == TML_E_HEADER &&
              strstr(reason, "ABI 2") != NULL,
          "ABI 2 named: %s", reason);
    h[12] = 1;
    h[4] = 7;
    CHECK(tml_check_header(h, 64, NULL, NULL, reason, sizeof reason) == TML_E_HEADER && strstr(reason, "7") &&
              strstr(reason, "1"),
          "versions named: %s", reason);
    h[4] = 1;
    CHECK(tml_check_header(h, 63, NULL, NULL, reason, sizeof reason) == TML_E_HEADER, "short header");
    h[0] = 'X';
    CHECK(tml_check_header(h, 64, NULL, NULL, reason, sizeof reason) == TML_E_HEADER, "magic");
}

#if TML_DSP
/* tml_dw3_planes on PATCH tile windows: a tile starting inside the input has a negative pad_top or pad_left, and
 * must give what the op gives on the input cropped to start there with padding 0. Shapes that take both plane
 * layouts: 8 x 48 outputs transposed (the pad_top is then the planes' left padding), 4 x 20 not; stride 2 on
 * dwp_s2f; a lone row. */
static void test_dw3_tile_windows(void)
{
    static const int32_t cases[][6] = {/* Ho, Wo, stride, pad_top, pad_left, C */
                                       {8, 48, 1, -3, 1, 8},  {8, 48, 1, -3, -2, 16}, {4, 20, 1, 1, -5, 8},
                                       {4, 20, 1, -1, -1, 4}, {12, 40, 1, -7, 0, 8},  {4, 12, 2, -2, -3, 8},
                                       {5, 9, 2, 0, -1, 12},  {1, 30, 1, -4, -2, 4}};
    static int8_t x[24 * 60 * 16], xc[24 * 60 * 16], w[9 * 16], want[12 * 48 * 16], got[12 * 48 * 16];
    int32_t bias[16], mult[16], shift[16], p[TML_MAX_PARAMS], pc[TML_MAX_PARAMS];
    uint32_t k, i, r;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const uint32_t Ho = (uint32_t)cases[k][0], Wo = (uint32_t)cases[k][1], s = (uint32_t)cases[k][2];
        const int32_t pt = cases[k][3], pl = cases[k][4];
        const uint32_t C = (uint32_t)cases[k][5], r0 = pt < 0 ? (uint32_t)-pt : 0, c0 = pl < 0 ? (uint32_t)-pl : 0;
        const uint32_t H = (uint32_t)((int32_t)((Ho - 1) * s + 3) - pt), W = (uint32_t)((int32_t)((Wo - 1) * s + 3) - pl);
        int ok, ok_c;
        memset(p, 0, sizeof p);
        p[0] = p[1] = (int32_t)s;
        p[2] = p[3] = 1;
        p[4] = pt;
        p[5] = pl;
        p[6] = 128;
        p[7] = -5;
        p[8] = -128;
        p[9] = 127;
        memcpy(pc, p, sizeof pc);
        pc[4] = pt < 0 ? 0 : pt;
        pc[5] = pl < 0 ? 0 : pl;
        for (i = 0; i < H * W * C; i++)
            x[i] = (int8_t)next();
        for (i = 0; i < 9 * C; i++)
            w[i] = (int8_t)next();
        for (i = 0; i < C; i++) {
            bias[i] = (int32_t)(next() % 20000u) - 10000;
            mult[i] = (int32_t)(0x40000000u | (next() & 0x3fffffffu));
            shift[i] = -(int32_t)(7 + next() % 3u);
        }
        for (r = 0; r < H - r0; r++)
            memcpy(xc + (size_t)r * (W - c0) * C, x + ((size_t)(r + r0) * W + c0) * C, (size_t)(W - c0) * C);
        ok_c = tml_dw3_planes(xc, 1, H - r0, W - c0, C, w, (const uint8_t *)bias, (const uint8_t *)mult,
                              (const uint8_t *)shift, pc, Ho, Wo, want);
        ok = tml_dw3_planes(x, 1, H, W, C, w, (const uint8_t *)bias, (const uint8_t *)mult, (const uint8_t *)shift, p,
                            Ho, Wo, got);
        CHECK(ok && ok_c && memcmp(want, got, (size_t)Ho * Wo * C) == 0,
              "dw3 planes on a tile window %ux%u stride %u pads (%d, %d): %d %d", (unsigned)Ho, (unsigned)Wo,
              (unsigned)s, (int)pt, (int)pl, ok, ok_c);
    }
}
#endif

#ifdef TML_SEMIHOSTING /* the Cortex-M4 build runs under QEMU with semihosting for printf */
extern void initialise_monitor_handles(void);
#endif

int main(void)
{
#ifdef TML_SEMIHOSTING
    initialise_monitor_handles();
#endif
    printf("kernel set: %s\n", tml_kernel_set());
    sha_case("", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_case("abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha_case("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    sha_case("a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    sha_case("0123456701234567012345670123456701234567012345670123456701234567", 10,
             "594847328451bdfa85056225462cc1d867d877fb388df0ce35f25ab5562bfbb5");
    test_mbqm();
    test_header();
#if TML_DSP
    test_dw3_tile_windows();
#endif
    printf("%s (%d failures)\n", failures ? "FAILED" : "OK", failures);
#ifdef TML_SEMIHOSTING
    exit(failures != 0); /* semihosting SYS_EXIT ends QEMU */
#endif
    return failures != 0;
}
