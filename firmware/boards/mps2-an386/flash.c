/* MPS2 AN386 model slots in the emulated non-volatile memory (nvm.h): the board has none of its own, so under QEMU
 * the two slots of the flash store (common/slot_flash.c, the same code the STM32 runs on its flash) live in the
 * semihosted image, mirrored in code SSRAM above the firmware (link.ld keeps the firmware below 1 MB), where the
 * runtime executes a blob in place as it would from flash. Without an image the board keeps models in RAM. */
#include <stdint.h>

#include "flash.h"
#include "nvm.h"

#define SLOT_BYTES (384u * 1024u) /* as the STM32's: the largest MLPerf Tiny blob (AD, 274 KB) fits */
#define MIRROR ((uint8_t *)0x00100000u)

static struct flash_slots slots;

const struct flash_slots *board_flash(void)
{
    if (nvm_image_open(MIRROR, 2u * SLOT_BYTES) != 2)
        return 0;
    slots.slot[0] = MIRROR;
    slots.slot[1] = MIRROR + SLOT_BYTES;
    slots.bytes = SLOT_BYTES;
    return &slots;
}

static int inside(const uint8_t *p, uint32_t n)
{
    return p >= MIRROR && (uint32_t)(p - MIRROR) <= 2u * SLOT_BYTES && n <= 2u * SLOT_BYTES - (uint32_t)(p - MIRROR);
}

const char *flash_erase(uint8_t *start, uint32_t bytes)
{
    if (!slots.bytes || !inside(start, bytes) || (uint32_t)(start - MIRROR) % SLOT_BYTES || bytes % SLOT_BYTES)
        return "erase outside the model slots";
    return nvm_erase(start, NVM_SLOTS_AT + (uint32_t)(start - MIRROR), bytes);
}

const char *flash_program(uint8_t *dst, const uint8_t *src, uint32_t n)
{
    if (!slots.bytes || !inside(dst, n) || (uint32_t)(dst - MIRROR) % 4u || n % 4u)
        return "program outside the model slots";
    return nvm_program(dst, NVM_SLOTS_AT + (uint32_t)(dst - MIRROR), src, n);
}

const struct nv_area *board_nv(void) { return nvm_image_open(MIRROR, 2u * SLOT_BYTES) ? nvm_image_area() : 0; }
