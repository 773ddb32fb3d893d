/* RAM model store: blobs live in a pool of RAM. A new blob is staged in free pool space beside the active one and
 * replaces it only once activated, so a failed install leaves the previous model running. Nothing survives a
 * reset. */
#include <string.h>

#include "slot.h"

static uint8_t *pool, *active_start, *staged;
static uint32_t pool_bytes, active_len, staged_len;

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

static const char *ram_activate(void)
{
    if (!staged)
        return "nothing staged";
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

static struct slot_store store = {"ram", 0, ram_boot, ram_begin, ram_write, ram_staged, ram_activate, ram_clear};

const struct slot_store *slot_ram_init(uint8_t *start, uint32_t bytes)
{
    pool = start;
    pool_bytes = bytes & ~15u;
    store.capacity = pool_bytes;
    return &store;
}
