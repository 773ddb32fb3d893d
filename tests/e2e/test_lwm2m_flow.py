"""The LwM2M acceptance flow in one run, with real processes over real UDP: the server in CPython, the client in
`micropython` (an emulated ESP32-S3).

register -> read /3/0 and the TinyML object in TLV and SenML-CBOR -> push the 333 KB VWW package by Block1 ->
execute Update -> pull the KWS package through /5/0/1 Package URI -> execute Update -> observe inference results
-> de-register."""

import asyncio
import hashlib

import numpy as np
import pytest

from tinymlaas.blob import reference
from tinymlaas.compiler import compile_tflite
from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.lwm2m import codecs as C
from tinymlaas.lwm2m.server import LwM2MServer
from tinymlaas.package import build_package
from tinymlaas.paths import mlperf_model
from tinymlaas.service.core import reference_vectors

pytestmark = pytest.mark.xdist_group("e2e")


async def fw_state(server, ep, want, timeout=120):
    for _ in range(int(timeout / 0.05)):
        state = await server.read_value(ep, "/5/0/3")
        if state == want:
            return await server.read_value(ep, "/5/0/5")
        await asyncio.sleep(0.05)
    raise AssertionError("device stayed in state %s" % state)


async def install(server, ep, blob, name, deliver):
    package = build_package(blob, name, "1", reference_vectors(blob, count=2))
    await deliver(package)
    assert await fw_state(server, ep, 2) == 0            # Downloaded, result still initial
    assert await server.execute(ep, "/5/0/2") == "2.04"
    assert await fw_state(server, ep, 0) == 1            # Idle, firmware updated successfully
    return package


def test_register_read_push_pull_update_observe_deregister(tmp_path):
    vww = compile_tflite(mlperf_model("vww")).blob
    kws = compile_tflite(mlperf_model("kws")).blob

    async def main():
        server = await LwM2MServer(tmp_path / "s.db").start("127.0.0.1", 0)
        events = server.subscribe()
        dev = EmulatedDevice("coap://127.0.0.1:%d" % server.port, "flow-1", profile="esp32-s3",
                             data_dir=tmp_path / "dev").start()
        try:
            while True:
                ev = await asyncio.wait_for(events.get(), 60)
                if ev.kind == "capabilities":
                    break

            # The same values in both content formats.
            for path in ("/3/0", "/32770/0"):
                tlv = await server.read("flow-1", path, fmt=C.TLV)
                cbor = await server.read("flow-1", path, fmt=C.SENML_CBOR)
                volatile = {(32770, 0, r) for r in (0, 1)} | {(3, 0, 10), (3, 0, 13)}   # heap, time
                assert {k: v for k, v in tlv.items() if k not in volatile} == \
                       {k: v for k, v in cbor.items() if k not in volatile}
            assert tlv[(32770, 0, 7)] == "micropython"

            async def push(package):
                r = await server.push_package("flow-1", package)
                # VWW: the 333 KB .tflite compiles to a 250 KB blob; with golden vectors the package is ~305 KB.
                assert r.blocks == -(-len(package) // 1024) >= 290

            await install(server, "flow-1", vww, "vww", push)
            assert await server.read_value("flow-1", "/32770/0/13") == hashlib.sha256(vww).hexdigest()

            async def pull(package):
                uri = await server.deliver_by_uri("flow-1", package)
                assert uri.startswith("coap://127.0.0.1:%d/fw/" % server.port)

            await install(server, "flow-1", kws, "kws", pull)
            assert await server.read_value("flow-1", "/32770/0/11") == "kws"

            notes = asyncio.Queue()
            obs = await server.observe("flow-1", "/32770/0/22", lambda value, o=None: notes.put_nowait(value))
            await asyncio.wait_for(notes.get(), 10)                    # the current value
            x = np.random.default_rng(5).integers(-128, 128, (1, 49, 10, 1), dtype=np.int8)
            await server.write("flow-1", "/32770/0/21", x.tobytes())
            result = await asyncio.wait_for(notes.get(), 30)
            assert bytes(result[(32770, 0, 22)]) == np.asarray(reference.run(kws, [x])[0]).astype(np.int8).tobytes()
            obs.cancel()

            dev.stop()                                                  # SIGINT: the client de-registers
            while True:
                ev = await asyncio.wait_for(events.get(), 30)
                if ev.kind == "deregistered":
                    break
            assert server.find("flow-1") is None
        finally:
            dev.stop()
            await server.stop()

    asyncio.run(main())
