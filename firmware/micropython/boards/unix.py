# unix port (an emulated board): the standard variant's frozen modules (asyncio, and ssl and mip from
# micropython-lib, which `make submodules` fetches), then tinymlaas's.
include("$(PORT_DIR)/variants/standard/manifest.py")
include("../manifest.py")
