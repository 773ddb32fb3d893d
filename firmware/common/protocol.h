/* The UART install-and-infer protocol (docs/firmware.md is its specification; host side:
 * host/tinymlaas/devices/uart_protocol.py).
 *
 * Frame:  A5 5A | type u8 | seq u8 | len u16 LE | payload[len] | crc32 u32 LE
 * crc32 is IEEE 802.3 (zlib.crc32) over type..payload. Every request gets exactly one reply with the same seq:
 * type | 0x80 on success, NAK otherwise. */
#ifndef PROTOCOL_H
#define PROTOCOL_H

#define PROTO_SYNC0 0xA5u
#define PROTO_SYNC1 0x5Au
#define PROTO_VERSION 1u
#define PROTO_MAX_PAYLOAD 1040u /* a 1024-byte data chunk plus its offset header, with room to spare */
#define PROTO_CHUNK 1024u

enum {
    REQ_CAPS = 0x01,      /* -> CAPS text */
    REQ_BEGIN = 0x02,     /* blob header (64 bytes) -> u32 chunk size */
    REQ_CHUNK = 0x03,     /* u32 offset, data -> u32 bytes received */
    REQ_COMMIT = 0x04,    /* -> text summary; the blob is validated and becomes the active model */
    REQ_ERASE = 0x05,     /* drop the active model (frees its slot) */
    REQ_INPUT = 0x06,     /* u32 offset, data (into the concatenated graph inputs) */
    REQ_INVOKE = 0x07,    /* -> u32 status, u64 cycles, u32 output bytes, first output bytes */
    REQ_OUTPUT = 0x08,    /* u32 offset, u16 length -> bytes of the concatenated graph outputs */
    REQ_CALIBRATE = 0x09, /* u32 n -> u64 cycles of a 2n-instruction loop */
    REQ_PROFILE = 0x0A,   /* -> u32 cycles per op of the last INVOKE (first 256 ops) */
    REQ_ANCHORS = 0x0B,   /* anchor update (COSE_Sign1, <= 512 B) -> "anchors=<kids> anchor_sequence=N cycles=C" */
    REPLY_OK = 0x80,      /* OR-ed into the request type */
    REPLY_BOOT = 0xC0,    /* unsolicited, seq 0: CAPS text sent once at boot */
    REPLY_NAK = 0x7F      /* u8 code, u8 request type, reason text */
};

enum {
    NAK_CRC = 1,        /* frame CRC mismatch */
    NAK_TOO_LONG = 2,   /* len > PROTO_MAX_PAYLOAD */
    NAK_TRUNCATED = 3,  /* the line went idle inside a frame */
    NAK_GARBAGE = 4,    /* bytes outside any frame were skipped */
    NAK_UNKNOWN = 5,    /* unknown request type */
    NAK_STATE = 6,      /* request not valid now (e.g. CHUNK without BEGIN) */
    NAK_LENGTH = 7,     /* payload length wrong for the request */
    NAK_NO_ROOM = 8,    /* blob or arena larger than this device can hold */
    NAK_REJECTED = 9,   /* the runtime rejected the blob (format, ABI, hash, ops): reason follows */
    NAK_OFFSET = 10,    /* chunk/input offset not the expected one */
    NAK_NO_MODEL = 11,  /* no model installed */
    NAK_STORAGE = 12    /* the model store failed: flash erase/program/verify, or no room beside the active model */
};

#endif
