/* Cortex-M4 reset and vector table: copy .data, zero .bss, enable the FPU, call main. */
#include <stdint.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
int main(void);
void SysTick_Handler(void);

static void default_handler(void)
{
    for (;;) {
    }
}

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end; dst++)
        *dst = 0;
    /* CP10/CP11 full access: the kernels' QUANTIZE/DEQUANTIZE use the single-precision FPU */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm volatile("dsb\n\tisb");
    main();
    for (;;) {
    }
}

void NMI_Handler(void) __attribute__((weak, alias("default_handler")));
void HardFault_Handler(void) __attribute__((weak, alias("default_handler")));
void MemManage_Handler(void) __attribute__((weak, alias("default_handler")));
void BusFault_Handler(void) __attribute__((weak, alias("default_handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("default_handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("default_handler")));

__attribute__((section(".vectors"), used)) void (*const vector_table[16])(void) = {
    (void (*)(void))(&__stack_top), Reset_Handler, NMI_Handler, HardFault_Handler, MemManage_Handler,
    BusFault_Handler, UsageFault_Handler, 0, 0, 0, 0, default_handler, DebugMon_Handler, 0, default_handler,
    SysTick_Handler};
