# Frozen modules for a tinymlaas MicroPython firmware: the inference module, the LwM2M device client and the
# REPL helper, compiled into flash by the port's build (no .py/.mpy files on the board's filesystem, no bytecode
# in the heap). Paths are relative to this file, so the manifest works from any MicroPython checkout:
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/tinymlaas/firmware/micropython/boards/esp32.py
#
# This file holds only tinymlaas's packages; boards/<port>.py include the port's own default manifest first.
package("tinyml", base_path="../../inference_module")
module("hal.py", base_path="../../lwm2m_client")
package("coap", base_path="../../lwm2m_client")
package("lwm2m", base_path="../../lwm2m_client")
module("tinyml_device.py", base_path="../../lwm2m_client")
module("tinyml_repl.py", base_path="modules")
