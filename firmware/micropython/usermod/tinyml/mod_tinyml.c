// _tinyml: the tinymlaas C99 runtime (inference_module/c, tml.h) as a MicroPython module.
//
//   import _tinyml
//   total, arena = _tinyml.check_header(blob[:64])   # sizes from the 64-byte header alone
//   m = _tinyml.Model(blob, bytearray(arena))         # validates the whole blob (SHA-256, tensors, ops)
//   m.input(0)[:] = x                                 # writable memoryview of input 0 in the arena
//   m.invoke()
//   y = m.output(0)                                   # memoryview of output 0 (valid until the next invoke)
//   m.input_info(0) -> (dtype, shape, scale, zero_point, bytes)    dtype: 1 int8 2 uint8 3 int16 4 int32 5 float32
//   _tinyml.cose_verify(envelope, anchors)            # a signed manifest (docs/manifest.md), tml_cose.c's verifier
//       anchors: bytes, kid (8) || point (65) per trust anchor; -> (sequence, vendor_id, class_id, component,
//       blob_sha256, blob_bytes, name, version, vectors_sha256), or ValueError(reason) with the readers' words
//
// No allocation beyond the Model object (sizeof(tml_model) + 3 pointers): the blob bytes are used in place and
// the arena is the caller's bytearray. The Model keeps references to both, so the GC cannot free them while it
// lives; the caller must not modify the blob afterwards (the runtime validated it once, at construction).
#include <string.h>

#include "py/runtime.h"
#include "py/objarray.h"
#include "tml.h"
#include "tml_cose.h"

typedef struct {
    mp_obj_base_t base;
    mp_obj_t blob;   // keeps the blob alive
    mp_obj_t arena;  // keeps the arena alive
    tml_model m;
} tinyml_model_obj_t;

static NORETURN void raise_status(const tml_model *m, tml_status s) {
    mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("tml %s: %s"), tml_status_name(s), tml_reason(m));
}

// Model(blob, arena): blob is any readable buffer (bytes in flash, bytearray, memoryview); arena a writable one.
static mp_obj_t tinyml_model_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 2, 2, false);
    mp_buffer_info_t blob, arena;
    mp_get_buffer_raise(args[0], &blob, MP_BUFFER_READ);
    mp_get_buffer_raise(args[1], &arena, MP_BUFFER_WRITE);
    if (blob.len > UINT32_MAX || arena.len > UINT32_MAX) {
        mp_raise_ValueError(MP_ERROR_TEXT("buffer larger than 4 GB"));
    }
    tinyml_model_obj_t *self = mp_obj_malloc(tinyml_model_obj_t, type);
    self->blob = args[0];
    self->arena = args[1];
    memset(&self->m, 0, sizeof(self->m));
    tml_status s = tml_load(&self->m, blob.buf, (uint32_t)blob.len, arena.buf, (uint32_t)arena.len);
    if (s != TML_OK) {
        raise_status(&self->m, s);
    }
    return MP_OBJ_FROM_PTR(self);
}

