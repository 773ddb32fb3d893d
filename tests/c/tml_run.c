/* Test driver for the C runtime, built with AddressSanitizer + UBSan by inference_module/c/Makefile.
 *   tml_run --validate BLOB...       one line per blob: "<status> <reason>"
 *   tml_run BLOB INPUTS OUTPUTS      run once: INPUTS holds the graph inputs concatenated, OUTPUTS gets the outputs
 * The blob and arena are exact-size heap buffers so any out-of-bounds access is caught. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tml.h"

static unsigned char *slurp(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(*len ? (size_t)*len : 1u);
    if (buf && fread(buf, 1, (size_t)*len, f) != (size_t)*len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static int validate(int argc, char **argv)
{
    int i;
    for (i = 2; i < argc; i++) {
        long len = 0;
        unsigned char *blob = slurp(argv[i], &len), *arena;
        tml_model m;
        tml_status s;
        uint32_t need;
        if (!blob) {
            printf("-1 cannot read %s\n", argv[i]);
            continue;
        }
        need = len >= 24 ? (uint32_t)blob[20] | (uint32_t)blob[21] << 8 | (uint32_t)blob[22] << 16 |
                               (uint32_t)blob[23] << 24
                         : 0;
        if (need > (64u << 20))
            need = 64u << 20;
        arena = malloc(need ? need : 1u);
        s = tml_load(&m, blob, (uint32_t)len, arena, need);
        printf("%d %s\n", (int)s, s ? tml_reason(&m) : "ok");
        free(arena);
        free(blob);
    }
    return 0;
}

int main(int argc, char **argv)
{
    long blen = 0, ilen = 0;
    unsigned char *blob, *in, *arena;
    tml_model m;
    tml_status s;
    uint32_t k, pos = 0;
    FILE *out;
    if (argc >= 2 && strcmp(argv[1], "--validate") == 0)
        return validate(argc, argv);
    if (argc != 4) {
        fprintf(stderr, "usage: tml_run --validate BLOB... | tml_run BLOB INPUTS OUTPUTS\n");
        return 2;
    }
    blob = slurp(argv[1], &blen);
    in = slurp(argv[2], &ilen);
    if (!blob || !in || blen < 64) {
        fprintf(stderr, "cannot read inputs\n");
        return 2;
    }
    {
        uint32_t need = (uint32_t)blob[20] | (uint32_t)blob[21] << 8 | (uint32_t)blob[22] << 16 |
                        (uint32_t)blob[23] << 24;
        arena = malloc(need ? need : 1u);
        s = tml_load(&m, blob, (uint32_t)blen, arena, need);
    }
    if (s) {
        fprintf(stderr, "load: %s\n", tml_reason(&m));
        return 3;
    }
    for (k = 0; k < m.n_inputs; k++) {
        tml_tensor t;
        tml_tensor_get(&m, (uint32_t)tml_input_index(&m, k), &t);
        if (pos + t.bytes > (uint32_t)ilen) {
            fprintf(stderr, "input file too short\n");
            return 2;
        }
        memcpy(tml_tensor_data(&m, (uint32_t)tml_input_index(&m, k)), in + pos, t.bytes);
        pos += t.bytes;
    }
    if ((s = tml_invoke(&m)) != TML_OK) {
        fprintf(stderr, "invoke: %d\n", (int)s);
        return 4;
    }
    out = fopen(argv[3], "wb");
    for (k = 0; k < m.n_outputs; k++) {
        tml_tensor t;
        tml_tensor_get(&m, (uint32_t)tml_output_index(&m, k), &t);
        fwrite(tml_tensor_data(&m, (uint32_t)tml_output_index(&m, k)), 1, t.bytes, out);
    }
    fclose(out);
    free(arena);
    free(blob);
    free(in);
    return 0;
}
