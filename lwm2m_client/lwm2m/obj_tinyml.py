# Object 32770 TinyML (private range 32769-42800 of the OMA registry): what a device can run and what it is
# running. Specified in docs/tinyml-object.xml. The service reads it after registration to pick a model that
# fits (heap, largest block, flash, ops, .mpy ABI) and observes resource 22 for inference results.
import sys

import hal

from .objects import INTEGER, NONE, OPAQUE, STRING, LwObject, ResourceError, WriteError

OID = 32770

FREE_HEAP = 0
LARGEST_BLOCK = 1
HEAP_TOTAL = 2
FLASH_FREE = 3
PLATFORM = 4
MACHINE = 5
MPY_ABI = 6
RUNTIME_NAME = 7
RUNTIME_VERSION = 8
KERNEL_FLAVOUR = 9
SUPPORTED_OPS = 10
MODEL_NAME = 11
MODEL_VERSION = 12
MODEL_SHA256 = 13
ARENA_BYTES = 14
BLOB_BYTES = 15
MODEL_STATE = 16
INFERENCE_COUNT = 17
LAST_LATENCY_US = 18
SELF_TEST = 19
SELF_TEST_RESULT = 20
INPUT = 21
LAST_RESULT = 22
LAST_TOP_CLASS = 23


def runtime_info():
    """(kernel flavour, supported op names) of the installed inference module, without loading a model."""
    flavour = "viper"
    ops = ""
    try:
        import tinyml.blob as tb

        ops = ",".join(sorted(v[0] for v in tb.OPS.values()))
    except Exception:  # no inference module in this firmware (or a broken one): report, keep managing
        flavour = "none"
    try:
        import _tinyml  # the C user module, when the firmware was built with it

        flavour = "c-module"
    except ImportError:
        pass
    return flavour, ops


class InputSink:
    """Receives one inference input (Block1 if larger than a block) into the model's input buffer."""

    def __init__(self, obj):
        self.obj = obj
        self.got = 0

    def begin(self, size):
        if self.obj.model is None:
            raise WriteError(0xA3, "no model installed")
        need = len(self.obj.input_buf)
        if size is not None and size and size != need:
            raise WriteError(0x80, "input must be %d bytes, got %d" % (need, size))
        self.got = 0

    def write(self, offset, chunk):
        buf = self.obj.input_buf
        if offset + len(chunk) > len(buf):
            raise WriteError(0x8D, "input longer than %d bytes" % len(buf), len(buf))
        buf[offset:offset + len(chunk)] = chunk
        self.got = offset + len(chunk)

    def finish(self):
        if self.got != len(self.obj.input_buf):
            raise WriteError(0x80, "input must be %d bytes, got %d" % (len(self.obj.input_buf), self.got))
        self.obj.client.defer(self.obj.infer)  # answer 2.04 first, then run; observers get the result

    def abort(self):
        pass


def output_bytes(out):
    """Model output (bytes/bytearray/array/list, or a list of those) -> raw bytes of the output tensor(s)."""
    if isinstance(out, (bytes, bytearray)):
        return bytes(out)
    if isinstance(out, (list, tuple)) and out and not isinstance(out[0], (int, float)):
        b = bytearray()
        for o in out:
            b += output_bytes(o)
        return bytes(b)
    try:
        return bytes(out)  # array('b') or memoryview
    except (TypeError, ValueError):
        return bytes((int(v) & 0xFF) for v in out)


def argmax(out):
    if isinstance(out, (list, tuple)) and out and not isinstance(out[0], (int, float)):
        out = out[0]
    best = None
    idx = -1
    signed = not isinstance(out, (bytes, bytearray))
    for i, v in enumerate(out):
        if signed and isinstance(v, int) and v > 127:
            v -= 256
        if best is None or v > best:
            best = v
            idx = i
    return idx


