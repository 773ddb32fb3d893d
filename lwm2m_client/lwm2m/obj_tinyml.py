# Object 32770 TinyML (private range 32769-42800 of the OMA registry): what a device can run and what it is
# running. Specified in docs/tinyml-object.xml. The service reads it after registration to pick a model that
# fits (heap, largest block, flash, ops, .mpy ABI) and observes resource 22 for inference results.
import gc
import json
import struct
import sys

import hal

from .objects import BOOLEAN, FLOAT, INTEGER, NONE, OPAQUE, STRING, LwObject, ResourceError, WriteError

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
# signed packages (docs/manifest.md): what the installer last refused and what it accepts, so the service can
# tell before sending that a package would be refused
UPDATE_REASON = 24
INSTALLED_SEQUENCE = 25
TRUST_ANCHORS = 26
VENDOR_ID = 27
CLASS_ID = 28
# key rotation (tinyml/anchors.py): a signed trust-anchor update, and the sequence of the last one taken
ANCHOR_UPDATE = 29
ANCHOR_SEQUENCE = 30
# privacy (docs/privacy.md): off, the device sends no inference results (22, 23) to anyone, until switched on again
RESULT_REPORTING = 31
REPORTING_FILE = "/report-results"  # in data_dir: "0" when off; absent or anything else: on
# the trusted keys' points, concatenated: written by a Bootstrap-Server only (lwm2m/bootstrap.py); like 26, never
# by a server in a management session (a Write gets 4.01): anchors change only by a signed update (29)
ANCHOR_KEYS = 32
# anomaly models (lwm2m/anomaly.py, imported only for one): threshold, last score, alarms, alarms the server took
ANOMALY_THRESHOLD = 33
ANOMALY_SCORE = 34
ALARM_COUNT = 35
ALARMS_REPORTED = 36
# on-device learning (lwm2m/learning.py, only for a model with a trainable head; in the resource table only then)
LEARN_FIRST, LEARN_LAST = 37, 43


def runtime_info():
    """(kernel flavour, supported op names) of the installed inference module, without loading a model."""
    flavour = "viper"
    ops = ""
    try:
        from tinyml.ops import OPS

        ops = ",".join(sorted(v[0] for v in OPS.values()))
    except Exception:  # no inference module in this firmware (or a broken one): report, keep managing
        flavour = "none"
    try:
        import _tinyml  # the C user module, when the firmware was built with it

        flavour = "c-module"
    except ImportError:
        pass
    return flavour, ops


def input_views(model):
    return [model.input_buffer(i) for i in range(len(model.inputs))]


class InputSink:
    """Receives one inference input (Block1 when larger than a block) straight into the model's input tensors
    in the arena: no buffer of its own. Several inputs are written back to back in graph order."""

    def __init__(self, obj):
        self.obj = obj
        self.got = 0

    def begin(self, size):
        if self.obj.model is None:
            raise WriteError(0xA3, "no model installed")
        need = self.obj.input_bytes
        if size and size != need:
            raise WriteError(0x80, "input must be %d bytes, got %d" % (need, size))
        self.got = 0

    def write(self, offset, chunk):
        need = self.obj.input_bytes
        if offset + len(chunk) > need:
            raise WriteError(0x8D, "input longer than %d bytes" % need, need)
        pos = 0
        base = 0
        for view in input_views(self.obj.model):
            n = len(view)
            lo = max(offset, base)
            hi = min(offset + len(chunk), base + n)
            if lo < hi:
                view[lo - base:hi - base] = chunk[lo - offset:hi - offset]
                pos += hi - lo
            base += n
        self.got = offset + len(chunk)

    def finish(self):
        if self.got != self.obj.input_bytes:
            raise WriteError(0x80, "input must be %d bytes, got %d" % (self.obj.input_bytes, self.got))
        self.obj.client.defer(self.obj.infer)  # answer 2.04 first, then run; observers get the result

    def abort(self):
        pass


_ELEMENT = {"int8": "<b", "uint8": "<B", "int16": "<h", "int32": "<i", "float32": "<f"}  # output dtype -> struct


