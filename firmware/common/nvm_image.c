/* The emulated non-volatile memory under QEMU: an image file on the host, reached by semihosting (nvm.h). */
#include <string.h>

#include "nvm.h"
#include "semihost.h"

static int state = -1; /* nvm_image_open's answer */
static int handle = -1;
static uint32_t writes, cut; /* cut: the operation that loses power (0: none) */
static uint8_t units[2 * NVM_UNIT_BYTES];

uint32_t nvm_writes(void) { return writes; }

static uint32_t parse_u32(const char *s)
{
    uint32_t v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10u + (uint32_t)(*s++ - '0');
    return v;
}

int nvm_image_open(uint8_t *slot_mem, uint32_t slot_bytes)
{
    char path[200], n[16];
    int32_t len;
    if (state >= 0)
        return state;
    state = 0;
    if (!semihost_arg("nvm=", path, sizeof path) || (handle = semihost_open(path)) < 0)
        return 0;
    if (semihost_arg("cut=", n, sizeof n))
        cut = parse_u32(n);
    len = semihost_length(handle);
    if (len == (int32_t)sizeof units)
        state = 1;
    else if (slot_mem && slot_bytes && len == (int32_t)(sizeof units + slot_bytes))
        state = 2;
    else
        return 0;
    if (semihost_read(handle, 0, units, sizeof units) ||
        (state == 2 && semihost_read(handle, NVM_SLOTS_AT, slot_mem, slot_bytes)))
        state = 0;
    return state;
}

/* Counts the operation; at the cut, the part of it that made it is written out and the power goes. */
static void power(uint8_t *mem, uint32_t file_off, uint32_t done)
{
    if (++writes != cut)
        return;
    if (done)
        semihost_write(handle, file_off, mem, done);
    semihost_exit();
}

const char *nvm_erase(uint8_t *mem, uint32_t file_off, uint32_t n)
{
    uint32_t i;
    if (writes + 1u == cut) {
        memset(mem, 0xFF, n / 2u);
        power(mem, file_off, n / 2u);
    }
    writes++;
    memset(mem, 0xFF, n);
    if (semihost_write(handle, file_off, mem, n))
        return "NVM image write failed";
    for (i = 0; i < n; i++)
        if (mem[i] != 0xFF)
            return "flash not blank after erase";
    return 0;
}

static void program_word(uint8_t *mem, const uint8_t *src, uint32_t keep_high)
{
    uint32_t k;
    for (k = 0; k < 4; k++)
        mem[k] &= (uint8_t)(src[k] | (k >= 2 && keep_high ? 0xFFu : 0u));
}

const char *nvm_program(uint8_t *mem, uint32_t file_off, const uint8_t *src, uint32_t n)
{
    uint32_t i, half = (n / 8u) * 4u;
    if (writes + 1u == cut) { /* half of the words, then half of the bits of the next one */
        for (i = 0; i < half; i += 4)
            program_word(mem + i, src + i, 0);
        if (half < n)
            program_word(mem + half, src + half, 1);
        power(mem, file_off, n);
    }
    writes++;
    for (i = 0; i < n; i += 4)
        program_word(mem + i, src + i, 0);
    if (semihost_write(handle, file_off, mem, n))
        return "NVM image write failed";
    return memcmp(mem, src, n) ? "flash reads back different bytes than were programmed" : 0;
}

static const char *unit_erase(int u)
{
    return nvm_erase(units + (uint32_t)u * NVM_UNIT_BYTES, (uint32_t)u * NVM_UNIT_BYTES, NVM_UNIT_BYTES);
}

static const char *unit_program(int u, uint32_t off, const uint8_t *src, uint32_t n)
{
    if (off % 4u || n % 4u || off > NVM_UNIT_BYTES || n > NVM_UNIT_BYTES - off)
        return "program outside the state unit";
    return nvm_program(units + (uint32_t)u * NVM_UNIT_BYTES + off, (uint32_t)u * NVM_UNIT_BYTES + off, src, n);
}

static const struct nv_area area = {{units, units + NVM_UNIT_BYTES}, NVM_UNIT_BYTES, unit_erase, unit_program};

const struct nv_area *nvm_image_area(void) { return state > 0 ? &area : 0; }
