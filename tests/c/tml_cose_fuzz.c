/* libFuzzer target for the signed-manifest reader: every input goes through tml_cose_verify, through
 * tml_manifest_parse as a bare manifest and, when long enough, through tml_p256_verify as public key || digest ||
 * signature. The trust anchor (the key tests/signing/test_signing_fuzz.py signs its trusted seed with) is offered
 * for one input in 64, chosen by a hash of the whole input (a mutation anywhere re-draws it, so the corpus cannot
 * fill up with inputs that keep it): a full ECDSA verification costs ~3 ms under ASan, the parser microseconds, so
 * the 1 M-input campaign spends most of its time on the parser and still reaches the signature check with mutated
 * signatures and payloads. The other inputs stop at "unknown key". Every input is also parsed as a trust-anchor
 * update's payload (tml_anchor_update_parse, what the firmware's anchor update reads after the signature). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tml_cose.h"
#include "tml_p256.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* d = SHA-256("tinymlaas fuzz key") mod n; kid = SHA-256(point)[:8] */
static const tml_anchor anchor = {
    {0x4a, 0xa3, 0xd4, 0x43, 0x7e, 0x5a, 0xe0, 0x03},
    {0x04, 0x6e, 0xf2, 0x11, 0x50, 0xb8, 0xce, 0x16, 0xdd, 0x92, 0xab, 0x32, 0x15, 0xd7, 0xf3, 0x52, 0x40,
     0x37, 0xf4, 0x05, 0x34, 0x20, 0xc0, 0x9c, 0x88, 0x38, 0x3e, 0x41, 0xb8, 0x77, 0x83, 0xed, 0x10,
     0x0c, 0x61, 0xf1, 0x1c, 0x4e, 0xd1, 0x9a, 0x73, 0x1b, 0xdc, 0x91, 0xf3, 0x42, 0xc8, 0xa0, 0x2d,
     0x19, 0x68, 0xc9, 0x78, 0xb8, 0xab, 0x9e, 0xe0, 0x48, 0x04, 0x2f, 0x6c, 0x35, 0x80, 0x27, 0x65}};

/* FNV-1a, 32 bits */
static uint32_t input_hash(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    tml_manifest m;
    tml_anchor_update u;
    if (size > 4096)
        return 0;
    copy = malloc(size ? size : 1u); /* exact size, so ASan sees any read past the end */
    memcpy(copy, data, size);
    tml_cose_verify(copy, (uint32_t)size, &anchor, input_hash(data, size) % 64u == 0 ? 1u : 0u, &m);
    tml_manifest_parse(copy, (uint32_t)size, &m);
    tml_anchor_update_parse(copy, (uint32_t)size, &u);
    if (size >= 65 + 32 + 64)
        tml_p256_verify(copy, copy + 65, copy + 97);
    free(copy);
    return 0;
}
