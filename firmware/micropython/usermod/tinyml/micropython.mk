# Make-based ports (stm32, unix, qemu): USER_C_MODULES=/path/to/tinymlaas/firmware/micropython/usermod
# (other modules beside it: USER_C_MODULES="/path/to/tinymlaas/firmware/micropython/usermod /path/to/ulab").
# Builds module _tinyml: the tinymlaas C99 runtime (inference_module/c) plus its MicroPython binding.
TINYML_MOD_DIR := $(USERMOD_DIR)
# The runtime lies four levels above this folder's real path: realpath, so that a folder of symlinks to modules
# (USER_C_MODULES=modules, modules/tinyml -> .../usermod/tinyml) finds it too. Absolute, so object files land
# under $(BUILD)/<absolute path>, inside the build directory.
TINYML_RUNTIME_DIR := $(realpath $(TINYML_MOD_DIR)/../../../../inference_module/c)
ifeq ($(TINYML_RUNTIME_DIR),)
$(error _tinyml: no inference_module/c four levels above $(realpath $(TINYML_MOD_DIR)); use the module inside a tinymlaas checkout)
endif

SRC_USERMOD_C += $(TINYML_MOD_DIR)/mod_tinyml.c
include $(TINYML_RUNTIME_DIR)/sources.mk
SRC_USERMOD_LIB_C += $(addprefix $(TINYML_RUNTIME_DIR)/,$(TML_CORE_SRCS) $(TML_SIG_SRCS))
CFLAGS_USERMOD += -I$(TINYML_RUNTIME_DIR)
# QUANTIZE/DEQUANTIZE must match the host reference bit for bit: no fused multiply-add contraction.
CFLAGS_USERMOD += -ffp-contract=off
