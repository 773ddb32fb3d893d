# qemu port (MPS2_AN385 Cortex-M3, MPS2_AN500 Cortex-M7, ...): its default frozen modules are its own test suite's
# (unittest, tests/frozen), so only tinymlaas's.
include("../manifest.py")
