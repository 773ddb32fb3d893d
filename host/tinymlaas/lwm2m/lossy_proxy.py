"""A UDP proxy that drops a seeded fraction of datagrams, to test and measure delivery over a lossy link.

Devices talk to the proxy as if it were the server. For each device address the proxy opens one upstream
socket towards the server, so the server sees (and sends its own requests to) a stable per-device address;
whatever arrives on that socket is relayed back to the device. Each datagram, in either direction, is dropped
with probability `loss`, decided by a `random.Random(seed)`, so a run is reproducible given the same order.
`tap(direction, data)`, if given, sees every datagram ("up" towards the server, "down" towards the device)
before the drop decision, so a test can assert what was on the wire. `remap_when(data)`, if set, is asked about
every datagram towards the server: the first it says yes to goes out, with everything from that device after it,
through a new upstream socket (a new port), as a NAT does that re-maps the device or a load balancer that opened
a new session after a failover; the old socket still relays what the server sends to the old port.
"""

import asyncio
import random


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, proxy, client_addr):
        self.proxy, self.client_addr = proxy, client_addr
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.proxy._relay(self.proxy.transport, data, self.client_addr, "down")


class LossyProxy(asyncio.DatagramProtocol):
    def __init__(self, server_addr, loss=0.1, seed=1, tap=None):
        self.server_addr = server_addr
        self.loss = loss
        self.tap = tap
        self.rng = random.Random(seed)
        self.transport = None
        self._upstreams = {}
        self._retired = []  # upstream sockets of devices re-mapped since (remap_when), still relaying down
        self._pending = {}
        self.remap_when = None
        self.stats = {"up": 0, "down": 0, "dropped_up": 0, "dropped_down": 0}

    @classmethod
    async def start(cls, server_addr, loss=0.1, seed=1, host="127.0.0.1", port=0, tap=None):
        loop = asyncio.get_running_loop()
        proxy = cls(server_addr, loss, seed, tap)
        await loop.create_datagram_endpoint(lambda: proxy, local_addr=(host, port))
        return proxy

    @property
    def address(self):
        return self.transport.get_extra_info("sockname")[:2]

    def connection_made(self, transport):
        self.transport = transport

    def _relay(self, transport, data, addr, direction):
        self.stats[direction] += 1
        if self.tap is not None:
            self.tap(direction, data)
        if self.rng.random() < self.loss:
            self.stats["dropped_" + direction] += 1
            return
        transport.sendto(data, addr)

    def datagram_received(self, data, addr):
        if self.remap_when is not None and self.remap_when(data):
            self.remap_when = None
            if addr in self._upstreams:
                self._retired.append(self._upstreams.pop(addr))
        up = self._upstreams.get(addr)
        if up is not None and up.transport is not None:
            self._relay(up.transport, data, self.server_addr, "up")
            return
        self._pending.setdefault(addr, []).append(data)
        if up is None:
            self._upstreams[addr] = up = _Upstream(self, addr)
            asyncio.get_running_loop().create_task(self._open(addr, up))

    async def _open(self, addr, up):
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: up, local_addr=(self.address[0], 0))
        for data in self._pending.pop(addr, []):
            self._relay(up.transport, data, self.server_addr, "up")

    def close(self):
        for up in list(self._upstreams.values()) + self._retired:
            if up.transport:
                up.transport.close()
        if self.transport:
            self.transport.close()
