/* tinymlaas C99 runtime: loads, validates and runs a model blob (docs/blob-format.md, format 1, ABI 1).
 *
 * No allocation: the caller owns the blob bytes (weights are used in place, e.g. straight from flash) and
 * the activation arena. tml_load() validates the whole blob before anything can run; tml_invoke() then
 * executes the op list. Extra RAM beyond the arena: the tml_model struct and a fixed stack frame per kernel
 * (see docs/c-runtime.md for measured numbers).
 */
#ifndef TML_H
#define TML_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TML_FORMAT_VERSION 1
#define TML_ABI 1
#define TML_HEADER_BYTES 64
#define TML_RUNTIME_VERSION "0.1.0"

typedef enum {
    TML_OK = 0,
    TML_E_ARG = 1,      /* bad call: NULL pointer, arena too small, model not loaded */
    TML_E_HEADER = 2,   /* magic, format version, header size, ABI, total_bytes */
    TML_E_SECTION = 3,  /* section table */
    TML_E_HASH = 4,     /* SHA-256 mismatch */
    TML_E_TENSOR = 5,   /* tensor records */
    TML_E_GRAPH = 6,    /* GRAPH section */
    TML_E_OP = 7,       /* op records */
    TML_E_RUNTIME = 8   /* an op failed at run time (cannot happen for a validated blob) */
} tml_status;

enum { TML_INT8 = 1, TML_UINT8 = 2, TML_INT16 = 3, TML_INT32 = 4, TML_FLOAT32 = 5 };
enum { TML_ARENA = 0, TML_CONST = 1 };

typedef struct {
    uint8_t dtype, rank, storage;
    uint32_t dims[4];
    uint32_t offset, bytes;
    int32_t zero_point;
    float scale;
} tml_tensor;

typedef struct {
    const uint8_t *blob;
    uint32_t blob_len;
    uint8_t *arena;
    uint32_t arena_bytes;   /* the blob's arena_bytes (<= the caller's arena) */
    uint8_t *scratch;       /* the caller's arena beyond arena_bytes (4-aligned), or NULL: the M4's CONV_2D keeps */
    uint32_t scratch_bytes; /* its weights widened to int16 there, from one tml_invoke to the next */
    uint32_t scratch_used;  /* bytes of scratch those hold (0 after tml_load) */
    const uint8_t *tensors; /* TENSORS records */
    uint32_t n_tensors;
    const uint8_t *ops;     /* OPS records */
    uint32_t ops_size, n_ops;
    const uint8_t *consts;  /* CONST section */
    uint32_t consts_size;
    const uint8_t *graph;   /* GRAPH section */
    uint32_t graph_size;
    uint16_t n_inputs, n_outputs;
    const uint8_t *meta;    /* META JSON or NULL */
    uint32_t meta_size;
    uint32_t flags, max_op_params;
    int loaded;
    /* Optional per-op hook (profiling): called with end=0 before and end=1 after op k. */
    void (*on_op)(void *ctx, uint32_t k, int end);
    void *on_op_ctx;
    /* PATCH stages (tml_patch.h): while a tile runs, tensor tile_tensor[i] (i < n_tile) reads as
     * [1, tile_rows[i], tile_cols[i], C], at arena offset tile_at[i] unless that is UINT32_MAX; the stage runs
     * each op tile_runs times (its tiles); stage op tile_op is running, and bit j of tile_plain says that stage op
     * j's requantization check passed on an earlier tile (tml_tile_bit) */
    uint16_t tile_tensor[2];
    uint32_t tile_rows[2], tile_cols[2], tile_at[2], tile_runs, tile_plain;
    uint8_t n_tile, tile_op;
    tml_status status;
    char reason[120];       /* why the last call failed, for humans */
} tml_model;

/* Header-only check of the first 64 bytes (what a device can decide before receiving the rest):
 * magic, format_version, header_bytes, abi, section_count. Writes total_bytes and arena_bytes. */
tml_status tml_check_header(const void *header, uint32_t len, uint32_t *total_bytes, uint32_t *arena_bytes,
                            char *reason, uint32_t reason_len);

/* Validate `blob` completely (docs/blob-format.md §9) and bind it to `arena`. `blob` must stay valid and
 * unchanged while the model is used. Returns TML_OK or an error with m->reason set. */
tml_status tml_load(tml_model *m, const void *blob, uint32_t blob_len, void *arena, uint32_t arena_len);

/* Run every op in order. Inputs must have been written at tml_input_data(). */
tml_status tml_invoke(tml_model *m);

const char *tml_reason(const tml_model *m);
const char *tml_status_name(tml_status s);

int tml_tensor_get(const tml_model *m, uint32_t index, tml_tensor *t); /* 0 on success */
int tml_input_index(const tml_model *m, uint32_t i);                   /* tensor index or -1 */
int tml_output_index(const tml_model *m, uint32_t i);
void *tml_tensor_data(const tml_model *m, uint32_t index); /* arena bytes of an arena tensor; NULL otherwise */

/* SHA-256 (FIPS 180-4), used by the loader; exposed for firmware and tests. */
typedef struct {
    uint32_t h[8];
    uint64_t n;
    uint8_t buf[64];
    uint32_t fill;
} tml_sha256;
void tml_sha256_init(tml_sha256 *s);
void tml_sha256_update(tml_sha256 *s, const void *data, size_t len);
void tml_sha256_final(tml_sha256 *s, uint8_t out[32]);

/* sizeof(tml_model), for bindings that allocate it themselves (ctypes). */
size_t tml_model_size(void);

/* Which kernel set this build uses: "reference" or "cortex-m-dsp". */
const char *tml_kernel_set(void);

#ifdef __cplusplus
}
#endif
#endif
