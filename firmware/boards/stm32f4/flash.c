/* STM32F405/407 internal flash (RM0090 §3): sector erase and 32-bit programming through the FLASH interface
 * registers at 0x40023C00, for the flash model store (common/slot_flash.c).
 *
 * 1 MB in 12 sectors: 0-3 16 KB, 4 64 KB, 5-11 128 KB. The firmware is linked into sectors 0-5 (link.ld);
 * slot A is sectors 6-8, slot B sectors 9-11 (384 KB each). Sector 5 is left out of the slots on purpose: it is
 * the one sector whose size Renode's STM32F4_FlashController gets wrong (it erases 64 KB of its 128 KB).
 * Programming uses PSIZE x32, which needs a 2.7-3.6 V supply (every STM32F4 board this firmware targets).
 *
 * Built with FLASH_SIM the register and memory accesses go to the register-level model in
 * tests/c/flash_sim.c, so the same driver and store run under test on the host with power cuts. */
#include <stdint.h>

#include "flash.h"
#include "nvm.h"

#ifdef FLASH_SIM
#include "flash_sim.h"
#define FLASH_BASE flash_sim_mem
#define REG_RD(off) flash_sim_reg_read(off)
#define REG_WR(off, v) flash_sim_reg_write(off, v)
#define MEM_WR32(addr, v) flash_sim_mem_write32(addr, v)
#else
#define FLASH_BASE ((uint8_t *)0x08000000u)
#define REG_RD(off) (*(volatile uint32_t *)(0x40023C00u + (off)))
#define REG_WR(off, v) (*(volatile uint32_t *)(0x40023C00u + (off)) = (v))
#define MEM_WR32(addr, v) (*(volatile uint32_t *)(void *)(addr) = (v))
#endif

#define KEYR 0x04u
#define SR 0x0Cu
#define CR 0x10u
#define KEY1 0x45670123u
#define KEY2 0xCDEF89ABu
#define SR_EOP (1u << 0)
#define SR_OPERR (1u << 1)
#define SR_WRPERR (1u << 4)
#define SR_PGAERR (1u << 5)
#define SR_PGPERR (1u << 6)
#define SR_PGSERR (1u << 7)
#define SR_ERRORS (SR_OPERR | SR_WRPERR | SR_PGAERR | SR_PGPERR | SR_PGSERR)
#define SR_BSY (1u << 16)
#define CR_PG (1u << 0)
#define CR_SER (1u << 1)
#define CR_SNB_SHIFT 3
#define CR_PSIZE_X32 (2u << 8)
#define CR_STRT (1u << 16)
#define CR_LOCK (1u << 31)
#define BUSY_POLLS 50000000u /* ~3 s at 16 MHz: longer than a 128 KB sector erase (max 2 s, RM0090 table) */

#define SLOT_A_SECTOR 6u
#define SLOT_B_SECTOR 9u
#define STATE_SECTOR 1u /* sectors 1 and 2 (16 KB each, 0x08004000 and 0x08008000): the state records' units */
#define SECTOR_16K(n) ((n) * 0x4000u) /* offset of sector n <= 3 */
#define SECTOR_128K(n) (0x20000u + ((n) - 5u) * 0x20000u) /* offset of sector n >= 5 */
#define SLOT_BYTES (3u * 0x20000u)

static struct flash_slots slots;

static int wait_idle(void)
{
    uint32_t n = BUSY_POLLS;
    while (REG_RD(SR) & SR_BSY)
        if (!--n)
            return 0;
    return 1;
}

static const char *unlock(void)
{
    if (REG_RD(CR) & CR_LOCK) {
        REG_WR(KEYR, KEY1);
        REG_WR(KEYR, KEY2);
    }
    return REG_RD(CR) & CR_LOCK ? "flash interface stays locked after the key sequence" : 0;
}

static void lock(void) { REG_WR(CR, CR_LOCK); }

static const char *finish(const char *what)
{
    uint32_t sr;
    if (!wait_idle())
        return "flash stays busy";
    sr = REG_RD(SR);
    if (sr & SR_ERRORS) {
        REG_WR(SR, sr & (SR_ERRORS | SR_EOP)); /* write-1-to-clear */
        if (sr & SR_WRPERR)
            return "flash is write-protected (option bytes nWRP)";
        return what;
    }
    return 0;
}

const struct flash_slots *board_flash(void)
{
    /* LOCK is set at reset and only the key sequence clears it; software can set it again. So: if it reads clear
     * (someone unlocked, or nothing is there), set it and read it back. QEMU maps no flash interface here (reads
     * are 0), so there it stays clear. */
    if (!(REG_RD(CR) & CR_LOCK)) {
        REG_WR(CR, CR_LOCK);
        if (!(REG_RD(CR) & CR_LOCK))
            return 0;
    }
    slots.slot[0] = FLASH_BASE + SECTOR_128K(SLOT_A_SECTOR);
    slots.slot[1] = FLASH_BASE + SECTOR_128K(SLOT_B_SECTOR);
    slots.bytes = SLOT_BYTES;
    return &slots;
}

