# qemu port (MPS2_AN385 Cortex-M3, MPS2_AN500 Cortex-M7, ...): the port has no default frozen modules.
include("../manifest.py")
