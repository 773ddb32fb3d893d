/* The firmware's side of the UART protocol (protocol.h), link.c: whole frames in and out, and the text builders
 * replies are made of. A reply is built in place in frame_tx after its 6-byte header (send_frame does not copy
 * a payload that is already there). */
#ifndef FW_LINK_H
#define FW_LINK_H

#include <stdint.h>

#include "protocol.h"

#define FRAME_BYTES (6u + PROTO_MAX_PAYLOAD + 4u) /* header, payload, CRC-32 */

extern uint8_t frame_rx[FRAME_BYTES]; /* the last good frame receive_frame returned */
extern uint8_t frame_tx[FRAME_BYTES];

/* One good frame into frame_rx (every malformed one is answered with a NAK and dropped); its payload length. */
uint32_t receive_frame(void);
void send_frame(uint8_t type, uint8_t seq, const uint8_t *payload, uint32_t len);
void nak(uint8_t seq, uint8_t code, uint8_t req, const char *reason);

/* Text into [o, end): each returns where it stopped, never past end. */
char *put_s(char *o, const char *end, const char *s);
char *put_u64(char *o, const char *end, uint64_t v);
char *put_u(char *o, const char *end, uint32_t v);
char *put_hex(char *o, const char *end, const uint8_t *p, uint32_t n);

uint32_t rd32(const uint8_t *p); /* little-endian */
void wr32(uint8_t *p, uint32_t v);

#endif
