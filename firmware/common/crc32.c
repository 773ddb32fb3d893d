/* CRC-32, IEEE 802.3 (zlib.crc32): the UART frames' check (main.c) and the state records' (nvstate.c). */
#include "nvm.h"

uint32_t fw_crc32(uint32_t crc, const uint8_t *p, uint32_t n)
{
    crc = ~crc;
    while (n--) {
        int k;
        crc ^= *p++;
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}
