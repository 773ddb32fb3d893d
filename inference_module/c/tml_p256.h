/* ECDSA P-256 / SHA-256 signature verification (FIPS 186-5 §6.4.2) for the model manifest's COSE_Sign1.
 * Verification only: no secrets are handled, so the code is not constant-time; it has no undefined behaviour
 * for any input and reads exactly the bytes the signatures below name. Stack: under 1 KB, no heap. */
#ifndef TML_P256_H
#define TML_P256_H

#include <stdint.h>

typedef enum {
    TML_P256_VALID = 0,
    TML_P256_BAD_KEY = 1,      /* not 0x04 || X || Y with X, Y < p on the curve (SEC 1 §3.2.2.1); 0x00 = infinity */
    TML_P256_OUT_OF_RANGE = 2, /* r or s is 0 or >= n */
    TML_P256_MISMATCH = 3      /* well-formed, but not a signature of this digest under this key */
} tml_p256_result;

/* pub: SEC 1 uncompressed point (65 bytes); digest: SHA-256 of the message; sig: r || s, big-endian (RFC 9053). */
tml_p256_result tml_p256_verify(const uint8_t pub[65], const uint8_t digest[32], const uint8_t sig[64]);

/* 1 when pub is a valid uncompressed P-256 public key (the checks tml_p256_verify makes first). */
int tml_p256_public_key_valid(const uint8_t pub[65]);

#endif
