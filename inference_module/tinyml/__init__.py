"""tinyml: executes tinymlaas model blobs (docs/blob-format.md) on MicroPython with viper kernels.

    import tinyml
    m = tinyml.load("model.blob")      # file: weights streamed per layer; bytes: used in place
    m.inspect()
    y = m.predict(x)                   # bytes / bytearray / array('b') / list (floats for float-I/O models)
    m.last_us                          # microseconds of the last inference
"""

from .errors import BlobError, SelfTestError
from .model import load, Model

__version__ = "0.1.0"
