# On-device learning (docs/learning.md, TinyML resources 37-43): a model whose package metadata carries "head"
# {kind, lr, save_every, output} answers through a small float head (tinyml/learn.py) on its embedding, graph
# output `output`, and learns labelled samples into it. Imported by obj_tinyml only for such a model: other
# devices never load this code or tinyml.learn. Resources 37-43 exist only while a head does: the object's
# resource table (client.py reads, writes, discovers by it) gains them here and loses them when the head goes.
# RAM: the head (learn.py: 4*K*D + 16*K + 4*D + 50 bytes), a 2-byte label, 256 bytes while a head is checked.
import gc

import hal
from tinyml import learn

from .objects import BOOLEAN, FLOAT, INTEGER, NONE, OPAQUE, ResourceError, WriteError

LEARN_SAMPLE = 37
LABEL = 38
SAMPLES = 39
ACCURACY = 40
HEAD = 41
RESET_HEAD = 42
LEARNING = 43
RESOURCES = {LEARN_SAMPLE: (OPAQUE, "W"), LABEL: (INTEGER, "W"), SAMPLES: (INTEGER, "R"), ACCURACY: (FLOAT, "R"),
             HEAD: (OPAQUE, "RW"), RESET_HEAD: (NONE, "E"), LEARNING: (BOOLEAN, "RW")}
LEARNING_FILE = "/learning"  # in data_dir: "0" while frozen; absent or anything else: learning
UPLOAD = "/head.in"  # in the installer's root: a head being written (/41), checked whole before it is taken


def watch(obj):
    """After a model change of the TinyML object `obj`: a Learner for a model with a head (and its resources in
    the object's table), none (and this code dropped) for another."""
    config = obj.info and obj.info.get("head")
    if obj.learner is not None:
        obj.learner.close()
    if not config or obj.model is None:
        hal.unload("lwm2m.learning", "tinyml.learn")  # collected once nothing refers to them (unless resident)
        return
    try:
        obj.learner = Learner(obj, config)
    except (ValueError, MemoryError) as e:  # learn.HeadError: the model cannot carry this head; no head, no model
        obj.unload()  # (the host reads /22 as the head's float32 scores: the model's own bytes would mislead it)
        obj.state = "out-of-ram" if isinstance(e, MemoryError) else "load-failed: %s" % e
        return
    table = dict(type(obj).resources)
    table.update(RESOURCES)
    obj.resources = table


def _settle():
    """A collection right after the head's arithmetic. Scoring (and an SGD step) boxes a few floats per
    multiply-add on the unix, esp32 and stm32 ports: KWS makes ~100 KB of garbage per inference on x64 (about half
    on a 32-bit port), so the allocator sweeps the whole free heap every inference or two, and what the client keeps
    after each one (the result, the notification, the duplicate-cache entry) lands anywhere in it: an emulated
    esp32's largest free block fell from 72.0 to 4.8 KB in 400 inferences. Collected here, those land at the bottom
    and the largest block stays (72.0 KB after 800 inferences and 60 samples; bench/learning_heap.py)."""
    gc.collect()


def _whole(v, low):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _config(config):
    """The package's head config, checked: -> (kind id, lr, save_every, output)."""
    c = config if isinstance(config, dict) else {}
    kind, lr = c.get("kind"), c.get("lr")
    lr_ok = isinstance(lr, (int, float)) and not isinstance(lr, bool) and learn._finite(lr) and lr >= 0
    if not (isinstance(kind, str) and kind in learn.KINDS and lr_ok and _whole(c.get("save_every"), 1) and
            _whole(c.get("output"), 1)):
        raise learn.HeadError("head config must be {kind: softmax|ncm, lr: finite number >= 0, save_every: int >= 1, "
                              "output: int >= 1}, not %r" % (config,))
    return learn.KINDS[kind], float(lr), c["save_every"], c["output"]


