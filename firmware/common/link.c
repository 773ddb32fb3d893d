/* The firmware's side of the UART protocol (protocol.h): frames in (resynchronising on SYNC, NAKs for garbage,
 * truncation, bad length and CRC) and out, and the small text builders the replies are made of. */
#include <string.h>

#include "board.h"
#include "link.h"
#include "nvm.h"
#include "protocol.h"
#include "systick.h"

#define BYTE_TIMEOUT_MS 1000u /* idle time inside a frame before it counts as truncated (a 1 KB frame takes 90 ms at 115200 baud) */
#define GARBAGE_IDLE_MS 50u   /* idle time after stray bytes before they are reported */

uint8_t frame_rx[FRAME_BYTES];
uint8_t frame_tx[FRAME_BYTES];

/* ---- the text replies are made of ---- */

uint32_t rd32(const uint8_t *p) { return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24); }
void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

char *put_s(char *o, const char *end, const char *s)
{
    while (*s && o < end)
        *o++ = *s++;
    return o;
}

/* Decimal, without 64-bit division (which would link libgcc's __aeabi_uldivmod): long division by 10 over four
 * 16-bit limbs, whose partial remainders fit 32 bits. */
char *put_u64(char *o, const char *end, uint64_t v)
{
    uint32_t limb[4] = {(uint32_t)(v >> 48) & 0xFFFFu, (uint32_t)(v >> 32) & 0xFFFFu, (uint32_t)(v >> 16) & 0xFFFFu,
                        (uint32_t)v & 0xFFFFu};
    char t[20];
    int n = 0;
    uint32_t left;
    do {
        uint32_t k, r = 0;
        left = 0;
        for (k = 0; k < 4; k++) {
            uint32_t cur = r << 16 | limb[k];
            limb[k] = cur / 10u;
            r = cur % 10u;
            left |= limb[k];
        }
        t[n++] = (char)('0' + r);
    } while (left);
    while (n && o < end)
        *o++ = t[--n];
    return o;
}

char *put_u(char *o, const char *end, uint32_t v) { return put_u64(o, end, v); }

char *put_hex(char *o, const char *end, const uint8_t *p, uint32_t n)
{
    static const char hex[] = "0123456789abcdef";
    while (n-- && o + 1 < end) {
        *o++ = hex[*p >> 4];
        *o++ = hex[*p++ & 15u];
    }
    return o;
}

static uint64_t ms_to_cycles(uint32_t ms) { return (uint64_t)BOARD_CORE_HZ / 1000u * ms; }

/* ---- frames ---- */

void send_frame(uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t len)
{
    frame_tx[0] = PROTO_SYNC0;
    frame_tx[1] = PROTO_SYNC1;
    frame_tx[2] = type;
    frame_tx[3] = seq;
    frame_tx[4] = (uint8_t)len;
    frame_tx[5] = (uint8_t)(len >> 8);
    if (payload != frame_tx + 6 && len)
        memmove(frame_tx + 6, payload, len);
    wr32(frame_tx + 6 + len, fw_crc32(0, frame_tx + 2, 4 + len));
    uart_write(frame_tx, 10 + len);
}

void nak(uint8_t seq, uint8_t code, uint8_t req, const char *reason)
{
    uint8_t *p = frame_tx + 6;
    char *o = (char *)p + 2, *end = (char *)frame_tx + 6 + PROTO_MAX_PAYLOAD;
    p[0] = code;
    p[1] = req;
    o = put_s(o, end, reason);
    send_frame(REPLY_NAK, seq, p, (uint32_t)(o - (char *)p));
}

static int read_byte_until(uint64_t deadline)
{
    for (;;) {
        int b = uart_read_byte();
        if (b >= 0)
            return b;
        if (systick_cycles() >= deadline)
            return -1;
    }
}

static void report_garbage(uint32_t n)
{
    char msg[64], *o = msg, *end = msg + sizeof msg - 1;
    o = put_s(o, end, "skipped ");
    o = put_u(o, end, n);
    o = put_s(o, end, " bytes outside a frame");
    *o = 0;
    nak(0xFF, NAK_GARBAGE, 0, msg);
}

/* Resynchronises on SYNC after garbage; the timeouts are SysTick time (virtual time under QEMU -icount). */
uint32_t receive_frame(void)
{
    uint32_t garbage = 0;
    for (;;) {
        int b;
        uint32_t len, i, got;
        if (garbage) {
            b = read_byte_until(systick_cycles() + ms_to_cycles(GARBAGE_IDLE_MS));
            if (b < 0) {
                report_garbage(garbage);
                garbage = 0;
                continue;
            }
        } else {
            while ((b = uart_read_byte()) < 0) {
            }
        }
        if (b != PROTO_SYNC0) {
            garbage++;
            continue;
        }
        b = read_byte_until(systick_cycles() + ms_to_cycles(BYTE_TIMEOUT_MS));
        if (b != PROTO_SYNC1) {
            garbage += b < 0 ? 1u : 2u;
            continue;
        }
        if (garbage) {
            report_garbage(garbage);
            garbage = 0;
        }
        for (i = 2; i < 6; i++) {
            b = read_byte_until(systick_cycles() + ms_to_cycles(BYTE_TIMEOUT_MS));
            if (b < 0)
                break;
            frame_rx[i] = (uint8_t)b;
        }
        if (i < 6) {
            nak(0xFF, NAK_TRUNCATED, 0, "frame truncated inside its header");
            continue;
        }
        len = frame_rx[4] | ((uint32_t)frame_rx[5] << 8);
        if (len > PROTO_MAX_PAYLOAD) {
            /* drain the rest of this frame so its bytes are not reported as garbage */
            while (read_byte_until(systick_cycles() + ms_to_cycles(GARBAGE_IDLE_MS)) >= 0) {
            }
            nak(frame_rx[3], NAK_TOO_LONG, frame_rx[2], "frame payload longer than 1040 bytes");
            continue;
        }
        for (got = 0; got < len + 4; got++) {
            b = read_byte_until(systick_cycles() + ms_to_cycles(BYTE_TIMEOUT_MS));
            if (b < 0)
                break;
            frame_rx[6 + got] = (uint8_t)b;
        }
        if (got < len + 4) {
            nak(frame_rx[3], NAK_TRUNCATED, frame_rx[2], "frame truncated: line idle before its end");
            continue;
        }
        if (fw_crc32(0, frame_rx + 2, 4 + len) != rd32(frame_rx + 6 + len)) {
            nak(frame_rx[3], NAK_CRC, frame_rx[2], "frame CRC mismatch");
            continue;
        }
        return len;
    }
}
