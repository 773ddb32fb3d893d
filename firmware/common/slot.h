/* Model slots: where a blob arriving over the UART is staged and where the active model lives.
 *
 * Two stores share this interface (docs/firmware.md, "Model slots"):
 *   slot_ram.c   - a RAM pool beside the firmware's data; lost at reset. Used where no programmable flash
 *                  exists: QEMU (its STM32 flash is read-only ROM) and the mps2-an386 (code memory is RAM).
 *   slot_flash.c - two flash slots with a commit record (STM32F4 hardware and Renode); survives reset, and a
 *                  power cut at any point leaves the previous model or the new one active, never neither.
 * The firmware asks for the flash store first and falls back to RAM, so one binary serves QEMU, Renode and boards.
 * Data flows one way: begin -> write* -> staged (validated by the caller) -> activate.
 * Each store also keeps the anti-rollback state of its one component ("model"): the manifest sequence number and
 * blob digest of the newest signed install, which ERASE, a boot-time fallback or a reset never lower (the flash
 * store keeps it through power cuts too; the RAM store only through resets that keep RAM powered).
 * Every operation that can fail returns 0 or a reason for humans. */
#ifndef SLOT_H
#define SLOT_H

#include <stdint.h>

#include "tml_cose.h"

struct slot_store {
    const char *kind;  /* "ram" or "flash" */
    uint32_t capacity; /* largest blob one slot holds */
    /* At boot: offer stored models, newest first, to accept() until it returns 1 -> that blob, or NULL.
     * A stored model accept() refuses is revoked: it is not offered again. */
    const uint8_t *(*boot)(int (*accept)(const uint8_t *blob, uint32_t len), uint32_t *len);
    /* Make room for a blob of `total` bytes without touching the active one. */
    const char *(*begin)(uint32_t total);
    /* Store bytes [off, off + n) of the staged blob; offsets arrive in order. */
    const char *(*write)(uint32_t off, const uint8_t *p, uint32_t n);
    /* The complete staged blob, readable in place (for validation before activation). */
    const char *(*staged)(const uint8_t **blob);
    /* The staged blob becomes the active model, installed under `state` (its manifest's sequence and blob
     * digest); the previous one is kept only while room allows. */
    const char *(*activate)(const tml_installed *state);
    /* Forget every stored model (a later boot starts with none). */
    const char *(*clear)(void);
    /* The anti-rollback state: 1 and *out when a signed model was ever installed here, 0 when none was. */
    int (*installed)(tml_installed *out);
};

/* RAM store over [start, start + bytes). */
const struct slot_store *slot_ram_init(uint8_t *start, uint32_t bytes);
/* Flash store over the board's flash slots, or NULL when the board has no programmable flash (board_flash()). */
const struct slot_store *slot_flash_init(void);

#endif
