# Module _tinyml: the tinymlaas C99 runtime (inference_module/c) plus its MicroPython binding.
add_library(usermod_tinyml INTERFACE)
get_filename_component(TINYML_RUNTIME_DIR ${CMAKE_CURRENT_LIST_DIR}/../../../../inference_module/c ABSOLUTE)
target_sources(usermod_tinyml INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/mod_tinyml.c
    ${TINYML_RUNTIME_DIR}/tml_load.c
    ${TINYML_RUNTIME_DIR}/tml_ops.c
    ${TINYML_RUNTIME_DIR}/tml_sha256.c
)
target_include_directories(usermod_tinyml INTERFACE ${TINYML_RUNTIME_DIR})
# QUANTIZE/DEQUANTIZE must match the host reference bit for bit: no fused multiply-add contraction.
target_compile_options(usermod_tinyml INTERFACE -ffp-contract=off)
target_link_libraries(usermod INTERFACE usermod_tinyml)
