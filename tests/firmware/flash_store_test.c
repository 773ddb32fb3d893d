/* The flash model store (firmware/common/slot_flash.c), the firmware's state records (common/nvstate.c, in
 * sectors 1-2) and the STM32F4 flash driver (boards/stm32f4/flash.c) on
 * the register-level flash model (flash_sim.c), driven the way the firmware's main loop drives them.
 *
 *   flash_store_test A.blob B.blob C.blob
 *       the store's behaviour: one line per check ("ok ..." / "FAIL ...") and a summary; exits 1 on any failure
 *   flash_store_test --boot SLOT_A.bin|- SLOT_B.bin|-
 *       boot from slot images written by host/tinymlaas/boards/stm32_slots.py ("-": erased) and print
 *       "active <slot> <blob bytes> refused <n> sequence <anti-rollback sequence number or none>" (slot A, B or none) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash.h"
#include "flash_sim.h"
#include "nvm.h"
#include "nvstate.h"
#include "slot.h"
#include "tml.h"

#define ARENA_BYTES (512u * 1024u)
static uint8_t arena[ARENA_BYTES] __attribute__((aligned(16)));
static const struct slot_store *store;
static tml_model model;
static int failures, checks;

struct blob {
    const char *name;
    uint8_t *bytes;
    uint32_t len;
};

static void check(int ok, const char *what, const char *detail)
{
    checks++;
    if (!ok)
        failures++;
    if (!ok || detail)
        printf("%s %s%s%s\n", ok ? "ok" : "FAIL", what, detail ? ": " : "", detail ? detail : "");
}

static struct blob load_file(const char *path)
{
    struct blob b = {path, NULL, 0};
    FILE *f = fopen(path, "rb");
    long n;
    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET)) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    b.bytes = malloc((size_t)n);
    if (!b.bytes || fread(b.bytes, 1, (size_t)n, f) != (size_t)n)
        exit(2);
    fclose(f);
    b.len = (uint32_t)n;
    return b;
}

static int accept(const uint8_t *blob, uint32_t len)
{
    return tml_load(&model, blob, len, arena, ARENA_BYTES) == TML_OK;
}

static int refused;
static int accept_counting(const uint8_t *blob, uint32_t len)
{
    if (accept(blob, len))
        return 1;
    refused++;
    return 0;
}

/* Power on: registers at reset, the store probes the flash and boots the newest valid model -> which blob. */
static const struct blob *reboot(const struct blob *const *known, int n)
{
    const uint8_t *p;
    uint32_t len;
    int i;
    flash_sim_reset();
    store = slot_flash_init();
    if (!store) {
        check(0, "flash probe", "board_flash() found no flash interface");
        exit(1);
    }
    refused = 0;
    p = store->boot(accept_counting, &len);
    if (!p)
        return NULL;
    for (i = 0; i < n; i++)
        if (known[i]->len == len && !memcmp(known[i]->bytes, p, len))
            return known[i];
    check(0, "boot", "the active model matches none of the installed blobs");
    return NULL;
}

/* The anti-rollback state the store keeps -> its sequence number, 0 when it has none. */
static uint64_t floor_seq(void)
{
    tml_installed st;
    return store->installed(&st) ? st.sequence : 0;
}

/* The firmware's BEGIN / CHUNK... / COMMIT path, for a blob whose signed manifest has sequence number `seq` (main.c
 * has verified the manifest and checked it against floor_seq() before it activates). */
static const char *install(const struct blob *b, uint64_t seq)
{
    tml_installed state;
    tml_sha256 h;
    const uint8_t *staged;
    const char *err;
    uint32_t off;
    if ((err = store->begin(b->len)) || (err = store->write(0, b->bytes, TML_HEADER_BYTES)))
        return err;
    for (off = TML_HEADER_BYTES; off < b->len; off += 1000u) { /* 1000: chunks that are not word multiples */
        uint32_t n = b->len - off < 1000u ? b->len - off : 1000u;
        if ((err = store->write(off, b->bytes + off, n)))
            return err;
    }
    if ((err = store->staged(&staged)))
        return err;
    if (tml_load(&model, staged, b->len, arena, ARENA_BYTES) != TML_OK)
        return tml_reason(&model);
    state.sequence = seq;
    tml_sha256_init(&h);
    tml_sha256_update(&h, b->bytes, b->len);
    tml_sha256_final(&h, state.blob_sha256);
    return store->activate(&state);
}

