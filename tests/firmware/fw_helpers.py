"""Shared helpers for the firmware tests (QEMU)."""

import functools
import struct

from tinymlaas.paths import mlperf_model


@functools.lru_cache(maxsize=None)
def compiled(path):
    from tinymlaas.compiler import compile_tflite

    return compile_tflite(str(path)).blob


def mlperf_blob(key):
    return compiled(mlperf_model(key))


def header_with(blob, offset, fmt, value):
    h = bytearray(blob[:64])
    struct.pack_into(fmt, h, offset, value)
    return bytes(h)