class Learner:
    def __init__(self, obj, config):
        self.obj = obj
        self.kind, self.lr, self.save_every, self.output = _config(config)
        model = obj.model
        prog, src = getattr(model, "_p", None), getattr(model, "_src", None)
        if prog is None or src is None:
            raise learn.HeadError("a trainable head needs the model's blob on this device (not a co-processor's)")
        self.root = obj.installer.root
        learn.remove(self.root + UPLOAD)  # a head upload a reboot cut short
        self.head = learn.initial(self.kind, self.lr, model, self.output, prog, src)
        learn.load(self.root, self.head)  # the saved head when it fits this model, else the initial one stays
        self.unsaved = 0  # samples learned since the head was last saved
        self.labelable = False  # an inference since the last label: /38 may label it
        self.fallback = -1  # the model's own answer (argmax of output 0) of that inference
        try:
            with open(obj.data_dir + LEARNING_FILE) as f:
                self.on = f.read().strip() != "0"
        except OSError:
            self.on = True

    def close(self):
        """The head goes (model unloaded or changed): unsaved samples saved, resources 37-43 gone from the table."""
        obj = self.obj
        obj.learner = None
        obj.resources = type(obj).resources
        if self.unsaved:
            self.save()

    # ----- after each inference (obj_tinyml.infer) -----

    def answer(self, model, top):
        """The head's answer on the embedding of the inference just run: (/22 bytes: K float32 little-endian
        scores, /23 class). top: the model's own argmax of output 0, the answer of an ncm head not ready yet."""
        h = self.head
        h.embed(model.output_buffer(self.output))
        _settle()
        self.labelable = True
        self.fallback = top
        return bytes(h.z), h.top() if h.ready() else top

    # ----- resources -----

    def read(self, rid):
        h = self.head
        if rid == SAMPLES:
            return h.samples
        if rid == ACCURACY:
            return h.accuracy()
        if rid == HEAD:
            return h.encode()
        if rid == LEARNING:
            return self.on
        raise ResourceError(0x85)

    def write(self, rid, value):
        if rid == LABEL:
            return self.label(value)
        if rid != LEARNING:
            raise ResourceError(0x85)
        path = self.obj.data_dir + LEARNING_FILE
        if value:
            learn.remove(path)
        else:
            with open(path, "w") as f:
                f.write("0")
        self.on = bool(value)

    def execute(self, rid):
        if rid != RESET_HEAD:
            raise ResourceError(0x85)
        m = self.obj.model
        learn.initial(self.kind, self.lr, m, self.output, m._p, m._src, self.head)
        self.labelable = False
        self.save()
        self.changed()

    def sink(self, rid):
        return SampleSink(self) if rid == LEARN_SAMPLE else HeadSink(self) if rid == HEAD else None

    # ----- learning -----

    def check_label(self, label):
        if not 0 <= label < self.head.k:
            raise ResourceError(0x80, "label %d: this head has classes 0..%d" % (label, self.head.k - 1))

    def label(self, label):
        """/38: learn `label` for the last inference's embedding (once)."""
        self.check_label(label)
        if not self.labelable:
            raise ResourceError(0x80, "no inference since the last label")
        self.learn(label)

    def learn(self, label):
        self.labelable = False
        h = self.head
        h.learn(label, self.fallback, self.on)
        _settle()
        if self.on:
            self.unsaved += 1
            if self.unsaved >= self.save_every:
                self.save()
        self.changed()

    def save(self):
        try:
            self.head.save(self.root)
            self.unsaved = 0
        except OSError as e:  # flash full or failing: the head goes on learning in RAM, saved again later
            print("head not saved:", e)

    def changed(self):
        for rid in (SAMPLES, ACCURACY, HEAD):
            self.obj.changed(0, rid)


class SampleSink:
    """/37: a u16 little-endian label, then the model input (as /21 takes it) streamed into the arena; at the
    end the device runs the inference and learns the label before it answers."""

    def __init__(self, learner):
        from .obj_tinyml import InputSink

        self.learner = learner
        self.input = InputSink(learner.obj)
        self.lab = bytearray(2)
        self.got = 0

    def _need(self):
        return 2 + self.learner.obj.input_bytes

    def begin(self, size):
        self.input.begin(0)  # no model: 4.03 as for /21
        if size and size != self._need():
            raise WriteError(0x80, "a sample is a 2-byte label and the %d-byte input: %d bytes, got %d" % (
                self._need() - 2, self._need(), size))
        self.got = 0

    def write(self, offset, chunk):
        n = len(chunk)
        if offset + n > self._need():
            raise WriteError(0x80, "a sample is %d bytes (2-byte label, then the input), got more" % self._need())
        if offset < 2:
            k = min(2 - offset, n)
            self.lab[offset:offset + k] = chunk[:k]
            if offset + k == 2:
                try:
                    self.learner.check_label(self.lab[0] | self.lab[1] << 8)
                except ResourceError as e:
                    raise WriteError(0x80, str(e))
            chunk = memoryview(chunk)[k:]
            offset += k
        if len(chunk):
            self.input.write(offset - 2, chunk)
        self.got = offset + len(chunk)

    def finish(self):
        if self.got != self._need():
            raise WriteError(0x80, "a sample is %d bytes (2-byte label, then the input), got %d" % (
                self._need(), self.got))
        lr = self.learner
        if not lr.obj.infer():  # the failure is in Model State (16)
            raise WriteError(0xA0, "inference failed: %s" % lr.obj.state)
        lr.learn(self.lab[0] | self.lab[1] << 8)

    def abort(self):
        pass


class HeadSink:
    """/41 written: the TMLH head streamed into head.in, checked whole (learn.check: format, CRC, values, this
    model's kind, D, K and embedding quantization) and only then renamed over head.bin and loaded; a bad one is
    refused with 4.00 and its reason, the head in RAM and in flash untouched."""

    def __init__(self, learner):
        self.learner = learner
        h = learner.head
        self.total = learn.total_bytes(h.d, h.k)
        self.path = learner.root + UPLOAD
        self.f = None
        self.got = 0

    def begin(self, size):
        self.abort()
        try:
            self.f = open(self.path, "wb")
        except OSError as e:
            raise WriteError(0x8D, "no room for the head in flash: %s" % e)
        self.got = 0

    def write(self, offset, chunk):
        if offset + len(chunk) > self.total:
            h = self.learner.head
            raise WriteError(0x80, "head longer than %d bytes: this model's head is %s D=%d K=%d" % (
                self.total, learn._name(h.kind), h.d, h.k))
        try:
            self.f.write(chunk)
        except OSError as e:  # the client aborts the transfer: head.in goes, the head stays
            raise WriteError(0x8D, "no room for the head in flash: %s" % e)
        self.got = offset + len(chunk)

    def finish(self):
        self.f.close()
        self.f = None
        lr = self.learner
        try:
            lr.head.read_file(self.path)  # checked whole before anything changes
        except learn.HeadError as e:
            learn.remove(self.path)
            raise WriteError(0x80, str(e))
        # the checked bytes are the saved head: renamed in through head.tmp, which load() takes at boot when a
        # filesystem without atomic replace lost head.bin between the remove and the rename
        learn.replace(self.path, lr.root + learn.TMP)
        learn.replace(lr.root + learn.TMP, lr.root + learn.FILE)
        lr.unsaved = 0
        lr.labelable = False
        lr.changed()

    def abort(self):
        if self.f is not None:
            self.f.close()
            self.f = None
        learn.remove(self.path)
