/* ARM MPS2 AN386 (Cortex-M4) as QEMU models it: CMSDK APB UART0 at 0x40004000, 25 MHz system clock. */
#include "board.h"

#define UART0 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0 + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART0 + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART0 + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0 + 0x10u))
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u

const char BOARD_NAME[] = "mps2-an386";
const uint32_t BOARD_CORE_HZ = 25000000u;
const uint32_t BOARD_RAM_BYTES = 4u * 1024u * 1024u;

void board_init(void)
{
    UART_BAUDDIV = 25000000u / 115200u;
    UART_CTRL = 3u; /* TX and RX enable */
}

void uart_write(const uint8_t *p, uint32_t n)
{
    while (n--) {
        while (UART_STATE & STATE_TX_FULL) {
        }
        UART_DATA = *p++;
    }
}

int uart_read_byte(void)
{
    if (!(UART_STATE & STATE_RX_FULL))
        return -1;
    return (int)(UART_DATA & 0xFFu);
}
