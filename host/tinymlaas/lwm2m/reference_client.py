"""A small CPython LwM2M client on aiocoap, used by tests and benchmarks as the device side.

It registers, updates and de-registers; answers Read (any data format, honouring Accept), Write (replace and
partial), Execute, Discover, Write-Attributes and Observe on its resources; and receives a package into
/5/0/0 block-wise (Block1), answering 2.31 per block, 4.08 for a block out of sequence and 4.13 beyond
`max_package`. It is the independent peer the server is tested against over real UDP; the device firmware's
client is lwm2m_client/ (MicroPython), tested separately.
"""

import hashlib

import aiocoap
from aiocoap import Message, resource
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from . import codecs as C
from . import paths as P
from .objects import default_model


def refuse_q_block(context):
    """Answer requests carrying Q-Block1/Q-Block2 (RFC 9177) with 4.02 Bad Option, as RFC 7252 §5.4.1 has a peer
    without them do: aiocoap drops such a request without a word, which would cost a Q-Block sender its probe
    timeouts before it falls back to Block1/Block2."""
    from . import frame, guard
    from .qblock import QBlockPort

    g = guard.install(context)
    send = guard.sender(context)

    def intercept(data, address):
        if data[1] >> 5 != 0 or not QBlockPort._has_qblock_option(data):
            return False
        mtype, tkl = (data[0] >> 4) & 3, data[0] & 0x0F
        send(frame._bad_option(mtype, data[2] << 8 | data[3], bytes(data[4:4 + tkl])), address)
        return True

    g.intercept = intercept


