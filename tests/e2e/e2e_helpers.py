"""Waiting helpers shared by the end-to-end tests (asyncio, polling with a deadline)."""

import asyncio


async def wait_for(pred, timeout=60, what="condition"):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.1)


async def wait_for_value(server, endpoint, path, pred, timeout=60):
    """Read an LwM2M resource until pred(value) holds; the value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        v = await server.read_value(endpoint, path)
        if pred(v):
            return v
        if loop.time() > end:
            raise AssertionError("%s stayed %r" % (path, v))
        await asyncio.sleep(0.2)
