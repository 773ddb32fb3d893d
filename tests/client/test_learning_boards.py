"""On-device learning on the smallest board profile: an emulated cortex-m4 (MicroPython on a pyboard, 128 KB heap,
devices/emulated.py PROFILES) installs KWS with a trainable softmax head over LwM2M, learns labelled samples (/37)
and infers with the head (/21 -> /22 K float32 scores, /23) within its heap; and a head that finds no room for its
arrays leaves a clear Model State (out-of-ram), no learning resources and a device that goes on, not a crash."""

import asyncio
import struct

import numpy as np

from tinymlaas.devices.emulated import PROFILES, EmulatedDevice
from tinymlaas.lwm2m.server import LwM2MServer

from test_learning import K, kws, kws_package, vm
from test_server_integration import until

N = 24  # labelled samples, two per class
BOARD_HEAP = PROFILES["cortex-m4"]["board_heap"]


def test_kws_head_learns_and_infers_on_a_cortex_m4(tmp_path, capsys):
    blob, vectors = kws()
    xs = [v[0][0] for v in vectors]

    async def scenario():
        server = await LwM2MServer(":memory:").start("127.0.0.1", 0)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % server.port, "m4-1", profile="cortex-m4", data_dir=tmp_path)
        dev.start()

        async def value(rid):
            return await server.read_value("m4-1", "/32770/0/%d" % rid)

        async def heap():
            return await value(0), await value(1)

        try:
            await until(lambda: asyncio.sleep(0, getattr(server.find("m4-1"), "capabilities", None)), 30)
            caps = server.find("m4-1").capabilities
            assert (caps["Platform"], caps["MPY ABI"].split()[1]) == ("pyboard", "armv7emsp")
            boot = await heap()
            await server.push_package("m4-1", kws_package(save_every=8))
            await until(lambda: _fw(server, 3, 2))
            await server.execute("m4-1", "/5/0/2")
            await until(lambda: _fw(server, 5, 1))
            assert await value(16) == "active"
            installed = await heap()
            for i in range(N):
                await server.write("m4-1", "/32770/0/37", struct.pack("<H", i % K) + xs[i % len(xs)].tobytes())
            assert await value(39) == N and 0.0 <= await value(40) <= 1.0
            answers = []
            for x in xs:
                count = await value(17)
                await server.write("m4-1", "/32770/0/21", x.tobytes())
                await until(lambda: _grew(server, count))
                scores = np.frombuffer(bytes(await value(22)), "<f4")
                answers.append((scores, await value(23)))
            learned = await heap()
            caps = await server.fetch_capabilities("m4-1")  # the whole instance, head included
            return boot, installed, learned, answers, caps
        finally:
            dev.stop()
            await server.stop()

    boot, installed, learned, answers, caps = asyncio.run(scenario())
    for scores, top in answers:
        assert scores.shape == (K,) and np.isfinite(scores).all() and top == int(np.argmax(scores))
    assert caps["Model State"] == "active" and caps["Inference Count"] == N + len(xs) and "Head" not in caps
    taken = boot[0] - learned[0]  # the model (blob reader, arena), the head and its code's working state
    with capsys.disabled():
        print("\ncortex-m4 KWS + softmax head: free/largest heap at boot %d/%d B, installed %d/%d, after %d samples "
              "and %d inferences %d/%d; taken %d B of the %d B board heap"
              % (*boot, *installed, N, len(xs), *learned, taken, BOARD_HEAP))
    assert 0 < taken < BOARD_HEAP and learned[1] > 0


async def _fw(server, rid, want):
    return int(await server.read_value("m4-1", "/5/0/%d" % rid)) == want


async def _grew(server, count):
    return await server.read_value("m4-1", "/32770/0/17") > count


def test_a_head_without_room_leaves_out_of_ram_and_the_device_going(tmp_path):
    """The heap filled to below the head's arrays (KWS softmax: 3,072 B of weights alone) after the model loaded:
    the Learner's MemoryError becomes Model State out-of-ram, no model runs (its /22 would not be the head's
    scores), 37-43 are not in the table and the code goes; with the room back, the same model gets its head."""
    blob, _ = kws()
    (tmp_path / "kws.blob").write_bytes(blob)
    out = vm("""
import hal
from lwm2m.obj_tinyml import TinyML
inst = Installer(%r, %r, None)
t = TinyML(inst, %r)
inst.head = {"kind": "softmax", "lr": 0.05, "save_every": 4, "output": 1}
ballast = []
def fill(left):
    gc.collect()
    while gc.mem_free() > left:
        try:
            ballast.append(bytearray(min(2048, max(16, gc.mem_free() - left))))
        except MemoryError:
            break
t.unload()
t.model = load(inst.blob)
t.info = inst.active()
t.input_bytes = 490
import lwm2m.learning  # the code in place (a board has it frozen): what is short is room for the head
fill(2000)
t.watch()
print(t.state, t.model is None, 37 in t.resources, t.learner is None)
ballast = []
gc.collect()
t.reload()
t.model.input_buffer(0)[:] = bytes(490)
print(t.state, 37 in t.resources, t.infer(), len(t.read(0, 22)))
""" % (str(tmp_path), str(tmp_path / "kws.blob"), str(tmp_path)), heap="400k")
    lines = out.splitlines()
    assert lines[-2] == "out-of-ram True False True", out
    assert lines[-1] == "active True True %d" % (4 * K), out
