# unix port (an emulated board): only tinymlaas's modules. The variants' default manifest pulls micropython-lib
# (unix-ffi, ssl), which needs the micropython-lib submodule; tinymlaas uses none of it.
include("../manifest.py")
