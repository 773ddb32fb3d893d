# Module _tinyml: the tinymlaas C99 runtime (inference_module/c) plus its MicroPython binding.
add_library(usermod_tinyml INTERFACE)
# Four levels above this folder's real path (REALPATH: a symlink to the folder finds the runtime too).
get_filename_component(TINYML_MOD_DIR ${CMAKE_CURRENT_LIST_DIR} REALPATH)
get_filename_component(TINYML_RUNTIME_DIR ${TINYML_MOD_DIR}/../../../../inference_module/c ABSOLUTE)
if(NOT EXISTS ${TINYML_RUNTIME_DIR}/tml.h)
    message(FATAL_ERROR "_tinyml: no inference_module/c four levels above ${TINYML_MOD_DIR}")
endif()
# the runtime's sources as inference_module/c/sources.mk names them (TML_CORE_SRCS, TML_SIG_SRCS)
target_sources(usermod_tinyml INTERFACE
    ${TINYML_MOD_DIR}/mod_tinyml.c
    ${TINYML_RUNTIME_DIR}/tml_sha256.c
    ${TINYML_RUNTIME_DIR}/tml_load.c
    ${TINYML_RUNTIME_DIR}/tml_ops.c
    ${TINYML_RUNTIME_DIR}/tml_dense.c
    ${TINYML_RUNTIME_DIR}/tml_gemm.c
    ${TINYML_RUNTIME_DIR}/tml_conv.c
    ${TINYML_RUNTIME_DIR}/tml_depthwise.c
    ${TINYML_RUNTIME_DIR}/tml_dw_m4.c
    ${TINYML_RUNTIME_DIR}/tml_classic.c
    ${TINYML_RUNTIME_DIR}/tml_p256.c
    ${TINYML_RUNTIME_DIR}/tml_cose.c
)
target_include_directories(usermod_tinyml INTERFACE ${TINYML_RUNTIME_DIR})
# QUANTIZE/DEQUANTIZE must match the host reference bit for bit: no fused multiply-add contraction.
target_compile_options(usermod_tinyml INTERFACE -ffp-contract=off)
target_link_libraries(usermod INTERFACE usermod_tinyml)
