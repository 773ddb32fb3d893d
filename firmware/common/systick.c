#include "systick.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define RELOAD 0xFFFFFFu

static volatile uint32_t wraps;

void SysTick_Handler(void) { wraps++; }

void systick_start(void)
{
    SYST_RVR = RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* enable, interrupt on wrap, core clock */
}

uint64_t systick_cycles(void)
{
    uint32_t w1, v, w2;
    /* re-read when a wrap interrupt lands between the two reads */
    do {
        w1 = wraps;
        v = SYST_CVR;
        w2 = wraps;
    } while (w1 != w2);
    return (uint64_t)w1 * (RELOAD + 1u) + (RELOAD - (v & RELOAD));
}