static int boot_images(const char *slot_a, const char *slot_b)
{
    const char *paths[2] = {slot_a, slot_b};
    const uint32_t offsets[2] = {0x40000u, 0xA0000u};
    const uint8_t *p;
    uint32_t len;
    tml_installed st;
    int i;
    memset(flash_sim_mem, 0xFF, sizeof flash_sim_mem);
    for (i = 0; i < 2; i++) {
        if (strcmp(paths[i], "-")) {
            struct blob img = load_file(paths[i]);
            if (img.len > 0x60000u) {
                fprintf(stderr, "%s: larger than a slot\n", paths[i]);
                return 2;
            }
            memcpy(flash_sim_mem + offsets[i], img.bytes, img.len);
            free(img.bytes);
        }
    }
    flash_sim_reset();
    store = slot_flash_init();
    refused = 0;
    p = store->boot(accept_counting, &len);
    if (!p)
        printf("active none 0 refused %d", refused);
    else
        printf("active %c %u refused %d", p < flash_sim_mem + offsets[1] ? 'A' : 'B', len, refused);
    if (store->installed(&st))
        printf(" sequence %llu\n", (unsigned long long)st.sequence);
    else
        printf(" sequence none\n");
    return 0;
}

static const char *name_of(const struct blob *b) { return b ? b->name : "none"; }

static void state_boot(void)
{
    flash_sim_reset();
    store = slot_flash_init(); /* board_nv() needs the flash probed */
    nvstate_boot();
}

static int same_state(const nv_state *a, const nv_state *b)
{
    return a->anchor_sequence == b->anchor_sequence && a->n_anchors == b->n_anchors &&
           !memcmp(a->anchors, b->anchors, sizeof a->anchors) && a->have_installed == b->have_installed &&
           a->installed.sequence == b->installed.sequence &&
           !memcmp(a->installed.blob_sha256, b->installed.blob_sha256, 32);
}

/* The state records in flash sectors 1-2: kept across reboots, and a power cut at every flash operation of an
 * update (one sector erase, the record's words) leaves the old state or the new one; the update then works. */
static void state_records(void)
{
    static uint8_t before[0x8000];
    static nv_state old, want;
    static uint32_t cut, total, kept, took, bad;
    static char msg[200];
    nv_state *next;
    const char *err = 0;
    memset(flash_sim_mem + 0x4000u, 0xFF, sizeof before); /* sectors 1-2 as a new board has them */
    state_boot();
    check(nvstate_available() && nvstate()->anchor_sequence == 0, "blank state sectors hold no state", NULL);
    for (cut = 1; cut <= 3 && !err; cut++) {
        next = nvstate_edit();
        next->anchor_sequence = cut;
        next->n_anchors = cut;
        memset(next->anchors, (int)cut, sizeof next->anchors);
        err = nvstate_put(next);
    }
    state_boot();
    check(!err && nvstate()->anchor_sequence == 3 && nvstate()->n_anchors == 3, "state records survive a reboot",
          err);
    old = *nvstate();
    want = old;
    want.anchor_sequence = 4;
    want.n_anchors = NV_MAX_ANCHORS;
    memset(want.anchors, 0x44, sizeof want.anchors);
    want.have_installed = 1;
    want.installed.sequence = 77;
    memcpy(before, flash_sim_mem + 0x4000u, sizeof before);
    flash_sim_cut_after(0);
    if (nvstate_put(&want))
        check(0, "state records", "the update fails without a power cut");
    total = flash_sim_ops;
    kept = took = bad = 0;
    for (cut = 1; cut <= total; cut++) {
        memcpy(flash_sim_mem + 0x4000u, before, sizeof before);
        state_boot();
        if (setjmp(flash_sim_cut_point) == 0) {
            flash_sim_cut_after(cut);
            nvstate_put(&want);
            flash_sim_cut_after(0);
            bad++;
            continue;
        }
        state_boot();
        kept += same_state(nvstate(), &old);
        took += same_state(nvstate(), &want);
        if (!same_state(nvstate(), &old) && !same_state(nvstate(), &want))
            bad++;
        if (nvstate_put(&want) || (state_boot(), !same_state(nvstate(), &want)))
            bad++;
    }
    snprintf(msg, sizeof msg, "%u operations, %u cuts: %u kept the old state, %u the new one, 0 other", total, total,
             kept, took);
    check(!bad && kept + took == total, "power cut at every operation of a state update", msg);
}

/* Power cut at every flash operation of installing `next` (manifest sequence `seq`) on the flash image `start`,
 * whose active model is `old` and whose anti-rollback state is `floor_before`: each cut boots `old` or `next`
 * (`next` only once its commit word is programmed, last), the state is never below `floor_before` and is `seq`
 * exactly when `next` is active; installing `next` again then works. */