class TinyML(LwObject):
    oid = OID
    version = "1.0"
    resources = {
        FREE_HEAP: (INTEGER, "R"), LARGEST_BLOCK: (INTEGER, "R"), HEAP_TOTAL: (INTEGER, "R"),
        FLASH_FREE: (INTEGER, "R"), PLATFORM: (STRING, "R"), MACHINE: (STRING, "R"), MPY_ABI: (STRING, "R"),
        RUNTIME_NAME: (STRING, "R"), RUNTIME_VERSION: (STRING, "R"), KERNEL_FLAVOUR: (STRING, "R"),
        SUPPORTED_OPS: (STRING, "R"), MODEL_NAME: (STRING, "R"), MODEL_VERSION: (STRING, "R"),
        MODEL_SHA256: (STRING, "R"), ARENA_BYTES: (INTEGER, "R"), BLOB_BYTES: (INTEGER, "R"),
        MODEL_STATE: (STRING, "R"), INFERENCE_COUNT: (INTEGER, "R"), LAST_LATENCY_US: (INTEGER, "R"),
        SELF_TEST: (NONE, "E"), SELF_TEST_RESULT: (STRING, "R"), INPUT: (OPAQUE, "W"), LAST_RESULT: (OPAQUE, "R"),
        LAST_TOP_CLASS: (INTEGER, "R"),
    }

    def __init__(self, installer, data_dir):
        super().__init__()
        self.installer = installer
        self.data_dir = data_dir
        self.flavour, self.ops = runtime_info()
        self.model = None
        self.info = None
        self.state = "none"
        self.input_buf = None
        self.count = 0
        self.last_us = 0
        self.last_result = b""
        self.top_class = -1
        self.self_test_result = ""
        self.reload()

    def reload(self):
        """(Re)load the active model after boot or an update; keep running without one if it fails."""
        self.model = None
        self.input_buf = None
        try:
            self.info = self.installer.active() if self.installer else None
        except Exception:
            self.info = None
        if not self.info:
            self.state = "none"
            return
        try:
            self.model = self.installer.load_active()
            self.input_buf = bytearray(self.input_size(self.model))
            self.state = "active"
        except MemoryError:
            self.model = None
            self.state = "out-of-ram"
        except Exception as e:
            self.model = None
            self.state = "load-failed: %s" % e
        for rid in (MODEL_NAME, MODEL_VERSION, MODEL_SHA256, ARENA_BYTES, BLOB_BYTES, MODEL_STATE):
            self.changed(0, rid)

    @staticmethod
    def input_size(model):
        n = getattr(model, "input_bytes", None)
        if n:
            return n
        t = model.inputs[0]
        get = t.get if isinstance(t, dict) else (lambda k, d=None: getattr(t, k, d))
        n = get("bytes") or get("nbytes")
        if n:
            return n
        size = 1
        for d in get("shape"):
            size *= d
        return size * {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4}.get(get("dtype", "int8"), 1)

    def _info(self, key, default=""):
        return self.info.get(key, default) if self.info else default

    def read(self, iid, rid):
        if rid == FREE_HEAP:
            return hal.mem_free()
        if rid == LARGEST_BLOCK:
            return hal.largest_free_block()
        if rid == HEAP_TOTAL:
            return hal.mem_total()
        if rid == FLASH_FREE:
            return hal.fs_free(self.data_dir)
        if rid == PLATFORM:
            return sys.platform
        if rid == MACHINE:
            return hal.machine_name()
        if rid == MPY_ABI:
            return hal.mpy_abi()
        if rid == RUNTIME_NAME:
            return sys.implementation.name
        if rid == RUNTIME_VERSION:
            return hal.runtime_version()
        if rid == KERNEL_FLAVOUR:
            return self.flavour
        if rid == SUPPORTED_OPS:
            return self.ops
        if rid == MODEL_NAME:
            return str(self._info("name"))
        if rid == MODEL_VERSION:
            return str(self._info("version"))
        if rid == MODEL_SHA256:
            return str(self._info("sha256"))
        if rid == ARENA_BYTES:
            return int(self._info("arena_bytes", 0))
        if rid == BLOB_BYTES:
            return int(self._info("blob_bytes", 0))
        if rid == MODEL_STATE:
            return self.state
        if rid == INFERENCE_COUNT:
            return self.count
        if rid == LAST_LATENCY_US:
            return self.last_us
        if rid == SELF_TEST_RESULT:
            return self.self_test_result
        if rid == LAST_RESULT:
            return self.last_result
        if rid == LAST_TOP_CLASS:
            return self.top_class
        raise ResourceError(0x85)

    def sink(self, iid, rid):
        return InputSink(self) if rid == INPUT else None

    def infer(self):
        out = self.model.predict(self.input_buf)
        self.record(out, getattr(self.model, "last_us", 0))

    def record(self, out, us):
        self.count += 1
        self.last_us = us
        self.last_result = output_bytes(out)
        self.top_class = argmax(out)
        for rid in (INFERENCE_COUNT, LAST_LATENCY_US, LAST_RESULT, LAST_TOP_CLASS):
            self.changed(0, rid)

    def execute(self, iid, rid, arg):
        if rid != SELF_TEST:
            raise ResourceError(0x85)
        if self.model is None:
            raise ResourceError(0xA3, "no model installed")
        self.client.defer(self.self_test)

    def self_test(self):
        """Run the active package's golden vectors (the installer's check) and time the model."""
        m = self.model
        t0 = hal.ticks_us()
        try:
            vectors = getattr(self.installer, "vectors", None)
            if hasattr(m, "self_test") and vectors is not None:
                m.self_test(vectors())
            else:
                m.predict(self.input_buf)
            us = getattr(m, "last_us", 0) or hal.ticks_diff(hal.ticks_us(), t0)
            self.self_test_result = "pass %d us" % us
            self.last_us = us
        except MemoryError:
            self.self_test_result = "fail: out of RAM"
        except Exception as e:
            self.self_test_result = "fail: %s" % e
        self.changed(0, SELF_TEST_RESULT)
        self.changed(0, LAST_LATENCY_US)
