"""On-device learning (docs/learning.md, TinyML resources 37-43) in the real MicroPython VM, over loopback UDP: a
KWS package compiled with its embedding as graph output 1 and a trainable head in its metadata; samples learned
through /37 (label + input, Block1) and /38 (a label for the last /21 inference), Samples /39 and Accuracy /40,
the head read whole (/41, Block2) and decoded by the host codec, a bad head refused with 4.00 and the old one
kept, Reset /42, Learning /43 (frozen: counted, not learned), the head saved every `save_every` samples and
found again after a restart, dropped by a new install; a device whose model has no head answers 4.04 for 37-43
and lists none of them."""

import functools
import json
import struct

import cbor2
import numpy as np
import pytest
from aiocoap import numbers as an

from coap_test_peer import block_opt, push, wait_value

from tinymlaas.blob import reference
from tinymlaas.compiler import compile_tflite
from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import compiled_path
from tinymlaas.learning.head import decode, encode
from tinymlaas.package import build_package
from tinymlaas.paths import mlperf_model

from packages import package

LEARN = range(37, 44)
K, D = 12, 64  # KWS: 12 keywords, a 64-value embedding (the flatten before its last FULLY_CONNECTED)


@functools.lru_cache(maxsize=None)
def kws():
    """-> (blob with the embedding as output 1, [(inputs, outputs)] of 4 random inputs)."""
    blob = bytes(compile_tflite(mlperf_model("kws"), embedding_output=True).blob)
    rng = np.random.default_rng(15)
    vectors = []
    for _ in range(4):
        x = rng.integers(-128, 128, size=(1, 49, 10, 1), dtype=np.int8)
        vectors.append(([x], [np.asarray(o) for o in reference.run(blob, [x])]))
    return blob, vectors


def kws_package(kind="softmax", save_every=3, sequence=None, version="1"):
    blob, vectors = kws()
    head = {"kind": kind, "lr": 0.05, "save_every": save_every, "output": 1}
    return build_package(blob, "kws-learn", version, vectors[:2], head=head, sequence=sequence)


def install(peer, pkg, name=b"kws-learn"):
    assert push(peer, "/5/0/0", pkg).code == an.CHANGED
    assert peer.request(an.POST, "/5/0/2").code == an.CHANGED
    assert wait_value(peer, "/5/0/5", b"1") == b"1"
    assert wait_value(peer, "/32770/0/16", b"active") == b"active"
    assert peer.request(an.GET, "/5/0/6").payload == name


def started(peer, tmp_path, pkg=None):
    peer.start_device(tmp_path, heap="1m")
    peer.accept_register()
    if pkg is not None:
        install(peer, pkg)


def get(peer, path, **opts):
    """Read a resource whole, block by block (Block2) when it is larger than one."""
    whole, num = b"", 0
    while True:
        r = peer.request(an.GET, path, block2=(num, False, 6), **opts)
        assert r.code == an.CONTENT, (path, r.code, r.payload)
        whole += r.payload
        if r.opt.block2 is None or not r.opt.block2.more:
            return whole
        num += 1


def value(peer, path):
    return get(peer, path).decode()


def infer(peer, x):
    """One inference of input x through /21 -> (/22 as K float32 scores, /23)."""
    count = int(value(peer, "/32770/0/17"))
    assert peer.request(an.PUT, "/32770/0/21", payload=x.tobytes(), content_format=42).code == an.CHANGED
    assert wait_value(peer, "/32770/0/17", b"%d" % (count + 1)) == b"%d" % (count + 1)
    scores = np.frombuffer(get(peer, "/32770/0/22"), "<f4")
    return scores, int(value(peer, "/32770/0/23"))


def sample(peer, label, x, szx=2):
    """/37: label + input, Block1 in 64-byte blocks -> the final response."""
    return push(peer, "/32770/0/37", struct.pack("<H", label) + x.tobytes(), szx=szx)


def discover(peer):
    r = peer.request(an.GET, "/32770/0", accept=40)
    assert r.code == an.CONTENT
    return {int(p.strip("<>").split("/")[3]) for p in r.payload.decode().split(",") if p.count("/") == 3}


def embedding_scores(head, emb):
    x = head.scale * (emb.reshape(-1).astype(np.float64) - head.zero_point)
    return head.scores(x)[0]


