/* RAM model store: blobs live in a pool of RAM. A new blob is staged in free pool space beside the active one and
 * replaces it only once activated, so a failed install leaves the previous model running. No model survives a
 * reset.
 *
 * The anti-rollback state survives power cuts where the board has non-volatile memory for the firmware's state
 * (nvstate.h: two alternating records, written before the staged blob becomes active). Without it, it survives a
 * reset, though not a power cut: it lives in RAM that no section covers and nothing zeroes (__noinit_start,
 * common.ld), as two checksummed copies; an update overwrites the older copy, so a reset in the middle of one
 * leaves the other. At power-on RAM holds noise, which fails the checksum: no state. */
#include <stddef.h>
#include <string.h>

#include "nvstate.h"
#include "slot.h"

static uint8_t *pool, *active_start, *staged;
static uint32_t pool_bytes, active_len, staged_len;

#define ROLLBACK_MAGIC 0x4B424C52u /* "RLBK" */
struct rollback_copy {
    uint32_t magic;
    tml_installed state;
    uint32_t check; /* FNV-1a of the bytes before it */
};
extern uint8_t __noinit_start[]; /* 128 bytes, 16-aligned */
#define rollback ((struct rollback_copy *)(void *)__noinit_start)
typedef char rollback_fits[2 * sizeof(struct rollback_copy) <= 128 ? 1 : -1];

static uint32_t fnv1a(const void *p, uint32_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    while (n--)
        h = (h ^ *b++) * 16777619u;
    return h;
}

static int copy_valid(const struct rollback_copy *c)
{
    return c->magic == ROLLBACK_MAGIC && c->check == fnv1a(c, (uint32_t)offsetof(struct rollback_copy, check));
}

/* index of the copy holding the state, or -1 */
static int newest_copy(void)
{
    int v0 = copy_valid(&rollback[0]), v1 = copy_valid(&rollback[1]);
    if (v0 && v1)
        return rollback[1].state.sequence > rollback[0].state.sequence;
    return v0 ? 0 : v1 ? 1 : -1;
}

static int ram_installed(tml_installed *out)
{
    int k;
    if (nvstate_available()) {
        *out = nvstate()->installed;
        return nvstate()->have_installed != 0;
    }
    k = newest_copy();
    if (k < 0)
        return 0;
    *out = rollback[k].state;
    return 1;
}

static const uint8_t *ram_boot(int (*accept)(const uint8_t *blob, uint32_t len), uint32_t *len)
{
    (void)accept;
    *len = 0;
    return NULL;
}

static const char *ram_begin(uint32_t total)
{
    staged = NULL;
    if (total > pool_bytes)
        return "blob is larger than the model slot";
    if (!active_start) {
        staged = pool;
    } else {
        /* after the active model, else before it; never over it */
        uint32_t a0 = (uint32_t)(active_start - pool), a1 = (a0 + active_len + 15u) & ~15u;
        if (a1 <= pool_bytes && pool_bytes - a1 >= total)
            staged = pool + a1;
        else if (a0 >= total)
            staged = pool;
    }
    if (!staged)
        return "no room to stage beside the installed model: ERASE it first";
    staged_len = total;
    return 0;
}

static const char *ram_write(uint32_t off, const uint8_t *p, uint32_t n)
{
    if (!staged || off > staged_len || n > staged_len - off)
        return "write outside the staged blob";
    memcpy(staged + off, p, n);
    return 0;
}

static const char *ram_staged(const uint8_t **blob)
{
    *blob = staged;
    return staged ? 0 : "nothing staged";
}

static const char *ram_activate(const tml_installed *state)
{
    if (!staged)
        return "nothing staged";
    if (state && nvstate_available()) {
        nv_state *next = nvstate_edit();
        const char *err;
        next->have_installed = 1;
        next->installed = *state;
        if ((err = nvstate_put(next)))
            return err;
    } else if (state) {
        /* over the older copy; a reset half-way leaves it failing its checksum, and the other one intact */
        struct rollback_copy next;
        memset(&next, 0, sizeof next); /* padding too: the checksum covers it */
        next.magic = ROLLBACK_MAGIC;
        next.state = *state;
        next.check = fnv1a(&next, (uint32_t)offsetof(struct rollback_copy, check));
        memcpy(&rollback[newest_copy() == 0], &next, sizeof next);
    }
    active_start = staged;
    active_len = staged_len;
    staged = NULL;
    return 0;
}

static const char *ram_clear(void)
{
    active_start = staged = NULL;
    return 0;
}

static struct slot_store store = {"ram", 0, ram_boot, ram_begin, ram_write, ram_staged, ram_activate, ram_clear,
                                  ram_installed};

const struct slot_store *slot_ram_init(uint8_t *start, uint32_t bytes)
{
    pool = start;
    pool_bytes = bytes & ~15u;
    store.capacity = pool_bytes;
    return &store;
}
