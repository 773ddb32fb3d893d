/* libFuzzer target: tml_load on arbitrary bytes, then tml_invoke when the blob validated and is small enough to
 * run quickly. Built with -DTML_FUZZING, which skips only the SHA-256 comparison (no mutation could pass it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t arena[4096];
    uint8_t *blob;
    tml_model m;
    if (size > (1u << 20))
        return 0;
    blob = malloc(size ? size : 1u); /* exact size, so ASan sees any read past the end */
    memcpy(blob, data, size);
    if (tml_load(&m, blob, (uint32_t)size, arena, sizeof arena) == TML_OK && size <= 4096)
        tml_invoke(&m);
    free(blob);
    return 0;
}