static void cut_every_operation(const char *what, const uint8_t *start, const struct blob *const *known,
                                const struct blob *old, const struct blob *next, uint64_t seq, uint64_t floor_before)
{
    /* static: they live across the longjmp of a power cut */
    static uint32_t cut, total, kept, took, bad;
    static char msg[300];
    const struct blob *got;
    uint64_t f;
    memcpy(flash_sim_mem, start, FLASH_SIM_BYTES);
    reboot(known, 3);
    flash_sim_cut_after(0);
    if (install(next, seq))
        check(0, what, "the install fails without a power cut");
    total = flash_sim_ops;
    kept = took = bad = 0;
    for (cut = 1; cut <= total; cut++) {
        memcpy(flash_sim_mem, start, FLASH_SIM_BYTES);
        reboot(known, 3);
        if (setjmp(flash_sim_cut_point) == 0) {
            flash_sim_cut_after(cut);
            install(next, seq);
            flash_sim_cut_after(0);
            snprintf(msg, sizeof msg, "cut %u of %u did not happen", cut, total);
            check(0, what, msg);
            bad++;
            continue;
        }
        got = reboot(known, 3);
        f = floor_seq();
        kept += got == old;
        took += got == next;
        if ((got != old && got != next) || (got == next && cut < total) || f < floor_before ||
            (got == next) != (f == seq)) {
            snprintf(msg, sizeof msg, "cut at operation %u of %u: boots %s, sequence %llu", cut, total, name_of(got),
                     (unsigned long long)f);
            check(0, what, msg);
            bad++;
            continue;
        }
        if (install(next, seq) || reboot(known, 3) != next || floor_seq() != seq) {
            snprintf(msg, sizeof msg, "reinstall after cut %u failed", cut);
            check(0, what, msg);
            bad++;
        }
    }
    snprintf(msg, sizeof msg,
             "%u operations, %u cuts: %u kept %s, %u activated %s, 0 without a model; sequence never below %llu",
             total, total, kept, old->name, took, next->name, (unsigned long long)floor_before);
    check(!bad && kept + took == total, what, msg);
}

