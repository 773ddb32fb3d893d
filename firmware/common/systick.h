/* 64-bit core-cycle counter built on SysTick (24-bit, counting down at the core clock) plus a wrap interrupt.
 * On hardware it counts cycles; under QEMU with -icount shift=0 it advances deterministically with the
 * instruction count (see docs/firmware.md for the conversion). DWT CYCCNT is not used: QEMU reads it as 0. */
#ifndef SYSTICK_H
#define SYSTICK_H

#include <stdint.h>

void systick_start(void);
uint64_t systick_cycles(void);

#endif
