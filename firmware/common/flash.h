/* Internal flash as the flash model store needs it; a board with programmable flash implements these
 * (boards/stm32f4/flash.c). Both operations verify their result and return 0 or a reason for humans. */
#ifndef FLASH_H
#define FLASH_H

#include <stdint.h>

struct flash_slots {
    uint8_t *slot[2]; /* two model slots, each a whole number of erase sectors */
    uint32_t bytes;   /* size of one slot */
};

/* The board's model slots, or NULL when its flash cannot be programmed here (probed: QEMU models the STM32
 * flash as ROM with no flash interface). */
const struct flash_slots *board_flash(void);
/* Erase the sectors making up [start, start + bytes) (start and bytes on sector bounds), then check them blank. */
const char *flash_erase(uint8_t *start, uint32_t bytes);
/* Program n bytes (n a multiple of 4, dst word aligned, dst erased) and read them back. */
const char *flash_program(uint8_t *dst, const uint8_t *src, uint32_t n);

#endif
