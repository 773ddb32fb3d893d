"""The JSON HTTP API's request handling: routing, 404/405, malformed and oversized requests."""

import asyncio
import json

from tinymlaas.lwm2m.http_api import HttpApi


async def raw(port, data):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(data)
    await w.drain()
    out = await r.read()
    w.close()
    status = int(out.split(b" ", 2)[1])
    return status, json.loads(out.split(b"\r\n\r\n", 1)[1])


def test_routing_and_bad_requests():
    async def go():
        api = HttpApi()

        async def echo(match, body):
            return 200, {"id": match.group(1), "body": body.decode()}

        api.route("POST", r"/api/things/(\d+)", echo)
        await api.start("127.0.0.1", 0)
        try:
            results = [
                await raw(api.port, b"POST /api/things/7 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
                await raw(api.port, b"GET /api/things/7 HTTP/1.1\r\n\r\n"),
                await raw(api.port, b"GET /nope HTTP/1.1\r\n\r\n"),
                await raw(api.port, b"garbage\r\n\r\n"),
                await raw(api.port, b"POST /api/things/7 HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
                await raw(api.port, b"POST /api/things/7 HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
                await raw(api.port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"),
            ]
        finally:
            await api.stop()
        return results

    r = asyncio.run(go())
    assert r[0] == (200, {"id": "7", "body": "hi"})
    assert [x[0] for x in r[1:]] == [405, 404, 400, 400, 413, 400]
