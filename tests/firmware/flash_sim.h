/* A register-level model of the STM32F405 flash interface (RM0090 §3.5-3.9) for host tests of the firmware's
 * flash driver (firmware/boards/stm32f4/flash.c built with -DFLASH_SIM) and flash model store.
 * This is the one stand-in for hardware here: QEMU models the STM32 flash as ROM without its interface, and
 * Renode (which does model it) cannot be installed. It is stricter than the silicon where that catches driver
 * bugs: touching FLASH_CR while BSY, a wrong key, or programming without PG aborts the test. */
#ifndef FLASH_SIM_H
#define FLASH_SIM_H

#include <setjmp.h>
#include <stdint.h>

#define FLASH_SIM_BYTES (1024u * 1024u)
extern uint8_t flash_sim_mem[FLASH_SIM_BYTES];

uint32_t flash_sim_reg_read(uint32_t off);
void flash_sim_reg_write(uint32_t off, uint32_t v);
void flash_sim_mem_write32(uint8_t *addr, uint32_t v);

/* Reset: registers to their reset values (flash interface locked); memory keeps its contents. */
void flash_sim_reset(void);
/* Every erase-sector and program-word operation counts one. After `ops` more operations the next one is cut
 * half-way (erase: part of the sector erased; program: some of the word's bits cleared) and control
 * longjmps to flash_sim_cut_point with value 1. 0 disables. */
void flash_sim_cut_after(uint32_t ops);
extern jmp_buf flash_sim_cut_point;
extern uint32_t flash_sim_ops; /* operations since the last flash_sim_cut_after() */

#endif
