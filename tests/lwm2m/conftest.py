"""Fixtures: a real LwM2M server on a loopback UDP port, running in its own event-loop thread so tests can
talk to it with blocking sockets, subprocesses (coap-client, node) or the async API."""

import asyncio
import socket
import threading

import pytest

from tinymlaas.lwm2m.server import LwM2MServer


class ServerThread:
    def __init__(self, db_path=":memory:", **kwargs):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.call(LwM2MServer(db_path, **kwargs).start("127.0.0.1", 0))
        self.port = self.server.port
        self.uri = "coap://127.0.0.1:%d" % self.port
        self.events = []
        self.server.on_event(self.events.append)

    def call(self, coro, timeout=60):
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def sync(self, fn, *args):
        async def wrap():
            return fn(*args)

        return self.call(wrap())

    def stop(self):
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def lwm2m_server():
    st = ServerThread(sweep_interval=0.1)
    yield st
    st.stop()


@pytest.fixture
def udp():
    """A plain UDP socket on loopback for hand-made datagrams; recv() returns None on timeout."""

    class Raw:
        def __init__(self):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))

        def send(self, data, port):
            self.sock.sendto(bytes(data), ("127.0.0.1", port))

        def recv(self, timeout=0.3):
            self.sock.settimeout(timeout)
            try:
                return self.sock.recvfrom(2048)[0]
            except socket.timeout:
                return None

    r = Raw()
    yield r
    r.sock.close()