def test_learn_samples_labels_head_reset_and_freeze(peer, tmp_path):
    blob, vectors = kws()
    started(peer, tmp_path, kws_package(save_every=100))
    assert set(LEARN) <= discover(peer)
    assert value(peer, "/32770/0/39") == "0" and float(value(peer, "/32770/0/40")) == -1.0
    assert value(peer, "/32770/0/43") == "1"
    initial = get(peer, "/32770/0/41")
    head = decode(initial)
    assert (head.kind, head.classes, head.dim, head.samples) == ("softmax", K, D, 0)

    # the initial head is the model's last layer: its scores are the logits of the embedding, its class the model's
    x, (y, emb) = vectors[0][0][0], vectors[0][1]
    scores, top = infer(peer, x)
    assert scores.shape == (K,)
    np.testing.assert_allclose(scores, embedding_scores(head, emb), rtol=1e-5, atol=1e-4)
    assert top == int(np.argmax(scores)) == int(np.argmax(y))

    # /38 labels the last inference, once
    label = (top + 1) % K
    assert peer.request(an.PUT, "/32770/0/38", payload=b"%d" % label, content_format=0).code == an.CHANGED
    assert value(peer, "/32770/0/39") == "1" and float(value(peer, "/32770/0/40")) == 0.0
    r = peer.request(an.PUT, "/32770/0/38", payload=b"%d" % label, content_format=0)
    assert r.code == an.BAD_REQUEST and b"no inference since the last label" in r.payload
    infer(peer, x)
    r = peer.request(an.PUT, "/32770/0/38", payload=b"%d" % K, content_format=0)
    assert r.code == an.BAD_REQUEST and b"classes 0..11" in r.payload
    assert value(peer, "/32770/0/39") == "1"

    # /37: label + input in 64-byte blocks; learned before the answer; what the head predicted counts first
    for i in range(6):
        assert sample(peer, label, x).code == an.CHANGED
    assert value(peer, "/32770/0/39") == "7"
    acc = float(value(peer, "/32770/0/40"))
    assert 0.0 < acc < 1.0  # the first samples missed, the later ones (the head has learned `label`) hit
    assert infer(peer, x)[1] == label
    assert sample(peer, K, x).code == an.BAD_REQUEST                          # label beyond the classes
    r = push(peer, "/32770/0/37", struct.pack("<H", 1) + x.tobytes()[:-1], szx=2)  # one input byte short
    assert r.code == an.BAD_REQUEST and b"2-byte label" in r.payload
    assert value(peer, "/32770/0/39") == "7"

    learned = get(peer, "/32770/0/41")
    h = decode(learned)
    assert h.samples == 7 and not np.array_equal(h.weights, head.weights)

    # a bad head is refused with its reason; the head stays
    bad = bytearray(learned)
    bad[40] ^= 1
    r = push(peer, "/32770/0/41", bytes(bad))
    assert r.code == an.BAD_REQUEST and b"CRC" in r.payload
    wrong = decode(learned)
    wrong.weights, wrong.extra = np.zeros((K, D + 1), np.float32), np.zeros(K, np.float32)
    r = push(peer, "/32770/0/41", encode(wrong))
    assert r.code == an.BAD_REQUEST and b"D=64 K=12" in r.payload
    assert push(peer, "/32770/0/41", learned[:100]).code == an.BAD_REQUEST
    assert get(peer, "/32770/0/41") == learned

    # a good one replaces it
    assert push(peer, "/32770/0/41", initial).code == an.CHANGED
    assert get(peer, "/32770/0/41") == initial and value(peer, "/32770/0/39") == "0"
    assert push(peer, "/32770/0/41", learned).code == an.CHANGED
    assert get(peer, "/32770/0/41") == learned

    # frozen: answers and counts, learns nothing
    assert peer.request(an.PUT, "/32770/0/43", payload=b"0", content_format=0).code == an.CHANGED
    assert value(peer, "/32770/0/43") == "0"
    assert sample(peer, label, x).code == an.CHANGED
    assert value(peer, "/32770/0/39") == "7" and get(peer, "/32770/0/41") == learned
    assert float(value(peer, "/32770/0/40")) == 1.0  # the one sample since the head was written was a hit
    assert peer.request(an.PUT, "/32770/0/43", payload=b"1", content_format=0).code == an.CHANGED

    # reset: the initial head again
    assert peer.request(an.POST, "/32770/0/42").code == an.CHANGED
    assert get(peer, "/32770/0/41") == initial
    assert value(peer, "/32770/0/39") == "0" and float(value(peer, "/32770/0/40")) == -1.0