class ReferenceClient(resource.ObservableResource):
    def __init__(self, endpoint, values=None, lifetime=60, lwm2m="1.1", max_package=1 << 20, binding="U"):
        super().__init__()
        self.endpoint = endpoint
        self.binding = binding
        self.lifetime = lifetime
        self.lwm2m = lwm2m
        self.model = default_model()
        self.values = dict(values) if values is not None else default_values(endpoint)
        self.max_package = max_package
        self.context = None
        self.server = None
        self.location = None
        self.executed = []
        self.attributes = {}
        self.package = b""
        self._rx = bytearray()
        self._rx_next = 0
        self.blocks_seen = []  # (num, more, szx) of each Block1 request, duplicates included
        self.accepts = []  # the Accept option of each Read (None when absent)
        self._observers = {}  # path -> set(serverobservation)
        self.fail_next_blocks = 0  # test hook: drop state and answer 4.08 to the next N blocks

    # ---- client side --------------------------------------------------------------------------------------

    async def start(self, server_uri, bind_host="127.0.0.1"):
        self.server = server_uri.rstrip("/")
        self.context = await aiocoap.Context.create_server_context(self, bind=(bind_host, 0), transports=["udp6"])
        refuse_q_block(self.context)
        return self

    def object_links(self):
        instances = sorted({p[:2] for p in self.values})
        return ",".join("</%d/%d>" % i for i in instances).encode()

    async def register(self, extra_query=()):
        msg = Message(code=Code.POST, uri=self.server + "/rd", payload=self.object_links(), content_format=40)
        msg.opt.uri_query = ("ep=" + self.endpoint, "lt=%d" % self.lifetime, "lwm2m=" + self.lwm2m, "b=" + self.binding) + tuple(extra_query)
        resp = await self.context.request(msg).response
        if resp.code == Code.CREATED:
            self.location = "/".join(resp.opt.location_path)
        return resp

    async def update(self, query=(), payload=b""):
        msg = Message(code=Code.POST, uri="%s/%s" % (self.server, self.location), payload=payload)
        if payload:
            msg.opt.content_format = 40
        msg.opt.uri_query = tuple(query)
        return await self.context.request(msg).response

    async def deregister(self):
        return await self.context.request(Message(code=Code.DELETE, uri="%s/%s" % (self.server, self.location))).response

    async def stop(self):
        if self.context:
            await self.context.shutdown()
            self.context = None

    def set_value(self, path, value):
        """Change a value and notify observers of it and of its parents."""
        path = P.check(path)
        self.values[path] = value
        for opath, observers in self._observers.items():
            if path[: len(opath)] == opath:
                for o in list(observers):
                    o.trigger()

    # ---- server side (the LwM2M server's requests) -------------------------------------------------------

    async def needs_blockwise_assembly(self, request):
        return False

    def _path(self, request):
        try:
            return P.parse("/" + "/".join(request.opt.uri_path))
        except P.PathError:
            return None

    async def add_observation(self, request, serverobservation):
        path = self._path(request)
        if path is None or not self._select(path):
            return
        self._observers.setdefault(path, set()).add(serverobservation)
        serverobservation.accept(lambda: self._observers.get(path, set()).discard(serverobservation))

    def _select(self, path):
        return {p: v for p, v in self.values.items() if p[: len(path)] == path}

    async def render(self, request):
        path = self._path(request)
        if path is None:
            return Message(code=Code.BAD_REQUEST)
        if request.code == Code.GET:
            return self._read(request, path)
        if request.code == Code.PUT and path == (5, 0, 0):
            return self._receive_package(request)
        if request.code == Code.PUT and not request.payload:
            self.attributes[path] = dict(q.partition("=")[::2] for q in request.opt.uri_query)
            return Message(code=Code.CHANGED)
        if request.code in (Code.PUT, Code.POST) and len(path) == 3 and self.model.resource(path) and self.model.resource(path).executable:
            if request.code != Code.POST:
                return Message(code=Code.METHOD_NOT_ALLOWED)
            self.executed.append((path, request.payload.decode()))
            return Message(code=Code.CHANGED)
        if request.code in (Code.PUT, Code.POST):
            fmt = request.opt.content_format
            try:
                values = C.decode(int(fmt) if fmt is not None else C.TEXT, path, request.payload, self.model)
            except C.CodecError:
                return Message(code=Code.BAD_REQUEST)
            if request.code == Code.PUT and len(path) == 2:
                for p in [p for p in self.values if p[:2] == path]:
                    del self.values[p]
            for p, v in values.items():
                self.set_value(p, v)
            return Message(code=Code.CHANGED)
        return Message(code=Code.METHOD_NOT_ALLOWED)

    def _read(self, request, path):
        selected = self._select(path)
        if not selected:
            return Message(code=Code.NOT_FOUND)
        accept = request.opt.accept
        self.accepts.append(None if accept is None else int(accept))
        if accept == C.LINK_FORMAT:
            links = sorted({P.fmt(p[: max(len(path) + 1, 3)]) for p in selected} | {P.fmt(path)})
            return Message(code=Code.CONTENT, payload=",".join("<%s>" % l for l in links).encode(), content_format=40)
        fmt = int(accept) if accept is not None else (C.TEXT if path in selected and len(selected) == 1 else C.SENML_CBOR)
        if fmt == C.TEXT and isinstance(selected.get(path), bytes):
            fmt = C.OPAQUE
        try:
            payload = C.encode(fmt, path, selected, self.model)
        except C.CodecError:
            return Message(code=Code.NOT_ACCEPTABLE)
        return Message(code=Code.CONTENT, payload=payload, content_format=fmt)

    def _receive_package(self, request):
        b1 = request.opt.block1
        if b1 is None:
            self.package = bytes(request.payload)
            return Message(code=Code.CHANGED)
        num, more, szx = b1.block_number, b1.more, b1.size_exponent
        self.blocks_seen.append((num, more, szx))
        size = 1 << (szx + 4)
        if self.fail_next_blocks:
            self.fail_next_blocks -= 1
            self._rx, self._rx_next = bytearray(), 0
            return Message(code=Code.REQUEST_ENTITY_INCOMPLETE)
        offset = num * size
        if offset + len(request.payload) > self.max_package:
            m = Message(code=Code.REQUEST_ENTITY_TOO_LARGE)
            m.opt.size1 = self.max_package
            return m
        if num == 0:
            self._rx, self._rx_next = bytearray(), 0
        if offset < self._rx_next:  # duplicate of a block already stored: acknowledge again, change nothing
            pass
        elif offset != self._rx_next:
            return Message(code=Code.REQUEST_ENTITY_INCOMPLETE)
        else:
            self._rx += request.payload
            self._rx_next = len(self._rx)
        if more:
            m = Message(code=Code.CONTINUE)
            m.opt.block1 = BlockOption.BlockwiseTuple(num, True, szx)
            return m
        self.package = bytes(self._rx)
        self.values[(5, 0, 3)] = 2  # Downloaded
        m = Message(code=Code.CHANGED)
        m.opt.block1 = BlockOption.BlockwiseTuple(num, False, szx)
        return m

    def package_sha256(self):
        return hashlib.sha256(self.package).hexdigest()


def default_values(endpoint):
    return {
        (3, 0, 0): "tinymlaas",
        (3, 0, 1): "reference-client",
        (3, 0, 2): endpoint,
        (3, 0, 3): "0.1",
        (3, 0, 11, 0): 0,
        (3, 0, 16): "U",
        (5, 0, 1): "",
        (5, 0, 3): 0,
        (5, 0, 5): 0,
        (5, 0, 9): 2,
        (32770, 0, 0): 120000,
        (32770, 0, 1): 64000,
        (32770, 0, 2): 262144,
        (32770, 0, 3): 900000,
        (32770, 0, 4): "linux",
        (32770, 0, 5): "x64",
        (32770, 0, 6): "6.3",
        (32770, 0, 7): "micropython",
        (32770, 0, 8): "1.29.0",
        (32770, 0, 9): "viper",
        (32770, 0, 10): "CONV_2D,FULLY_CONNECTED",
        (32770, 0, 11): "",
        (32770, 0, 16): "none",
        (32770, 0, 17): 0,
        (32770, 0, 18): 0,
        (32770, 0, 22): b"",
    }
