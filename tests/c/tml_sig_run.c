/* Runs the C signature verifier (tml_p256.c, tml_cose.c) over commands, one a line, from a file (argv[1], or stdin;
 * on the Cortex-M4 build, tml_sig_input.txt in QEMU's directory through semihosting). Used by
 * tests/signing/ (host, ASan + UBSan) and bench/signing_cost.py (Cortex-M4 under QEMU). Fields are hex, "-" is empty.
 *   anchor KID||POINT          add a trust anchor (hex)           -> (nothing)
 *   ecdsa PUB MSG SIG          SHA-256(MSG), then tml_p256_verify -> valid | invalid key|range|mismatch|size
 *   cose ENVELOPE              tml_cose_verify with the anchors   -> ok SEQ NAME VERSION | refused REASON
 *   manifest PAYLOAD           tml_manifest_parse                 -> ok SEQ NAME VERSION | refused REASON
 *   update PAYLOAD             tml_anchor_update_parse            -> ok SEQ VENDOR POINT REVOKE|- | refused REASON
 *   admit VENDOR CLASS INSTALLED ENVELOPE   tml_cose_verify, then tml_manifest_admit; INSTALLED is the slot's
 *                              sequence (8 bytes, big-endian) || blob SHA-256, or 00 for an empty slot
 *   bench PUB MSG SIG ENV      cycles and stack of one verification (Cortex-M4 build: SysTick, painted stack) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tml.h"
#include "tml_cose.h"
#include "tml_p256.h"

#ifdef TML_SEMIHOSTING
#include "systick.h"
extern void initialise_monitor_handles(void);
extern uint32_t __pool_end; /* lowest address of the stack region (firmware/common/common.ld) */
#endif

#define LINE_MAX_BYTES 16384
#define MAX_ANCHORS 4