def argmax(view, dtype):
    """Index of the largest value of an output, first on ties, NaN never (a tree model's int32 class scores, a
    float32 output as well as int8), -1 for an output without values or of another dtype."""
    fmt = _ELEMENT.get(dtype)
    if fmt is None:
        return -1
    size = struct.calcsize(fmt)
    best = None
    idx = -1
    for i in range(len(view) // size):
        v = struct.unpack_from(fmt, view, i * size)[0]
        if v == v and (best is None or v > best):
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
        LAST_TOP_CLASS: (INTEGER, "R"), UPDATE_REASON: (STRING, "R"), INSTALLED_SEQUENCE: (INTEGER, "R"),
        TRUST_ANCHORS: (STRING, "R"), VENDOR_ID: (STRING, "R"), CLASS_ID: (STRING, "R"),
        ANCHOR_UPDATE: (OPAQUE, "W"), ANCHOR_SEQUENCE: (INTEGER, "R"), RESULT_REPORTING: (BOOLEAN, "RW"),
        ANCHOR_KEYS: (OPAQUE, "R"), ANOMALY_THRESHOLD: (FLOAT, "R"), ANOMALY_SCORE: (FLOAT, "R"),
        ALARM_COUNT: (INTEGER, "R"), ALARMS_REPORTED: (INTEGER, "R"),
    }
    bootstrap_only = (TRUST_ANCHORS, ANCHOR_KEYS)  # client.py answers a Write of these 4.01

    def __init__(self, installer, data_dir, flash_bytes=None, coproc=None):
        """coproc: a tinyml.coproc.Link when models run on a co-processor; then the RAM, ops and CPU reported are
        the co-processor's (its arena is what a model needs), flash free the smaller of this device's package
        store and the co-processor's model slot."""
        super().__init__()
        self.flash_bytes = flash_bytes
        self.installer = installer
        self.data_dir = data_dir
        self.coproc_caps = None
        self.coproc = coproc
        if coproc is not None:
            from tinyml.coproc import opcode_names

            self.coproc_caps = coproc.caps()
            self.flavour, self.ops = "c-coprocessor", ",".join(sorted(opcode_names(self.coproc_caps)))
        else:
            self.flavour, self.ops = runtime_info()
        self.model = None
        self.info = None
        self.state = "none"
        self.input_bytes = 0
        self.count = 0
        self.last_us = 0
        self.last_result = b""
        self.top_class = -1
        self.self_test_result = ""
        self.anomaly = None  # an anomaly.Monitor while the active model is an anomaly model
        self.learner = None  # a learning.Learner while the active model has a trainable head
        try:
            with open(data_dir + REPORTING_FILE) as f:
                self.report_results = f.read().strip() != "0"
        except OSError:
            self.report_results = True
        self.reload()

    def unload(self):
        """Release the model (arena, open blob file) so that an update has the RAM to self-test the new one."""
        if self.learner is not None:
            self.learner.close()  # its head saved first
        if self.model is not None:
            try:
                self.model.close()
            except Exception:
                pass
        self.model = None
        self.input_bytes = 0
        gc.collect()

    def reload(self, model=None):
        """Run the active model after boot or an update: `model` when the installer hands over the one it has
        just self-tested, else loaded from the active slot; keep running without one if that fails. Observers
        of the heap and flash figures hear of them now, measured with the new model in place."""
        if model is None:
            self.unload()
        try:
            self.info = self.installer.active() if self.installer else None
        except Exception:
            self.info = None
        if not self.info:
            self.state = "none"
            if model is not None:
                model.close()
        else:
            try:
                self.model = model if model is not None else self.installer.load_active()
                self.input_bytes = sum(len(v) for v in input_views(self.model))
                self.state = "active"
            except MemoryError:
                self.model = None
                self.state = "out-of-ram"
            except Exception as e:
                self.model = None
                self.state = "load-failed: %s" % e
        self.watch()
        for rid in (FREE_HEAP, LARGEST_BLOCK, FLASH_FREE, MODEL_NAME, MODEL_VERSION, MODEL_SHA256, ARENA_BYTES,
                    BLOB_BYTES, MODEL_STATE, UPDATE_REASON, INSTALLED_SEQUENCE):
            self.changed(0, rid)

    def watch(self):
        """An anomaly model gets its alarms (lwm2m/anomaly.py), a model with a trainable head its learner
        (lwm2m/learning.py); a device with other models never imports them."""
        if self.anomaly is not None or (self.info and self.info.get("anomaly")):
            from . import anomaly

            anomaly.watch(self)
        if (self.info and self.info.get("head")) or "lwm2m.learning" in sys.modules:
            from . import learning

            learning.watch(self)

    def _info(self, key, default=""):
        return self.info.get(key, default) if self.info else default

    def read(self, iid, rid):
        cp = self.coproc_caps
        if cp is not None and rid in (FREE_HEAP, LARGEST_BLOCK, HEAP_TOTAL, FLASH_FREE, MACHINE):
            if rid == HEAP_TOTAL:
                return cp.get("ram", 0)
            if rid == FLASH_FREE:
                return min(hal.fs_free(self.data_dir, self.flash_bytes), cp.get("slot", 0))
            if rid == MACHINE:
                return "%s coprocessor %s" % (cp.get("cpu", "?"), cp.get("board", "?"))
            return cp.get("arena", 0)  # the co-processor's arena: all of it is the model's
        if rid == FREE_HEAP:
            return hal.mem_free()
        if rid == LARGEST_BLOCK:
            return hal.largest_free_block()
        if rid == HEAP_TOTAL:
            return hal.mem_total()
        if rid == FLASH_FREE:
            return hal.fs_free(self.data_dir, self.flash_bytes)
        if rid == PLATFORM:
            return hal.platform()
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
        if rid in (LAST_RESULT, LAST_TOP_CLASS) and not self.report_results:
            # refused when asked for alone (Read, Observe); left out of object and instance reads (client.py)
            raise ResourceError(0x83, "result reporting is off")  # 4.03 Forbidden
        if rid == LAST_RESULT:
            return self.last_result
        if rid == LAST_TOP_CLASS:
            return self.top_class
        if rid == RESULT_REPORTING:
            return self.report_results
        if rid == ANCHOR_KEYS:
            trust = self.installer and self.installer.trust
            return b"".join(trust.anchors[k] for k in sorted(trust.anchors)) if trust else b""
        if rid in (UPDATE_REASON, INSTALLED_SEQUENCE, TRUST_ANCHORS, VENDOR_ID, CLASS_ID):
            return self._trust(rid)
        if rid >= ANOMALY_THRESHOLD and rid <= ALARMS_REPORTED:
            a = self.anomaly
            return a.read(rid) if a is not None else (0.0 if rid <= ANOMALY_SCORE else 0)
        if rid == ANCHOR_SEQUENCE:
            trust = self.installer and self.installer.trust
            return getattr(trust, "anchor_sequence", 0) if trust else 0
        if LEARN_FIRST <= rid <= LEARN_LAST and self.learner is not None:  # else not in the table: 4.04
            return self.learner.read(rid)
        raise ResourceError(0x85)

    def write(self, iid, rid, value):
        if rid == RESULT_REPORTING:
            return self.set_reporting(value)
        if LEARN_FIRST <= rid <= LEARN_LAST and self.learner is not None:  # else not in the table: 4.04
            return self.learner.write(rid, value)
        if rid != ANCHOR_UPDATE:
            raise ResourceError(0x85)
        trust = self.installer and self.installer.trust
        from tinyml import anchors

        try:
            trust.anchor_sequence = anchors.apply(value, trust, getattr(trust, "anchor_sequence", 0), self.data_dir)
        except ValueError as e:  # cose.SignatureError: not from a key this device trusts, or not for it
            reason = getattr(e, "reason", str(e))
            print("anchor update refused:", reason)
            # 4.00 for what is not an update, 4.03 for an update from no trusted key, for another vendor, replayed
            raise ResourceError(0x80 if reason.startswith("malformed") else 0x83, reason)
        finally:
            anchors.release()
            self._forward_anchors(value)
        print("anchor update %d taken: trusts %s" % (trust.anchor_sequence, trust.key_ids()))
        self.changed(0, TRUST_ANCHORS)
        self.changed(0, ANCHOR_SEQUENCE)

    def _forward_anchors(self, update):
        """A co-processor verifies the packages it installs with its own anchors (firmware/common/trust_state.c):
        it gets every update this device is sent and judges it itself, so the two follow a rotation together (an
        update this device refuses as replayed may still be news to a co-processor that was away)."""
        if self.coproc is None:
            return
        from tinyml.coproc import CoprocError

        try:
            print("co-processor anchor update taken:", self.coproc.update_anchors(update))
        except CoprocError as e:
            print("co-processor refused the anchor update:", e)

    def _trust(self, rid):
        inst = self.installer
        trust = inst and inst.trust
        if rid == UPDATE_REASON:
            return inst.last_error if inst else ""
        if rid == INSTALLED_SEQUENCE:
            return inst.installed_sequence() if inst else 0
        if trust is None:
            return ""
        if rid == TRUST_ANCHORS:
            return trust.key_ids()
        return "".join("%02x" % b for b in (trust.vendor_id if rid == VENDOR_ID else trust.class_id))

    def set_reporting(self, on):
        """Switch result reporting, kept across reboots. Off: observations of the results end at once (no last
        notification), and reads of them are refused, so no result leaves the device."""
        import os

        path = self.data_dir + REPORTING_FILE
        if on:
            try:
                os.remove(path)
            except OSError:
                pass
        else:
            with open(path, "w") as f:
                f.write("0")
        self.report_results = bool(on)
        c = self.client
        if not on and c is not None:
            c.observations = [o for o in c.observations if not (o.path[0] == OID and len(o.path) > 2 and
                                                                 o.path[2] in (LAST_RESULT, LAST_TOP_CLASS))]

    def sink(self, iid, rid):
        if LEARN_FIRST <= rid <= LEARN_LAST and self.learner is not None:
            return self.learner.sink(rid)
        return InputSink(self) if rid == INPUT else None

    def infer(self):
        """One inference on the input in the arena -> True, or False with the reason in Model State."""
        m = self.model
        a = self.anomaly
        if a is not None:
            a.keep_input(m)
        try:
            m.invoke()
        except MemoryError:
            self.state = "out-of-ram"
            self.changed(0, MODEL_STATE)
            return False
        except Exception as e:  # a NaN feature, a co-processor that stopped answering: say so, keep the model
            self.state = "inference-failed: %s" % e
            self.changed(0, MODEL_STATE)
            return False
        if self.state != "active":
            self.state = "active"
            self.changed(0, MODEL_STATE)
        top = argmax(m.output_buffer(0), m.outputs[0]["dtype"])
        if self.learner is not None:  # the head answers: K float32 scores, its class
            out, top = self.learner.answer(m, top)
        else:
            out = bytearray()
            for j in range(len(m.outputs)):
                out += m.output_buffer(j)
        self.record(bytes(out), m.last_us, top)
        if a is not None:
            a.check(m)
        return True

    def record(self, result, us, top):
        self.count += 1
        self.last_us = us
        self.last_result = result
        self.top_class = top
        for rid in (INFERENCE_COUNT, LAST_LATENCY_US, LAST_RESULT, LAST_TOP_CLASS):
            self.changed(0, rid)

    def execute(self, iid, rid, arg):
        if LEARN_FIRST <= rid <= LEARN_LAST and self.learner is not None:  # else not in the table: 4.04
            return self.learner.execute(rid)
        if rid != SELF_TEST:
            raise ResourceError(0x85)
        if self.model is None:
            raise ResourceError(0xA3, "no model installed")
        self.client.defer(self.self_test)

    def golden_vectors(self):
        """(package path, vectors offset, count) of the active package, from the installer's pointer file (it
        has them from the package header, docs/package-format.md)."""
        root = self.installer.root
        with open(root + "/active") as f:
            p = json.loads(f.read())
        return root + "/" + p["slot"], p["vec_offset"], p["n_vectors"]

    def self_test(self):
        """Run the active package's golden vectors (bit-exact check) and record the latency of the last run."""
        m = self.model
        try:
            from tinyml.installer import run_vectors

            path, off, n = self.golden_vectors()
            run_vectors(m, path, off, n)
            self.self_test_result = "pass %d vectors, %d us" % (n, m.last_us)
            self.last_us = m.last_us
        except MemoryError:
            self.self_test_result = "fail: out of RAM"
        except Exception as e:
            self.self_test_result = "fail: %s" % e
        self.changed(0, SELF_TEST_RESULT)
        self.changed(0, LAST_LATENCY_US)
