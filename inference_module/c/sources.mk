# The C runtime's sources, named once for every Make build that includes this file (inference_module/c/Makefile,
# firmware/Makefile, the MicroPython user module's micropython.mk); micropython.cmake and the Python side
# (tinymlaas.paths.C_RUNTIME_SOURCES) list the same names, checked by tests/boards/test_firmware_files.py.
#   TML_CORE_SRCS  loader, kernels, classic ML, SHA-256: what runs a blob
#   TML_SIG_SRCS   the signed-manifest verifier (ECDSA P-256, COSE_Sign1), which also needs tml_sha256.c
#   TML_FAST_SRCS  the host kernels (-DTML_FAST), only in the host library and its sanitized runner
TML_KERNEL_SRCS := tml_ops.c tml_dense.c tml_gemm.c tml_conv.c tml_depthwise.c tml_dw_m4.c
TML_CORE_SRCS := tml_sha256.c tml_load.c $(TML_KERNEL_SRCS) tml_classic.c
TML_SIG_SRCS := tml_p256.c tml_cose.c
TML_FAST_SRCS := tml_fast.c tml_fast_conv.c
