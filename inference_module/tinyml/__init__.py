"""tinyml: executes tinymlaas model blobs (docs/blob-format.md) on MicroPython: viper kernels, or the `_tinyml`
C module where the firmware has it (docs/runtime-micropython.md).

    import tinyml
    m = tinyml.load("model.blob")      # file: weights streamed per layer (viper); bytes: used in place (C module
                                       # when present); kernels="viper" / "c-module" / "reference" to choose
    m.inspect()
    y = m.predict(x)                   # bytes / array / list / ulab ndarray; floats for an int8 input are quantized
    m.last_us                          # microseconds of the last inference
"""

from .errors import BlobError, SelfTestError


def load(blob, *args, **kw):
    """tinyml.model.load; imported on first use, so that a device whose models run elsewhere (tinyml.coproc) or
    that only installs packages does not hold the kernels in RAM."""
    from .model import load as _load
    return _load(blob, *args, **kw)


def unload(*names):
    """Drop modules of this package ("cose", ...) so that the collector frees their code until the next import;
    those a board keeps resident (frozen code, or an emulated board's: lwm2m_client/hal.py) stay."""
    import sys

    import tinyml

    for name in names:
        mod = sys.modules.get("tinyml." + name)
        if mod is None or getattr(mod, "_resident", False):
            continue
        del sys.modules["tinyml." + name]
        if hasattr(tinyml, name):
            delattr(tinyml, name)


__version__ = "0.1.0"