static char line[LINE_MAX_BYTES];
static uint8_t field_bytes[4][LINE_MAX_BYTES / 2];
static uint32_t field_len[4];
static tml_anchor anchors[MAX_ANCHORS];
static uint32_t n_anchors;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Split the arguments after the command into hex fields -> number of fields, or -1 when one is not hex. */
static int parse_fields(char *args)
{
    int n = 0;
    char *tok = strtok(args, " \r\n");
    while (tok && n < 4) {
        size_t len = strlen(tok), i;
        if (!strcmp(tok, "-")) /* an empty field */
            len = 0;
        if (len % 2)
            return -1;
        for (i = 0; i < len / 2; i++) {
            int hi = hexval(tok[2 * i]), lo = hexval(tok[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            field_bytes[n][i] = (uint8_t)(hi * 16 + lo);
        }
        field_len[n++] = (uint32_t)(len / 2);
        tok = strtok(NULL, " \r\n");
    }
    return n;
}

static const char *ecdsa(const uint8_t *pub, uint32_t pub_len, const uint8_t *msg, uint32_t msg_len,
                         const uint8_t *sig, uint32_t sig_len)
{
    static const char *names[] = {"valid", "invalid key", "invalid range", "invalid mismatch"};
    tml_sha256 h;
    uint8_t digest[32];
    if (pub_len != 65)
        return names[TML_P256_BAD_KEY];
    if (sig_len != 64)
        return "invalid size";
    tml_sha256_init(&h);
    tml_sha256_update(&h, msg, msg_len);
    tml_sha256_final(&h, digest);
    return names[tml_p256_verify(pub, digest, sig)];
}

static void print_manifest(const char *why, const tml_manifest *m)
{
    if (why) {
        printf("refused %s\n", why);
        return;
    }
    printf("ok %lu %.*s %.*s\n", (unsigned long)m->sequence, (int)m->name.len, (const char *)m->name.p,
           (int)m->version.len, (const char *)m->version.p);
}

static void print_hex(const uint8_t *p, uint32_t n)
{
    while (n--)
        printf("%02x", *p++);
}

static void print_update(const uint8_t *payload, uint32_t len)
{
    tml_anchor_update u;
    const char *why = tml_anchor_update_parse(payload, len, &u);
    if (why) {
        printf("refused %s\n", why);
        return;
    }
    printf("ok %lu ", (unsigned long)u.sequence);
    print_hex(u.vendor_id, 16);
    printf(" ");
    print_hex(u.point, 65);
    printf(" ");
    if (u.has_revoke)
        print_hex(u.revoke, TML_KID_BYTES);
    else
        printf("-");
    printf("\n");
}

#ifdef TML_SEMIHOSTING
#define PAINT 0xa5a5a5a5u
/* Stack bytes used by fn(): paint the free stack below the current one, run, find the deepest overwritten word. */
static uint32_t stack_used(void (*fn)(void))
{
    uint32_t sp, *w;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (w = &__pool_end; (uintptr_t)w < sp - 64; w++)
        *w = PAINT;
    fn();
    for (w = &__pool_end; *w == PAINT; w++) {
    }
    return sp - (uint32_t)(uintptr_t)w;
}

static void bench_verify(void)
{
    uint8_t digest[32];
    tml_sha256 h;
    tml_sha256_init(&h);
    tml_sha256_update(&h, field_bytes[1], field_len[1]);
    tml_sha256_final(&h, digest);
    if (tml_p256_verify(field_bytes[0], digest, field_bytes[2]) != TML_P256_VALID)
        printf("bench: the signature did not verify\n");
}

static void bench_cose(void)
{
    tml_manifest m;
    const char *why = tml_cose_verify(field_bytes[3], field_len[3], anchors, n_anchors, &m);
    if (why)
        printf("bench: the envelope was refused: %s\n", why);
}

static void bench(void)
{
    uint64_t t0, t1, t2;
    uint32_t s_verify, s_cose;
    t0 = systick_cycles(); /* running since main() */
    bench_verify();
    t1 = systick_cycles();
    bench_cose();
    t2 = systick_cycles();
    s_verify = stack_used(bench_verify);
    s_cose = stack_used(bench_cose);
    printf("bench verify_cycles=%lu cose_cycles=%lu verify_stack=%lu cose_stack=%lu\n", (unsigned long)(t1 - t0),
           (unsigned long)(t2 - t1), (unsigned long)s_verify, (unsigned long)s_cose);
}
#endif

static const char *admit(void)
{
    tml_manifest m;
    tml_installed slot;
    const char *why;
    uint32_t i;
    if (field_len[0] != 16 || field_len[1] != 16 || (field_len[2] != 1 && field_len[2] != 40))
        return "bad arguments";
    why = tml_cose_verify(field_bytes[3], field_len[3], anchors, n_anchors, &m);
    if (why)
        return why;
    slot.sequence = 0;
    for (i = 0; i < 8 && field_len[2] == 40; i++)
        slot.sequence = (slot.sequence << 8) | field_bytes[2][i];
    memcpy(slot.blob_sha256, field_bytes[2] + 8, 32);
    return tml_manifest_admit(&m, field_bytes[0], field_bytes[1], field_len[2] == 40 ? &slot : NULL);
}

static void run_line(char *text)
{
    char *cmd = text, *args = text;
    tml_manifest m;
    const char *why;
    int n;
    while (*args && *args != ' ' && *args != '\n' && *args != '\r')
        args++;
    if (*args)
        *args++ = '\0';
    n = parse_fields(args);
    if (n < 0) {
        printf("error not hex\n");
    } else if (!strcmp(cmd, "anchor") && n == 1 && field_len[0] == TML_KID_BYTES + 65 && n_anchors < MAX_ANCHORS) {
        memcpy(anchors[n_anchors].kid, field_bytes[0], TML_KID_BYTES);
        memcpy(anchors[n_anchors].point, field_bytes[0] + TML_KID_BYTES, 65);
        n_anchors++;
    } else if (!strcmp(cmd, "ecdsa") && n == 3) {
        printf("%s\n", ecdsa(field_bytes[0], field_len[0], field_bytes[1], field_len[1], field_bytes[2], field_len[2]));
    } else if (!strcmp(cmd, "cose") && n == 1) {
        print_manifest(tml_cose_verify(field_bytes[0], field_len[0], anchors, n_anchors, &m), &m);
    } else if (!strcmp(cmd, "manifest") && n == 1) {
        print_manifest(tml_manifest_parse(field_bytes[0], field_len[0], &m), &m);
    } else if (!strcmp(cmd, "update") && n == 1) {
        print_update(field_bytes[0], field_len[0]);
    } else if (!strcmp(cmd, "admit") && n == 4) {
        why = admit();
        printf("%s\n", why ? why : "admitted");
#ifdef TML_SEMIHOSTING
    } else if (!strcmp(cmd, "bench") && n == 4 && field_len[0] == 65 && field_len[2] == 64) {
        bench();
#endif
    } else {
        printf("error bad command %s\n", cmd);
    }
}

int main(int argc, char **argv)
{
    FILE *in;
#ifdef TML_SEMIHOSTING
    (void)argc;
    (void)argv;
    initialise_monitor_handles();
    systick_start();
    in = fopen("tml_sig_input.txt", "r");
#else
    in = argc > 1 ? fopen(argv[1], "r") : stdin;
#endif
    if (!in) {
        printf("error cannot open the input\n");
        return 2;
    }
    while (fgets(line, sizeof line, in)) {
        if (!strchr(line, '\n') && !feof(in)) {
            printf("error line too long\n");
            return 2;
        }
        run_line(line);
    }
    printf("done\n");
#ifdef TML_SEMIHOSTING
    exit(0); /* semihosting SYS_EXIT ends QEMU */
#endif
    return 0;
}
