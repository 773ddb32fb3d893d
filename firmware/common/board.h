/* What a board port provides to the firmware: a polled UART, its clock and its memory sizes. */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

void board_init(void);
void uart_write(const uint8_t *p, uint32_t n);
/* One received byte, or -1 when nothing arrived (non-blocking). */
int uart_read_byte(void);

extern const char BOARD_NAME[];
extern const uint32_t BOARD_CORE_HZ;  /* SysTick (CLKSOURCE=core) rate the firmware assumes */
extern const uint32_t BOARD_RAM_BYTES; /* RAM the firmware may use on this board */

#endif