static int in_state_sectors(uint32_t off, uint32_t n)
{
    return off >= SECTOR_16K(STATE_SECTOR) && off <= SECTOR_16K(STATE_SECTOR + 2u) &&
           n <= SECTOR_16K(STATE_SECTOR + 2u) - off;
}

const char *flash_erase(uint8_t *start, uint32_t bytes)
{
    uint32_t off = (uint32_t)(start - FLASH_BASE), first, count, sector;
    const char *err = 0;
    const uint32_t *w;
    if (in_state_sectors(off, bytes) && off % 0x4000u == 0 && bytes == 0x4000u) {
        first = off / 0x4000u; /* one 16 KB state sector */
        count = 1;
    } else if (off < SECTOR_128K(SLOT_A_SECTOR) || off % 0x20000u || bytes % 0x20000u ||
               bytes > SECTOR_128K(12u) - off) {
        return "erase outside the model slots";
    } else {
        first = 5u + (off - 0x20000u) / 0x20000u;
        count = bytes / 0x20000u;
    }
    if ((err = unlock()))
        return err;
    for (sector = first; !err && sector < first + count; sector++) {
        if (!wait_idle()) {
            err = "flash stays busy";
            break;
        }
        REG_WR(SR, SR_ERRORS | SR_EOP);
        REG_WR(CR, CR_PSIZE_X32 | CR_SER | (sector << CR_SNB_SHIFT));
        REG_WR(CR, CR_PSIZE_X32 | CR_SER | (sector << CR_SNB_SHIFT) | CR_STRT);
        err = finish("flash sector erase failed");
    }
    REG_WR(CR, 0);
    lock();
    if (err)
        return err;
    for (w = (const uint32_t *)start; w < (const uint32_t *)(start + bytes); w++)
        if (*w != 0xFFFFFFFFu)
            return "flash not blank after erase";
    return 0;
}

const char *flash_program(uint8_t *dst, const uint8_t *src, uint32_t n)
{
    uint32_t off = (uint32_t)(dst - FLASH_BASE), i;
    const char *err;
    if (off % 4u || n % 4u || (!in_state_sectors(off, n) && (off < SECTOR_128K(SLOT_A_SECTOR) ||
                                                           n > SECTOR_128K(12u) - off)))
        return "program outside the model slots and the state sectors";
    if ((err = unlock()))
        return err;
    REG_WR(SR, SR_ERRORS | SR_EOP);
    REG_WR(CR, CR_PSIZE_X32 | CR_PG);
    for (i = 0; i < n && !err; i += 4) {
        uint32_t v = (uint32_t)src[i] | (uint32_t)src[i + 1] << 8 | (uint32_t)src[i + 2] << 16 |
                     (uint32_t)src[i + 3] << 24;
        if (v == 0xFFFFFFFFu)
            continue; /* already the erased value */
        MEM_WR32(dst + i, v);
        err = finish("flash program failed");
    }
    REG_WR(CR, 0);
    lock();
    if (!err) {
        for (i = 0; i < n; i++)
            if (dst[i] != src[i])
                return "flash reads back different bytes than were programmed";
    }
    return err;
}

static const char *state_erase(int u)
{
    return flash_erase(FLASH_BASE + SECTOR_16K(STATE_SECTOR + (uint32_t)u), 0x4000u);
}

static const char *state_program(int u, uint32_t off, const uint8_t *src, uint32_t n)
{
    if (off > 0x4000u || n > 0x4000u - off)
        return "program outside the state unit";
    return flash_program(FLASH_BASE + SECTOR_16K(STATE_SECTOR + (uint32_t)u) + off, src, n);
}

static struct nv_area state_sectors = {{0, 0}, 0x4000u, state_erase, state_program};

/* The firmware's own state (nvm.h): sectors 1-2 of a programmable flash (after board_flash() found it); under QEMU,
 * where this flash cannot be programmed, the units of the semihosted image when there is one. board_flash() runs
 * first, so a board never makes a semihosting call. */
const struct nv_area *board_nv(void)
{
    if (slots.bytes) {
        state_sectors.unit[0] = FLASH_BASE + SECTOR_16K(STATE_SECTOR);
        state_sectors.unit[1] = FLASH_BASE + SECTOR_16K(STATE_SECTOR + 1u);
        return &state_sectors;
    }
#ifdef FLASH_SIM
    return 0;
#else
    return nvm_image_open(0, 0) ? nvm_image_area() : 0;
#endif
}
