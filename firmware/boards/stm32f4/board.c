/* STM32F405/407 (netduinoplus2 in QEMU, stm32f4_discovery in Renode, real boards): USART2 on PA2/PA3, AF7.
 * Clocks are left at reset (16 MHz HSI), so the same binary runs on hardware without PLL setup. */
#include "board.h"

#define RCC_AHB1ENR (*(volatile uint32_t *)0x40023830u)
#define RCC_APB1ENR (*(volatile uint32_t *)0x40023840u)
#define GPIOA_MODER (*(volatile uint32_t *)0x40020000u)
#define GPIOA_AFRL (*(volatile uint32_t *)0x40020020u)
#define USART2 0x40004400u
#define USART_SR (*(volatile uint32_t *)(USART2 + 0x00u))
#define USART_DR (*(volatile uint32_t *)(USART2 + 0x04u))
#define USART_BRR (*(volatile uint32_t *)(USART2 + 0x08u))
#define USART_CR1 (*(volatile uint32_t *)(USART2 + 0x0Cu))
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)

const char BOARD_NAME[] = "stm32f4";
const uint32_t BOARD_CORE_HZ = 16000000u;
const uint32_t BOARD_RAM_BYTES = 128u * 1024u; /* SRAM1+2; the 64 KB CCM is not modelled by QEMU 7.2 */

void board_init(void)
{
    RCC_AHB1ENR |= 1u;         /* GPIOA */
    RCC_APB1ENR |= 1u << 17;   /* USART2 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4); /* PA2, PA3 alternate function */
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8); /* AF7 = USART2 */
    USART_BRR = 0x8Bu;         /* 16 MHz / 115200 = 8.6875 -> mantissa 8, fraction 11 */
    USART_CR1 = (1u << 13) | (1u << 3) | (1u << 2); /* UE, TE, RE */
}

void uart_write(const uint8_t *p, uint32_t n)
{
    while (n--) {
        while (!(USART_SR & SR_TXE)) {
        }
        USART_DR = *p++;
    }
}

int uart_read_byte(void)
{
    if (!(USART_SR & SR_RXNE))
        return -1;
    return (int)(USART_DR & 0xFFu);
}