def test_head_saved_every_n_samples_survives_a_restart_and_goes_with_a_new_install(peer, tmp_path):
    blob, vectors = kws()
    pkg = kws_package(save_every=3)
    started(peer, tmp_path, pkg)
    x = vectors[1][0][0]
    for _ in range(4):
        assert sample(peer, 5, x).code == an.CHANGED
    assert peer.request(an.PUT, "/32770/0/43", payload=b"0", content_format=0).code == an.CHANGED
    saved = decode(get(peer, "/32770/0/41"))
    assert saved.samples == 4
    flash = tmp_path / "flash"
    assert (flash / "head.bin").is_file()

    peer.stop_device()  # killed: the 4th sample was not saved yet (save_every 3)
    started(peer, tmp_path)
    after = decode(get(peer, "/32770/0/41"))
    assert after.samples == 3 and value(peer, "/32770/0/39") == "3"
    assert value(peer, "/32770/0/43") == "0"  # frozen stays frozen

    # a sample not saved yet is saved when an Update unloads the model; a package that fails its self-test
    # leaves the head (and the model) as they were
    assert peer.request(an.PUT, "/32770/0/43", payload=b"1", content_format=0).code == an.CHANGED
    assert sample(peer, 5, x).code == an.CHANGED
    assert decode((flash / "head.bin").read_bytes()).samples == 3
    wrong = [([x], [y, (emb.astype(np.int16) + 1).clip(-128, 127).astype(np.int8)]) for [x], [y, emb] in vectors[:1]]
    assert push(peer, "/5/0/0", build_package(blob, "kws-learn", "2", wrong)).code == an.CHANGED
    assert peer.request(an.POST, "/5/0/2").code == an.CHANGED
    assert wait_value(peer, "/5/0/5", b"8") == b"8"  # update failed
    assert decode((flash / "head.bin").read_bytes()).samples == 4 and value(peer, "/32770/0/39") == "4"

    # the same blob and head config installed again (a new sequence): the head stays
    install(peer, kws_package(save_every=3, version="1b"))
    assert value(peer, "/32770/0/39") == "4"

    # another model: no head, no learning resources
    plain, _, _ = package("fc_no_bias_softmax", name="fc-plain", version="1")
    install(peer, plain, b"fc-plain")
    assert not (flash / "head.bin").exists()
    assert not set(LEARN) & discover(peer)
    # the head model again: a new head
    install(peer, kws_package(save_every=3))
    assert value(peer, "/32770/0/39") == "0" and decode(get(peer, "/32770/0/41")).samples == 0


def test_a_model_without_a_head_has_no_learning_resources(peer, tmp_path):
    plain, _, vectors = package("fc_no_bias_softmax", name="fc-plain", version="1")
    started(peer, tmp_path)
    install(peer, plain, b"fc-plain")
    assert not set(LEARN) & discover(peer)
    for rid in LEARN:
        assert peer.request(an.GET, "/32770/0/%d" % rid).code == an.NOT_FOUND
        assert peer.request(an.PUT, "/32770/0/%d" % rid, payload=b"1", content_format=0).code == an.NOT_FOUND
    assert peer.request(an.PUT, "/32770/0/37", payload=b"\0\0" + bytes(8), content_format=42).code == an.NOT_FOUND
    assert peer.request(an.POST, "/32770/0/42").code == an.NOT_FOUND
    names = {rec[0] for rec in cbor2.loads(get(peer, "/32770/0", accept=112))}  # the capability read
    assert "0/23" in names and not {"0/%d" % rid for rid in LEARN} & names


# The TinyML object in the VM with an installer stand-in that runs a blob from a file (what tinyml.model.load
# gives the real installer), for what needs no network: the ncm head, refused configs, the code's cost.
VM = r"""
import gc, json, struct, sys
from tinyml.model import load
class Installer:
    trust = None
    def __init__(self, root, blob, head):
        self.root, self.blob, self.head = root, blob, head
    def active(self): return {"name": "kws", "version": "1", "sha256": "", "head": self.head}
    def load_active(self): return load(self.blob)
"""


def vm(code, heap="512k"):
    return unixport.run(code=VM + code, heap=heap, path=compiled_path(), timeout=300).stdout.decode()


