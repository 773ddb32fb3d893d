/* Register-level STM32F405 flash interface model: see flash_sim.h. */
#include "flash_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYR 0x04u
#define SR 0x0Cu
#define CR 0x10u
#define SR_EOP (1u << 0)
#define SR_ERRORS 0xF2u /* OPERR WRPERR PGAERR PGPERR PGSERR */
#define SR_PGAERR (1u << 5)
#define SR_PGPERR (1u << 6)
#define SR_PGSERR (1u << 7)
#define SR_BSY (1u << 16)
#define CR_PG (1u << 0)
#define CR_SER (1u << 1)
#define CR_MER (1u << 2)
#define CR_PSIZE_MASK (3u << 8)
#define CR_PSIZE_X32 (2u << 8)
#define CR_STRT (1u << 16)
#define CR_LOCK (1u << 31)
#define CR_WRITABLE (CR_PG | CR_SER | CR_MER | (0xFu << 3) | CR_PSIZE_MASK | (3u << 24))

uint8_t flash_sim_mem[FLASH_SIM_BYTES] __attribute__((aligned(256)));
jmp_buf flash_sim_cut_point;
uint32_t flash_sim_ops;

static uint32_t cr, sr, key_stage, busy_reads, cut_at;
static uint32_t rng = 12345u;

static uint32_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void fault(const char *what)
{
    fprintf(stderr, "flash_sim: %s (CR=%08x SR=%08x)\n", what, cr, sr);
    exit(3);
}

void flash_sim_reset(void)
{
    cr = CR_LOCK;
    sr = 0;
    key_stage = 0;
    busy_reads = 0;
}

void flash_sim_cut_after(uint32_t ops)
{
    flash_sim_ops = 0;
    cut_at = ops;
}

/* Count an operation; when it is the one to cut, return 1 (the caller damages its target, then we jump). */
static int cut_now(void)
{
    flash_sim_ops++;
    return cut_at && flash_sim_ops == cut_at;
}

static void power_cut(void)
{
    cut_at = 0;
    flash_sim_reset();
    longjmp(flash_sim_cut_point, 1);
}

static uint32_t sector_offset(uint32_t n) { return n < 4 ? n * 0x4000u : n == 4 ? 0x10000u : 0x20000u * (n - 4u); }
static uint32_t sector_size(uint32_t n) { return n < 4 ? 0x4000u : n == 4 ? 0x10000u : 0x20000u; }

static void start_erase(void)
{
    uint32_t n = (cr >> 3) & 0xFu, off, size;
    if (cr & CR_MER)
        fault("mass erase requested: the store must never erase the firmware");
    if (n > 11)
        fault("erase of a sector that does not exist");
    if (n < 6 && n != 1 && n != 2)
        fault("erase of a firmware sector (0, 3-5; 1-2 hold its state records)");
    if ((cr & CR_PSIZE_MASK) != CR_PSIZE_X32)
        fault("sector erase with a PSIZE the driver does not use");
    off = sector_offset(n);
    size = sector_size(n);
    if (cut_now()) {
        uint32_t done = next_random() % size; /* erase interrupted: the start erased, the rest left as it was */
        memset(flash_sim_mem + off, 0xFF, done);
        power_cut();
    }
    memset(flash_sim_mem + off, 0xFF, size);
    busy_reads = 3;
}

uint32_t flash_sim_reg_read(uint32_t off)
{
    switch (off) {
    case SR:
        if (busy_reads) {
            busy_reads--;
            if (!busy_reads)
                sr |= SR_EOP;
            return sr | SR_BSY;
        }
        return sr;
    case CR:
        return cr;
    default:
        fault("read of a flash register the driver has no business reading");
    }
    return 0;
}

void flash_sim_reg_write(uint32_t off, uint32_t v)
{
    if (busy_reads)
        fault("flash register written while BSY");
    switch (off) {
    case KEYR:
        if (!(cr & CR_LOCK))
            fault("key written while already unlocked (bus error on the silicon)");
        if ((key_stage == 0 && v == 0x45670123u) || (key_stage == 1 && v == 0xCDEF89ABu)) {
            if (++key_stage == 2) {
                cr &= ~CR_LOCK;
                key_stage = 0;
            }
        } else {
            fault("wrong key sequence: the interface stays locked until reset (bus error)");
        }
        break;
    case SR:
        sr &= ~(v & (SR_ERRORS | SR_EOP));
        break;
    case CR:
        if (cr & CR_LOCK)
            return; /* ignored while locked */
        cr = (cr & ~CR_WRITABLE) | (v & CR_WRITABLE) | (v & CR_LOCK);
        if ((v & CR_STRT) && !(cr & CR_LOCK)) {
            if (!(cr & (CR_SER | CR_MER)))
                fault("STRT without SER or MER");
            start_erase();
        }
        break;
    default:
        fault("write to a flash register the driver has no business writing");
    }
}

void flash_sim_mem_write32(uint8_t *addr, uint32_t v)
{
    uint32_t off = (uint32_t)(addr - flash_sim_mem), old;
    if (addr < flash_sim_mem || off >= FLASH_SIM_BYTES)
        fault("program outside the flash");
    if (busy_reads)
        fault("flash programmed while BSY");
    if ((cr & CR_LOCK) || !(cr & CR_PG)) {
        sr |= SR_PGSERR; /* program sequence error: nothing is written */
        return;
    }
    if ((cr & CR_PSIZE_MASK) != CR_PSIZE_X32) {
        sr |= SR_PGPERR;
        return;
    }
    if (off % 4u) {
        sr |= SR_PGAERR;
        return;
    }
    if (off < 0x40000u && (off < 0x4000u || off >= 0xC000u))
        fault("program of a firmware sector (0, 3-5; 1-2 hold its state records)");
    memcpy(&old, addr, 4);
    if (cut_now()) {
        old &= v | next_random(); /* programming interrupted: only some of the bits went to 0 */
        memcpy(addr, &old, 4);
        power_cut();
    }
    old &= v; /* programming can only clear bits */
    memcpy(addr, &old, 4);
    busy_reads = 1;
}
