/* Non-volatile memory for the firmware's own state (docs/firmware.md, "Non-volatile state").
 *
 * struct nv_area is two erase units of NOR-like memory that nvstate.c keeps its alternating records in; a board
 * provides it with board_nv() (NULL: none, and the state that needs it is refused or kept in RAM).
 *
 * Under QEMU, which models no writable flash on these machines, the memory is an image file on the host reached by
 * semihosting (semihost.h): `qemu-system-arm ... -semihosting-config enable=on,target=native,arg=nvm=PATH` and
 * optionally `arg=cut=N`. Layout: [unit 0][unit 1] and, on a board whose model slots it also holds (mps2-an386),
 * [slot 0][slot 1]; the file's size says which. It behaves as NOR flash: an erase sets bytes to 0xFF, a program
 * can only clear bits (a word programmed twice reads the AND), and each operation is written through to the file
 * before it returns. cut=N is the power cut: the N-th erase or program since boot is done only in part (half of
 * the bytes erased; half of the words programmed and half of the next word's bits), written to the file, and the
 * emulator stops. */
#ifndef NVM_H
#define NVM_H

#include <stdint.h>

struct nv_area {
    const uint8_t *unit[2]; /* readable in place */
    uint32_t bytes;         /* size of one unit */
    const char *(*erase)(int u);
    const char *(*program)(int u, uint32_t off, const uint8_t *src, uint32_t n); /* off, n multiples of 4 */
};

/* The board's area for the firmware's state, or NULL (boards/<board>/). */
const struct nv_area *board_nv(void);

/* ---- the semihosted image (nvm_image.c) ---- */
#define NVM_UNIT_BYTES 1024u
#define NVM_SLOTS_AT (2u * NVM_UNIT_BYTES) /* file offset of the model slots, when the image has them */

/* Open the image named by the command line's nvm= once: 0 none (or not the size of either layout), 1 the state
 * units only, 2 units and slots (slot_bytes in all, read into slot_mem). Later calls return the first answer. */
int nvm_image_open(uint8_t *slot_mem, uint32_t slot_bytes);
const struct nv_area *nvm_image_area(void); /* the image's two units (after nvm_image_open() > 0) */
/* Flash operations on image memory `mem` that the file holds at `file_off`, written through. */
const char *nvm_erase(uint8_t *mem, uint32_t file_off, uint32_t n);
const char *nvm_program(uint8_t *mem, uint32_t file_off, const uint8_t *src, uint32_t n);
/* Erase and program operations since boot (CAPS nvm_writes=: where a test can cut the power). */
uint32_t nvm_writes(void);

/* CRC-32 (IEEE 802.3, zlib's; crc32.c) of the frames (main.c) and of the state records. */
uint32_t fw_crc32(uint32_t crc, const uint8_t *p, uint32_t n);

#endif