int main(int argc, char **argv)
{
    static uint8_t snapshot[FLASH_SIM_BYTES];
    struct blob a, b, c;
    const struct blob *known[3], *got;
    char msg[200];
    /* static: they live across the longjmp of a power cut */
    static uint32_t k, erase_ops;
    const char *err;

    if (argc == 4 && !strcmp(argv[1], "--boot"))
        return boot_images(argv[2], argv[3]);
    if (argc != 4) {
        fprintf(stderr, "usage: %s A.blob B.blob C.blob\n", argv[0]);
        return 2;
    }
    a = load_file(argv[1]);
    b = load_file(argv[2]);
    c = load_file(argv[3]);
    known[0] = &a;
    known[1] = &b;
    known[2] = &c;
    memset(flash_sim_mem, 0xFF, sizeof flash_sim_mem);

    /* a new board: no model; installs survive reboots; the newest install wins */
    check(reboot(known, 3) == NULL, "blank flash boots with no model", NULL);
    err = install(&a, 1);
    check(!err, "install A", err);
    check(reboot(known, 3) == &a, "A is active after a reboot", NULL);
    err = install(&b, 2);
    check(!err, "install B beside A", err);
    check(reboot(known, 3) == &b, "B is active after a reboot", NULL);
    err = install(&c, 3);
    check(!err, "install C over A's slot", err);
    check(reboot(known, 3) == &c, "C is active after a reboot", NULL);
    check(floor_seq() == 3, "the store keeps the sequence number of the newest install", "3");

    /* a bit that flips in the newest slot (flash wear, radiation): the boot falls back to the previous model and
     * revokes the damaged one, so the next boot does not try it again */
    memcpy(snapshot, flash_sim_mem, sizeof snapshot);
    {
        const uint8_t *p;
        uint32_t len;
        flash_sim_reset();
        store = slot_flash_init();
        p = store->boot(accept, &len);
        flash_sim_mem[(p - flash_sim_mem) + len / 2] ^= 0x01; /* one bit of C's weights */
    }
    got = reboot(known, 3);
    check(got == &b && refused == 1, "a damaged newest model falls back to the previous one", name_of(got));
    got = reboot(known, 3);
    check(got == &b && refused == 0, "the damaged model is revoked, not retried", name_of(got));
    check(floor_seq() == 3, "the fallback keeps the revoked model's sequence number", "3");
    {
        /* the next install erases the revoked model's slot, the one holding the highest sequence number: it is
         * carried into the active slot's record first, so no power cut during that install lowers it */
        static uint8_t fallen_back[FLASH_SIM_BYTES];
        memcpy(fallen_back, flash_sim_mem, sizeof fallen_back);
        cut_every_operation("power cut at every operation of an install after a fallback", fallen_back, known, &b,
                            &a, 4, 3);
    }
    memcpy(flash_sim_mem, snapshot, sizeof snapshot);
    check(reboot(known, 3) == &c, "C is active again once the bit is restored", NULL);

    /* a blob the runtime rejects is never committed: the active model stays (the slot it was staged in, the
     * previous model's, is erased by then: a failed install costs the fallback, never the active model) */
    {
        struct blob bad = b;
        bad.bytes = malloc(b.len);
        memcpy(bad.bytes, b.bytes, b.len);
        bad.bytes[b.len - 1] ^= 1;
        err = install(&bad, 4);
        check(err && strstr(err, "SHA-256"), "a blob with a bad hash is refused at validation", err);
        check(reboot(known, 3) == &c, "C stays active after the refused install", NULL);
        free(bad.bytes);
    }

    /* ERASE: no model after a reboot, and neither older model comes back */
    reboot(known, 3);
    err = store->clear();
    check(!err, "ERASE", err);
    check(reboot(known, 3) == NULL, "no model after ERASE and a reboot", NULL);
    check(floor_seq() == 3, "ERASE keeps the anti-rollback state", "3");
    err = install(&a, 5);
    check(!err && reboot(known, 3) == &a, "install after ERASE", err);

    /* the driver refuses to touch the firmware's sectors (0-5) or to run past the end of the flash */
    {
        static const uint8_t word[4] = {0, 0, 0, 0};
        err = flash_erase(flash_sim_mem, 0x20000u);
        check(err != NULL, "the driver refuses to erase sector 0", err);
        err = flash_erase(flash_sim_mem + 0x20000u, 0x20000u);
        check(err != NULL, "the driver refuses to erase sector 5", err);
        err = flash_program(flash_sim_mem + 0x3FFFCu, word, 4);
        check(err != NULL, "the driver refuses to program the firmware's last word", err);
        err = flash_program(flash_sim_mem + FLASH_SIM_BYTES - 4u, word, 8);
        check(err != NULL, "the driver refuses to program past the end of the flash", err);
        err = flash_program(flash_sim_mem + 0x40002u, word, 4);
        check(err != NULL, "the driver refuses an unaligned program", err);
    }

    /* ... and the code between the vector table (sector 0) and the slots: only sectors 1-2 hold state */
    {
        static const uint8_t word[4] = {0, 0, 0, 0};
        err = flash_erase(flash_sim_mem, 0x4000u);
        check(err != NULL, "the driver refuses to erase the vector table's sector", err);
        err = flash_erase(flash_sim_mem + 0xC000u, 0x4000u);
        check(err != NULL, "the driver refuses to erase the code's first sector", err);
        err = flash_program(flash_sim_mem + 0xBFFCu, word, 8);
        check(err != NULL, "the driver refuses to program past the state sectors", err);
    }
    state_records();

    /* too big: refused before anything is erased */
    err = store->begin(store->capacity + 1u);
    check(err != NULL, "a blob larger than a slot is refused", err);
    check(reboot(known, 3) == &a, "and A stays active", NULL);

    /* power cut at every flash operation of installing B over A: the board boots A (cut before the commit word
     * was fully programmed) or B (after), never nothing; and installing B again then works */
    memcpy(snapshot, flash_sim_mem, sizeof snapshot);
    cut_every_operation("power cut at every install operation", snapshot, known, &a, &b, 6, 5);

    /* power cut during ERASE (two revoke programs, the older slot first): the newest model or none, never A */
    {
        memcpy(flash_sim_mem, snapshot, sizeof snapshot);
        reboot(known, 3);
        install(&b, 6); /* A older in one slot, B newest in the other */
        memcpy(snapshot, flash_sim_mem, sizeof snapshot);
        reboot(known, 3);
        flash_sim_cut_after(0);
        store->clear();
        erase_ops = flash_sim_ops;
        for (k = 1; k <= erase_ops; k++) {
            memcpy(flash_sim_mem, snapshot, sizeof snapshot);
            reboot(known, 3);
            if (setjmp(flash_sim_cut_point) == 0) {
                flash_sim_cut_after(k);
                store->clear();
                flash_sim_cut_after(0);
            }
            got = reboot(known, 3);
            snprintf(msg, sizeof msg, "cut at operation %u of %u: boots %s", k, erase_ops, name_of(got));
            check(got == &b || got == NULL, "power cut during ERASE never brings back the older model", msg);
        }
    }

    free(a.bytes);
    free(b.bytes);
    free(c.bytes);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
