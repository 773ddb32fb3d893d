"""What a long run with a trainable head does to a device's heap: one emulated board (real MicroPython device code
over LwM2M on loopback) running KWS with a head, inferences as the service runs them (/22 observed, /21 written,
/23 and /18 read), learned samples (/37) between rounds, then a whole-instance read of /32770/0 and a new package
pushed and installed. Prints Free Heap (/0) and Largest Free Block (/1) after each step.

    python bench/learning_heap.py [--profile esp32] [--head softmax|ncm|none] [--rounds 2] [--per 400] [--learn 30]

Found with it (esp32, softmax head, 800 inferences + 60 samples; ~10 s): the largest free block fell from 72.0 to
4.8 KB within 400 inferences (the head's boxed-float garbage sweeping the heap between collections; fixed in
lwm2m/learning.py: a collection after the head's arithmetic), and free heap fell by ~50 B per inference with any
model, head or not (CON notifications kept ~93 s after their ACK; see docs/learning.md), until the /32770/0 read and
the push answered 5.00 out of memory.
"""

import argparse
import asyncio
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "client"))


async def run(args, tmp):
    from test_learning import kws, kws_package

    from tinymlaas.devices.emulated import EmulatedDevice
    from tinymlaas.lwm2m.server import LwM2MServer
    from tinymlaas.package import build_package

    blob, vectors = kws()
    ep = "heap-1"
    server = await LwM2MServer(":memory:", read_capabilities=False).start("127.0.0.1", 0)
    dev = EmulatedDevice("coap://127.0.0.1:%d" % server.port, ep, profile=args.profile, data_dir=tmp).start()
    t0 = time.perf_counter()
    ok = True

    async def heap(step):
        free, largest = [await server.read_value(ep, "/32770/0/%d" % r) for r in (0, 1)]
        print("%6.1f s  %-30s free %7d B  largest block %7d B" % (time.perf_counter() - t0, step, free, largest),
              flush=True)

    async def install(pkg):
        await server.push_package(ep, pkg)
        while int(await server.read_value(ep, "/5/0/3")) != 2:
            await asyncio.sleep(0.1)
        await server.execute(ep, "/5/0/2")
        while int(await server.read_value(ep, "/5/0/3")) != 0:
            await asyncio.sleep(0.1)
        return int(await server.read_value(ep, "/5/0/5"))

    def package(version):
        if args.head == "none":
            return build_package(blob, "kws-learn", version, vectors[:2])
        return kws_package(kind=args.head, save_every=10, version=version)

    try:
        while server.find(ep) is None:
            await asyncio.sleep(0.1)
        await heap("registered")
        assert await install(package("1")) == 1
        await heap("installed")
        notes = asyncio.Queue()
        obs = await server.observe(ep, "/32770/0/22", lambda v, o=None: notes.put_nowait(v))
        notes.get_nowait()
        xs = [v[0][0].tobytes() for v in vectors]
        n = 0
        for _ in range(args.rounds):
            for _ in range(args.per):
                await server.write(ep, "/32770/0/21", xs[n % len(xs)])
                await asyncio.wait_for(notes.get(), 30)
                await server.read_value(ep, "/32770/0/23")
                await server.read_value(ep, "/32770/0/18")
                n += 1
            await heap("after %d inferences" % n)
            if args.head != "none":
                for j in range(args.learn):
                    await server.write(ep, "/32770/0/37", struct.pack("<H", j % 12) + xs[j % len(xs)])
                await heap("after %d more samples" % args.learn)
        obs.cancel()
        for step in ("read of /32770/0", "push + install of version 2"):
            try:
                if step.startswith("read"):
                    await server.read_answer(ep, "/32770/0")
                    result = "ok"
                else:
                    result = "update result %d" % await install(package("2"))
            except Exception as e:
                result, ok = "FAILED: %s" % e, False
            print("%s: %s" % (step, result))
            await heap("after the " + step.split()[0])
    finally:
        await asyncio.to_thread(dev.stop)
        await server.stop()
    return ok


def main(argv=()):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="esp32")
    p.add_argument("--head", default="softmax", choices=("softmax", "ncm", "none"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--per", type=int, default=400, help="inferences per round")
    p.add_argument("--learn", type=int, default=30, help="samples learned after each round")
    args = p.parse_args(list(argv))
    with tempfile.TemporaryDirectory(prefix="learning-heap-") as tmp:
        return 0 if asyncio.run(run(args, Path(tmp))) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