static mp_obj_t tinyml_model_invoke(mp_obj_t self_in) {
    tinyml_model_obj_t *self = MP_OBJ_TO_PTR(self_in);
    tml_status s = tml_invoke(&self->m);
    if (s != TML_OK) {
        raise_status(&self->m, s);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(tinyml_model_invoke_obj, tinyml_model_invoke);

// Tensor index of input/output i, or raise IndexError.
static int io_index(tinyml_model_obj_t *self, mp_obj_t i_in, bool output) {
    mp_int_t i = mp_obj_get_int(i_in);
    int t = (i < 0) ? -1 : (output ? tml_output_index(&self->m, (uint32_t)i) : tml_input_index(&self->m, (uint32_t)i));
    if (t < 0) {
        mp_raise_msg_varg(&mp_type_IndexError, MP_ERROR_TEXT("no %s %d"), output ? "output" : "input", (int)i);
    }
    return t;
}

static mp_obj_t io_view(mp_obj_t self_in, mp_obj_t i_in, bool output) {
    tinyml_model_obj_t *self = MP_OBJ_TO_PTR(self_in);
    int t = io_index(self, i_in, output);
    tml_tensor info;
    void *data = tml_tensor_data(&self->m, (uint32_t)t);
    if (tml_tensor_get(&self->m, (uint32_t)t, &info) != 0 || data == NULL) {
        mp_raise_ValueError(MP_ERROR_TEXT("tensor is not in the arena"));
    }
    // Input views are writable (the caller fills them); output views are read-only.
    return mp_obj_new_memoryview(output ? 'B' : ('B' | MP_OBJ_ARRAY_TYPECODE_FLAG_RW), info.bytes, data);
}

static mp_obj_t tinyml_model_input(mp_obj_t self_in, mp_obj_t i_in) {
    return io_view(self_in, i_in, false);
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinyml_model_input_obj, tinyml_model_input);

static mp_obj_t tinyml_model_output(mp_obj_t self_in, mp_obj_t i_in) {
    return io_view(self_in, i_in, true);
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinyml_model_output_obj, tinyml_model_output);

static mp_obj_t io_info(mp_obj_t self_in, mp_obj_t i_in, bool output) {
    tinyml_model_obj_t *self = MP_OBJ_TO_PTR(self_in);
    int t = io_index(self, i_in, output);
    tml_tensor info;
    if (tml_tensor_get(&self->m, (uint32_t)t, &info) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("bad tensor"));
    }
    mp_obj_t dims[4];
    for (size_t k = 0; k < info.rank && k < 4; k++) {
        dims[k] = mp_obj_new_int_from_uint(info.dims[k]);
    }
    mp_obj_t items[5] = {
        MP_OBJ_NEW_SMALL_INT(info.dtype),
        mp_obj_new_tuple(info.rank < 4 ? info.rank : 4, dims),
        mp_obj_new_float(info.scale),
        mp_obj_new_int(info.zero_point),
        mp_obj_new_int_from_uint(info.bytes),
    };
    return mp_obj_new_tuple(5, items);
}

static mp_obj_t tinyml_model_input_info(mp_obj_t self_in, mp_obj_t i_in) {
    return io_info(self_in, i_in, false);
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinyml_model_input_info_obj, tinyml_model_input_info);

static mp_obj_t tinyml_model_output_info(mp_obj_t self_in, mp_obj_t i_in) {
    return io_info(self_in, i_in, true);
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinyml_model_output_info_obj, tinyml_model_output_info);

// (number of inputs, number of outputs, arena bytes the blob needs)
static mp_obj_t tinyml_model_sizes(mp_obj_t self_in) {
    tinyml_model_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_obj_t items[3] = {
        MP_OBJ_NEW_SMALL_INT(self->m.n_inputs),
        MP_OBJ_NEW_SMALL_INT(self->m.n_outputs),
        mp_obj_new_int_from_uint(self->m.arena_bytes),
    };
    return mp_obj_new_tuple(3, items);
}
static MP_DEFINE_CONST_FUN_OBJ_1(tinyml_model_sizes_obj, tinyml_model_sizes);

static const mp_rom_map_elem_t tinyml_model_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_invoke), MP_ROM_PTR(&tinyml_model_invoke_obj) },
    { MP_ROM_QSTR(MP_QSTR_input), MP_ROM_PTR(&tinyml_model_input_obj) },
    { MP_ROM_QSTR(MP_QSTR_output), MP_ROM_PTR(&tinyml_model_output_obj) },
    { MP_ROM_QSTR(MP_QSTR_input_info), MP_ROM_PTR(&tinyml_model_input_info_obj) },
    { MP_ROM_QSTR(MP_QSTR_output_info), MP_ROM_PTR(&tinyml_model_output_info_obj) },
    { MP_ROM_QSTR(MP_QSTR_sizes), MP_ROM_PTR(&tinyml_model_sizes_obj) },
};
static MP_DEFINE_CONST_DICT(tinyml_model_locals, tinyml_model_locals_table);

MP_DEFINE_CONST_OBJ_TYPE(
    tinyml_type_model,
    MP_QSTR_Model,
    MP_TYPE_FLAG_NONE,
    make_new, tinyml_model_make_new,
    locals_dict, &tinyml_model_locals
    );

