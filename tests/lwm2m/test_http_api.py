"""The HTTP API's request handling on aiohttp: routing, JSON errors for 404/405, malformed and oversized requests."""

import asyncio
import json

from tinymlaas.db import Database
from tinymlaas.web.app import Api, json_body, reply


async def raw(port, data):
    """Send `data`, read one response (its head, then Content-Length bytes): (status, JSON body or bytes)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(data)
    await w.drain()
    head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = next(int(h.split(":")[1]) for h in head if h.lower().startswith("content-length:"))
    body = await r.readexactly(length)
    w.close()
    return int(head[0].split()[1]), json.loads(body) if body.startswith(b"{") else body


def test_routing_and_bad_requests(caplog):
    seen = []

    async def go():
        api = Api(Database(":memory:"))

        async def echo(request):
            body = await json_body(request)
            seen.append(body)
            return reply({"id": request.match_info["id"], "body": body})

        api.route("POST", r"/api/things/{id:\d+}", echo, "operator")
        await api.start("127.0.0.1", 0)
        close = b"Connection: close\r\n"
        try:
            return [
                await raw(api.port, b"POST /api/things/7 HTTP/1.1\r\nHost: localhost\r\n" + close +
                          b"Content-Length: 8\r\n\r\n{\"a\": 1}"),
                await raw(api.port, b"GET /api/things/7 HTTP/1.1\r\nHost: localhost\r\n" + close + b"\r\n"),
                await raw(api.port, b"GET /nope HTTP/1.1\r\nHost: localhost\r\n" + close + b"\r\n"),
                await raw(api.port, b"garbage\r\n\r\n"),
                await raw(api.port, b"POST /api/things/7 HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n"),
                await raw(api.port, b"POST /api/things/7 HTTP/1.1\r\nHost: localhost\r\n" + close +
                          b"Content-Length: 99999999\r\n\r\n"),
                await raw(api.port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"),
                await raw(api.port, b"POST /api/things/7 HTTP/1.1\r\nHost: localhost\r\n" + close +
                          b"Content-Length: 5\r\n\r\n[1,2]"),
                await raw(api.port, b"POST /api/things/7 HTTP/1.1\r\nHost: localhost\r\n" + close +
                          b"Content-Length: 3\r\n\r\n{\"a"),
            ]
        finally:
            await api.stop()

    r = asyncio.run(go())
    assert r[0] == (200, {"id": "7", "body": {"a": 1}})
    assert [x[0] for x in r[1:]] == [405, 404, 400, 400, 413, 400, 400, 400]
    assert r[1][1]["error"] == "Method Not Allowed" and r[2][1]["error"] == "Not Found"
    assert "1048576" in r[5][1]["error"]
    assert "JSON object" in r[7][1]["error"] and "JSON object" in r[8][1]["error"]
    assert seen == [{"a": 1}]      # nothing but the good request reached the handler
    protocol = [r for r in caplog.records if r.name == "tinymlaas.web.protocol"]
    assert protocol and all(r.levelname == "WARNING" and not r.exc_info and "\n" not in r.getMessage()
                            for r in protocol)    # a malformed request is one line, not a traceback