def test_ncm_answers_with_the_model_until_every_class_has_a_sample(tmp_path):
    blob, vectors = kws()
    (tmp_path / "kws.blob").write_bytes(blob)
    rng = np.random.default_rng(4)
    xs = [rng.integers(-128, 128, size=490, dtype=np.int8) for _ in range(K + 1)]
    out = vm("""
from lwm2m.obj_tinyml import TinyML
XS = %r
t = TinyML(Installer(%r, %r, {"kind": "ncm", "lr": 0.0, "save_every": 4, "output": 1}), %r)
for k, x in enumerate(XS):
    t.model.input_buffer(0)[:] = bytes(x)
    t.infer()
    y = t.model.output_buffer(0)
    print(json.dumps([t.read(0, 23), max(range(12), key=lambda i: (struct.unpack_from("b", y, i)[0], -i)),
                      list(struct.unpack("<12f", t.read(0, 22)))]))
    if k < 12:
        t.write(0, 38, k)
open(%r, "wb").write(t.read(0, 41))
""" % ([bytes(x) for x in xs], str(tmp_path), str(tmp_path / "kws.blob"), str(tmp_path), str(tmp_path / "h")))
    lines = [json.loads(l) for l in out.splitlines()]
    head = decode((tmp_path / "h").read_bytes())
    assert (head.kind, head.samples, list(head.extra)) == ("ncm", K, [1] * K)
    for k, (top, model_top, scores) in enumerate(lines):
        if k < K:
            assert top == model_top  # classes without a sample: the model answers
        else:
            assert top == int(np.argmax(scores))  # every class has a mean: the head answers
    emb = np.asarray(reference.run(blob, [xs[K].reshape(1, 49, 10, 1)])[1])
    np.testing.assert_allclose(lines[K][2], embedding_scores(head, emb), rtol=1e-5, atol=1e-4)
    assert (tmp_path / "head.bin").read_bytes() == (tmp_path / "h").read_bytes()  # saved at the 12th sample


def test_a_head_the_model_cannot_carry_leaves_no_model_running_and_the_code_goes(tmp_path):
    blob, _ = kws()
    plain = bytes(compile_tflite(mlperf_model("kws")).blob)  # no embedding output
    (tmp_path / "kws.blob").write_bytes(blob)
    (tmp_path / "plain.blob").write_bytes(plain)
    out = vm("""
from lwm2m.obj_tinyml import TinyML
inst = Installer(%r, %r, {"kind": ["softmax"], "lr": 0.1, "save_every": 1, "output": 1})
t = TinyML(inst, %r)
for bad in ({"kind": "svm", "lr": 0.1, "save_every": 1, "output": 1}, "softmax",
            {"kind": "softmax", "lr": 1e999, "save_every": 1, "output": 1},
            {"kind": "ncm", "lr": 0.1, "save_every": 0, "output": 1}, {"kind": "ncm", "lr": 0.1, "output": 1}):
    inst.head = bad
    t.reload()
    print(t.state.startswith("load-failed: head config must be"), t.model is None, 37 in t.resources)
print(t.state, t.model is None, 37 in t.resources)
inst.blob, inst.head = %r, {"kind": "softmax", "lr": 0.1, "save_every": 1, "output": 1}
t.reload()
print(t.state, t.model is None, 37 in t.resources)
inst.blob = %r
t.reload()
print(t.state, sorted(r for r in t.resources if r > 36), 'lwm2m.learning' in sys.modules)
inst.head = None
t.reload()
print(t.state, 37 in t.resources, 'lwm2m.learning' in sys.modules, 'tinyml.learn' in sys.modules)
""" % (str(tmp_path), str(tmp_path / "kws.blob"), str(tmp_path), str(tmp_path / "plain.blob"),
       str(tmp_path / "kws.blob")))
    lines = out.splitlines()
    assert lines[:5] == ["True True False"] * 5
    bad_config, no_embedding, ok, gone = lines[5:]
    assert bad_config.startswith("load-failed: head config must be {kind: softmax|ncm") and \
        bad_config.endswith(" True False")
    assert no_embedding == "load-failed: the model has no graph output 1 for the embedding True False"
    assert ok == "active [37, 38, 39, 40, 41, 42, 43] True"
    assert gone == "active False False False"


