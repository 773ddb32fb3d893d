"""A device with a trainable head survives a long run: an emulated esp32 (110 KB board heap) running KWS with a softmax
head, 800 inferences as the service runs them (/22 observed, /21 written, /23 and /18 read) with 60 samples learned
(/37) between them, then a whole-instance read of /32770/0 and a new package pushed and installed. Before the
collection after the head's arithmetic (lwm2m/learning.py _settle) the largest free block fell from ~72 to ~5 KB in
400 inferences and the read and the push answered 5.00 out of memory (bench/learning_heap.py)."""

import asyncio
import struct

from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.lwm2m.server import LwM2MServer

from test_learning import K, kws, kws_package
from test_server_integration import until

EP = "heap-1"
ROUNDS, PER, LEARN = 2, 400, 30


def test_head_device_survives_inferences_and_samples_then_reads_and_installs(tmp_path):
    blob, vectors = kws()
    xs = [v[0][0].tobytes() for v in vectors]

    async def scenario():
        server = await LwM2MServer(":memory:", read_capabilities=False).start("127.0.0.1", 0)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % server.port, EP, profile="esp32", data_dir=tmp_path).start()

        async def value(path):
            return await server.read_value(EP, path)

        async def install(pkg):
            await server.push_package(EP, pkg)
            await until(lambda: _equals(server, "/5/0/3", 2))
            await server.execute(EP, "/5/0/2")
            await until(lambda: _equals(server, "/5/0/3", 0))
            return await value("/5/0/5")

        try:
            await until(lambda: asyncio.sleep(0, server.find(EP) is not None), 30)
            assert await install(kws_package(save_every=10)) == 1
            installed = await value("/32770/0/1")
            notes = asyncio.Queue()
            obs = await server.observe(EP, "/32770/0/22", lambda v, o=None: notes.put_nowait(v))
            notes.get_nowait()
            largest = []
            n = 0
            for _ in range(ROUNDS):
                for _ in range(PER):
                    await server.write(EP, "/32770/0/21", xs[n % len(xs)])
                    assert len(bytes((await asyncio.wait_for(notes.get(), 30))[(32770, 0, 22)])) == 4 * K
                    await value("/32770/0/23")
                    await value("/32770/0/18")
                    n += 1
                largest.append(await value("/32770/0/1"))
                for j in range(LEARN):
                    await server.write(EP, "/32770/0/37", struct.pack("<H", j % K) + xs[j % len(xs)])
                largest.append(await value("/32770/0/1"))
            obs.cancel()
            whole = (await server.read_answer(EP, "/32770/0"))[2]
            samples = whole[(32770, 0, 39)]
            result = await install(kws_package(save_every=11, version="2"))
            return installed, largest, samples, result, await value("/5/0/7"), await value("/32770/0/16")
        finally:
            await asyncio.to_thread(dev.stop)
            await server.stop()

    installed, largest, samples, result, version, state = asyncio.run(scenario())
    assert samples == ROUNDS * LEARN
    assert (result, version, state) == (1, "2", "active")
    # what the run leaves allocated sits below the free space: the block a model swap needs stays
    assert min(largest) > 0.8 * installed, (installed, largest)


async def _equals(server, path, want):
    return int(await server.read_value(EP, path)) == want
