"""The service's LwM2M server (real UDP on loopback) with its HTTP API, on an event-loop thread, for tests that
wait for a provisioned board to register."""

import asyncio
import threading

from tinymlaas.lwm2m.server import LwM2MServer
from tinymlaas.web import build_api


class Service:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.call(LwM2MServer(":memory:", sweep_interval=0.2).start("127.0.0.1", 0))
        self.uri = "coap://127.0.0.1:%d" % self.server.port
        self.api = build_api(self.server)
        self.call(self.api.start("127.0.0.1", 0))
        self.api_url = "http://127.0.0.1:%d" % self.api.port

    def call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def endpoints(self):
        async def get():
            return [r.endpoint for r in self.server.devices()]
        return self.call(get())

    def stop(self):
        self.call(self.api.stop())
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