def test_what_learning_costs(tmp_path, capsys):
    """Heap taken by importing lwm2m/learning.py and tinyml/learn.py (.mpy, the rest of the client and the model
    already loaded), by the Learner of a KWS model (D=64, K=12), and their .mpy bytes."""
    blob, _ = kws()
    (tmp_path / "kws.blob").write_bytes(blob)
    out = vm("""
import lwm2m.obj_tinyml, lwm2m.objects, hal
class Obj:
    resources = {}
    def __init__(self):
        self.installer, self.data_dir = Installer(%r, %r, None), %r
        self.model, self.learner = load(%r), None
    def changed(self, iid, rid): pass
o = Obj()
import micropython
gc.collect(); a = gc.mem_free()
micropython.qstr_info()
import lwm2m.learning
gc.collect(); b = gc.mem_free()
micropython.qstr_info()
o.learner = lwm2m.learning.Learner(o, {"kind": "softmax", "lr": 0.05, "save_every": 10, "output": 1})
gc.collect(); c = gc.mem_free()
o.model.input_buffer(0)[:] = bytes(490)
o.model.invoke()
o.learner.answer(o.model, 0)
o.learner.learn(3)
gc.collect(); d = gc.mem_free()
print(a - b, b - c, c - d)
""" % (str(tmp_path), str(tmp_path / "kws.blob"), str(tmp_path), str(tmp_path / "kws.blob")))
    lines = out.splitlines()
    pools = [int(l.rpartition("n_total_bytes=")[2]) for l in lines[:2]]
    code, learner, after = map(int, lines[2].split())
    pool = pools[1] - pools[0]  # interned names; a new qstr pool (doubling) when the last is full
    sizes = {name: next(p for p in compiled_path()[0].rglob(name)).stat().st_size
             for name in ("learning.mpy", "learn.mpy")}
    with capsys.disabled():
        print("\nlearning code: %d B heap after import (%d B of it qstr pool), %d B per KWS Learner (D=64 K=12), "
              "%d B more after a sample, .mpy %s" % (code, pool, learner, after, sizes))
    head_arrays = 4 * K * D + 4 * K + 4 * D + 8 * K + 50
    assert head_arrays <= learner < head_arrays + 1500 and code - pool < 18000 and after < 200
    assert sum(sizes.values()) < 10500


def test_the_servers_capability_read_of_a_device_with_a_head(tmp_path):
    """The tinymlaas LwM2M server's capability read (the whole TinyML instance) of an emulated esp32 running a
    model with a head: it goes through with the learning resources in it, and the next read after learning too.
    The capabilities stored keep typed values (docs/tinyml-object.xml types 37-43) and leave out the learned state
    (Samples, Accuracy, the head's bytes), also those read when the device registers again with its head."""
    import asyncio

    from test_server_integration import until
    from tinymlaas.devices.emulated import EmulatedDevice
    from tinymlaas.lwm2m.server import LwM2MServer

    blob, vectors = kws()

    async def scenario():
        server = await LwM2MServer(":memory:").start("127.0.0.1", 0)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % server.port, "learn-1", data_dir=tmp_path / "dev")
        dev.start()

        async def fw(rid, want):
            return int(await server.read_value("learn-1", "/5/0/%d" % rid)) == want

        try:
            await until(lambda: asyncio.sleep(0, any(d.endpoint == "learn-1" for d in server.devices())), 30)
            await server.push_package("learn-1", kws_package())
            await until(lambda: fw(3, 2))
            await server.execute("learn-1", "/5/0/2")
            await until(lambda: fw(5, 1))
            caps = await server.fetch_capabilities("learn-1")
            assert caps["Model Name"] == "kws-learn" and caps["Model State"] == "active"
            initial = await server.read_value("learn-1", "/32770/0/41")
            await server.write("learn-1", "/32770/0/37", struct.pack("<H", 3) + vectors[0][0][0].tobytes())
            caps = await server.fetch_capabilities("learn-1")
            # Q-Block1 (RFC 9177) into the streamed resources: a sample in 64-byte blocks, then a head
            one = struct.pack("<H", 4) + vectors[1][0][0].tobytes()
            await server.push_package("learn-1", one, path="/32770/0/37", block_size=64)
            assert "learn-1" not in server._block1_only  # it went as Q-Block1
            assert await server.read_value("learn-1", "/32770/0/39") == 2  # typed: docs/tinyml-object.xml
            await server.push_package("learn-1", bytes(initial), path="/32770/0/41", block_size=256)
            assert await server.read_value("learn-1", "/32770/0/39") == 0
            assert bytes(await server.read_value("learn-1", "/32770/0/41")) == bytes(initial)
            # a restart: the server reads the capabilities itself when the device registers
            await asyncio.to_thread(dev.stop)  # de-registers
            assert server.find("learn-1") is None
            dev.start()
            await until(lambda: asyncio.sleep(0, getattr(server.find("learn-1"), "capabilities", None)), 30)
            return caps, server.find("learn-1").capabilities, bytes(initial).hex()
        finally:
            dev.stop()
            await server.stop()

    caps, registered, head_hex = asyncio.run(scenario())
    assert caps["Model State"] == "active" and caps["Inference Count"] == 1
    assert registered["Model State"] == "active" and registered["Inference Count"] == 0
    for c in (caps, registered):
        assert c["Learning"] is True and isinstance(c["Free Heap"], int) and isinstance(c["Model Name"], str)
        assert not {"Head", "Samples", "Accuracy"} & set(c)
        assert all(not name.isdigit() for name in c)  # every resource read is one the server's model types
        text = json.dumps(c)
        assert head_hex[:64] not in text and len(text) < 2500