// check_header(buf) -> (total_bytes, arena_bytes) from the first 64 bytes; ValueError with the reason otherwise.
static mp_obj_t tinyml_check_header(mp_obj_t buf_in) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(buf_in, &buf, MP_BUFFER_READ);
    uint32_t total = 0, arena = 0;
    char reason[120];
    tml_status s = tml_check_header(buf.buf, buf.len > UINT32_MAX ? UINT32_MAX : (uint32_t)buf.len, &total, &arena,
        reason, sizeof(reason));
    if (s != TML_OK) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("tml %s: %s"), tml_status_name(s), reason);
    }
    mp_obj_t items[2] = { mp_obj_new_int_from_uint(total), mp_obj_new_int_from_uint(arena) };
    return mp_obj_new_tuple(2, items);
}
static MP_DEFINE_CONST_FUN_OBJ_1(tinyml_check_header_obj, tinyml_check_header);

// The anchors buffer is read in place as tml_anchor[]: two byte arrays, so no padding and byte alignment.
typedef char tinyml_anchor_is_73_bytes[sizeof(tml_anchor) == TML_KID_BYTES + 65 ? 1 : -1];

static mp_obj_t text_obj(tml_text t) {
    return mp_obj_new_str((const char *)t.p, t.len);  // printable ASCII: the parser checked every byte
}

// cose_verify(envelope, anchors) -> the manifest's fields in tinyml.cose.FIELDS order; ValueError(reason).
// About 1.9 KB of C stack and no heap until the result tuple (docs/manifest.md, "Cost").
static mp_obj_t tinyml_cose_verify(mp_obj_t env_in, mp_obj_t anchors_in) {
    mp_buffer_info_t env, anchors;
    mp_get_buffer_raise(env_in, &env, MP_BUFFER_READ);
    mp_get_buffer_raise(anchors_in, &anchors, MP_BUFFER_READ);
    if (anchors.len % sizeof(tml_anchor) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("anchors: kid (8 bytes) || point (65 bytes) each"));
    }
    tml_manifest m;
    const char *why = tml_cose_verify(env.buf, env.len > UINT32_MAX ? UINT32_MAX : (uint32_t)env.len,
        (const tml_anchor *)anchors.buf, (uint32_t)(anchors.len / sizeof(tml_anchor)), &m);
    if (why) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("%s"), why);
    }
    mp_obj_t items[9] = {
        mp_obj_new_int_from_ull(m.sequence),
        mp_obj_new_bytes(m.vendor_id, sizeof(m.vendor_id)),
        mp_obj_new_bytes(m.class_id, sizeof(m.class_id)),
        text_obj(m.component),
        mp_obj_new_bytes(m.blob_sha256, sizeof(m.blob_sha256)),
        mp_obj_new_int_from_uint(m.blob_bytes),
        text_obj(m.name),
        text_obj(m.version),
        mp_obj_new_bytes(m.vectors_sha256, sizeof(m.vectors_sha256)),
    };
    return mp_obj_new_tuple(9, items);
}
static MP_DEFINE_CONST_FUN_OBJ_2(tinyml_cose_verify_obj, tinyml_cose_verify);

static mp_obj_t tinyml_kernel_set(void) {
    return mp_obj_new_str(tml_kernel_set(), strlen(tml_kernel_set()));
}
static MP_DEFINE_CONST_FUN_OBJ_0(tinyml_kernel_set_obj, tinyml_kernel_set);

static const mp_rom_map_elem_t tinyml_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__tinyml) },
    { MP_ROM_QSTR(MP_QSTR_Model), MP_ROM_PTR(&tinyml_type_model) },
    { MP_ROM_QSTR(MP_QSTR_check_header), MP_ROM_PTR(&tinyml_check_header_obj) },
    { MP_ROM_QSTR(MP_QSTR_kernel_set), MP_ROM_PTR(&tinyml_kernel_set_obj) },
    { MP_ROM_QSTR(MP_QSTR_cose_verify), MP_ROM_PTR(&tinyml_cose_verify_obj) },
    { MP_ROM_QSTR(MP_QSTR_ABI), MP_ROM_INT(TML_ABI) },
    { MP_ROM_QSTR(MP_QSTR_FORMAT_VERSION), MP_ROM_INT(TML_FORMAT_VERSION) },
};
static MP_DEFINE_CONST_DICT(tinyml_module_globals, tinyml_module_globals_table);

const mp_obj_module_t tinyml_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&tinyml_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR__tinyml, tinyml_user_cmodule);
