"""tinyml: executes tinymlaas model blobs (docs/blob-format.md) on MicroPython with viper kernels.

    import tinyml
    m = tinyml.load("model.blob")      # file: weights streamed per layer; bytes: used in place
    m.inspect()
    y = m.predict(x)                   # bytes / bytearray / array('b') / list (floats for float-I/O models)
    m.last_us                          # microseconds of the last inference
"""

from .errors import BlobError, SelfTestError


def load(blob, *args, **kw):
    """tinyml.model.load; imported on first use, so that a device whose models run elsewhere (tinyml.coproc) or
    that only installs packages does not hold the kernels in RAM."""
    from .model import load as _load
    return _load(blob, *args, **kw)

__version__ = "0.1.0"
