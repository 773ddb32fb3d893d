# stm32 boards: the port's default frozen modules, then tinymlaas's.
include("$(PORT_DIR)/boards/manifest.py")
include("../manifest.py")
