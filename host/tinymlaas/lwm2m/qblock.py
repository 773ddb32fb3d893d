"""Q-Block1 / Q-Block2 (RFC 9177) on the server's UDP socket, beside aiocoap, which has neither.

aiocoap answers one response per request; Q-Block2 answers one request with several, and Q-Block1 sends many
NON requests whose answers come for a whole set. So these datagrams are taken off the socket before aiocoap sees
them (guard.py calls `QBlockPort.intercept` for every datagram that passed frame.check):

* a request carrying Q-Block1 or Q-Block2: GET /fw/<sha256> with Q-Block2 is served here (below); the other
  resources (/rd, /rd-lookup, other methods on /fw) answer 4.02 Bad Option, as a server without Q-Block does,
  so the peer falls back to Block1/Block2; any other path is 4.04 (libcoap's probe, GET /.well-known/core with
  Q-Block2, then knows Q-Block is understood);
* a response whose token belongs to a Q-Block1 push in progress (qpush.py) goes to that push.

Serving Q-Block2 is stateless, like the Block2 path in coap_site.py: each request names its blocks, one
Q-Block2 option each (M=0), or a block with M=1 for "this one and the ones after it"; at most MAX_PAYLOADS
blocks are sent per request (RFC 9177 §7.2), each a 2.05 on the request's token carrying Q-Block2, ETag and
Size2. A CON request gets its first block piggybacked in the ACK and the rest as NON. The receiver clocks the
transfer: the server never sends a block it was not asked for, so a peer that goes away costs nothing more.
"""

import io
import ipaddress
import logging
import os
import socket

import aiocoap
import cbor2
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import ACK, CON, NON
from aiocoap.optiontypes import UintOption

from .frame import parse_options
from .packages import MAX_SZX

log = logging.getLogger("tinymlaas.lwm2m.qblock")

Q_BLOCK1 = 19
Q_BLOCK2 = 31
REQUEST_TAG = 292
MISSING_BLOCKS = 272  # Content-Format application/missing-blocks+cbor-seq
MAX_PAYLOADS = 10  # RFC 9177 §7.2 default
ETAG_BYTES = 8
WELL_KNOWN = b'</rd>;rt="core.rd",</rd-lookup/ep>;rt="core.rd-lookup-ep";obs'


def block_value(num, more, szx):
    return (num << 4) | (8 if more else 0) | szx


def parse_block(value):
    """Q-Block option value (bytes or int) -> (num, more, szx); ValueError for SZX 7 or > 3 bytes."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) > 3:
            raise ValueError("block option longer than 3 bytes")
        value = int.from_bytes(value, "big")
    if value & 7 == 7:
        raise ValueError("SZX 7 is reserved")
    return value >> 4, bool(value & 8), value & 7


def options(msg, number):
    """Raw values of option `number` (aiocoap keeps options it has no format for as opaque bytes)."""
    return [o.value for o in msg.opt.get_option(number)]


def encode_missing(nums):
    """Block numbers -> the payload of a 4.08: a CBOR sequence of unsigned integers (RFC 9177 §5)."""
    return b"".join(cbor2.dumps(int(n)) for n in nums)


def decode_missing(data, limit=1 << 12):
    """The payload of a 4.08 -> block numbers; ValueError for anything but a sequence of unsigned integers."""
    stream = io.BytesIO(bytes(data))
    nums = []
    while stream.tell() < len(data):
        if len(nums) >= limit:
            raise ValueError("more than %d missing blocks" % limit)
        try:
            n = cbor2.CBORDecoder(stream).decode()
        except (cbor2.CBORDecodeError, EOFError) as e:
            raise ValueError("missing-blocks payload: %s" % e) from None
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 1 << 20:
            raise ValueError("missing-blocks item %r is not a block number" % (n,))
        nums.append(n)
    return nums


def device_sockaddr(reg, family):
    """The socket address to send to a registered device: the one aiocoap received its Register from, or (after
    a server restart) the stored host:port in the socket's family."""
    sockaddr = getattr(reg.remote, "sockaddr", None)
    if sockaddr is not None:
        return sockaddr
    host, _, port = reg.address.rpartition(":")
    host = host.strip("[]")
    if family == socket.AF_INET6:
        ip = ipaddress.ip_address(host)
        return ("::ffff:%s" % ip if ip.version == 4 else str(ip), int(port), 0, 0)
    return (host, int(port))


class QBlockPort:
    """The Q-Block side of one server socket: `send(data, address)` writes a datagram on it."""

    def __init__(self, server, send, family=socket.AF_INET6):
        self.server = server
        self.send = send
        self.family = family  # of the socket: aiocoap's udp6 transport maps IPv4 peers to ::ffff:a.b.c.d
        self.pushes = {}  # token -> callable(message, address): responses to a Q-Block1 push in progress
        self.resumable = {}  # (address, path, package sha256, szx) -> (Request-Tag, acked block) of failed pushes
        self._mid = int.from_bytes(os.urandom(2), "big")
        self.stats = {"q_block2_requests": 0, "q_block2_blocks": 0, "refused": 0}

    def next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def new_token(self):
        """A push's 5-byte token prefix; its requests' tokens are it and a 3-byte counter (8 bytes: aiocoap's own
        are shorter)."""
        while True:
            prefix = b"qb" + os.urandom(3)
            if prefix not in self.pushes:
                return prefix

    def intercept(self, data, address):
        """True when the datagram was taken here (aiocoap must not see it)."""
        if len(data) < 2 or data[1] == 0:
            return False  # Empty (ACK, RST, ping) is aiocoap's
        tkl = data[0] & 0x0F
        is_request = data[1] >> 5 == 0
        if not is_request:
            handler = self.pushes.get(bytes(data[4:9])) if tkl == 8 else None
            if handler is None:
                return False
            msg = aiocoap.Message.decode(data)
            if msg.mtype == CON:
                ack = aiocoap.Message(code=Code.EMPTY)
                ack.mtype, ack.mid = ACK, msg.mid
                self.send(ack.encode(), address)
            handler(msg, address)
            return True
        if not self._has_qblock_option(data):
            return False
        msg = aiocoap.Message.decode(data)
        if not options(msg, Q_BLOCK1) and not options(msg, Q_BLOCK2):
            return False
        path = msg.opt.uri_path
        gettable = options(msg, Q_BLOCK2) and msg.code == Code.GET and not options(msg, Q_BLOCK1) \
            and msg.opt.oscore is None
        if gettable and path[:1] == ("fw",):
            self._serve(msg, path[1] if len(path) == 2 else "", address)
        elif gettable and path == (".well-known", "core"):
            # libcoap's Q-Block probe (RFC 9177 §4.1): Q-Block is taken as understood only when the answer to
            # this GET carries Q-Block2, so the resource list is served here, Q-Block2 only
            self._send_blocks(msg, address, WELL_KNOWN, asked=self._asked(msg, address), content_format=40)
        elif path[:1] in (("rd",), ("rd-lookup",), ("fw",), (".well-known",)):
            self.stats["refused"] += 1  # resources without Q-Block: refused as by a server without it
            self._answer(msg, address, [aiocoap.Message(code=Code.BAD_OPTION)])
        else:
            self._answer(msg, address, [aiocoap.Message(code=Code.NOT_FOUND)])
        return True

    @staticmethod
    def _has_qblock_option(data):
        """Cheap pre-check on the raw datagram, so most requests go to aiocoap without a second decode."""
        try:
            opts, _ = parse_options(data, 4 + (data[0] & 0x0F))
        except ValueError:
            return False
        return any(number in (Q_BLOCK1, Q_BLOCK2) for number, _, _, _ in opts)

    def _answer(self, request, address, responses):
        """Send `responses` to `request`: the first piggybacked when it was CON, the others (and all, for a NON
        request) as NON with fresh Message IDs."""
        for i, resp in enumerate(responses):
            resp.token = request.token
            if i == 0 and request.mtype == CON:
                resp.mtype, resp.mid = ACK, request.mid
            else:
                resp.mtype, resp.mid = NON, self.next_mid()
            self.send(resp.encode(), address)

    def _asked(self, request, address):
        """The (num, more, szx) of each Q-Block2 option, or None after answering 4.02 for a malformed one."""
        try:
            return [parse_block(v) for v in options(request, Q_BLOCK2)]
        except ValueError as e:
            self._answer(request, address, [aiocoap.Message(code=Code.BAD_OPTION, payload=str(e).encode())])
            return None

    def _serve(self, request, sha, address):
        self.stats["q_block2_requests"] += 1
        data = self.server.packages.get(sha)
        if data is None:
            self._answer(request, address, [aiocoap.Message(code=Code.NOT_FOUND)])
            return
        asked = self._asked(request, address)
        if asked is None:
            return
        wanted = self._send_blocks(request, address, data, asked, 42, bytes.fromhex(sha[:2 * ETAG_BYTES]))
        if wanted:
            size = 1 << (min(asked[0][2], MAX_SZX) + 4)
            host = str(address[0]).removeprefix("::ffff:")
            self.server._note_download(sha, max(min(len(data), (n + 1) * size) for n in wanted), len(data),
                                       "%s:%d" % (host, address[1]))

    def _send_blocks(self, request, address, data, asked, content_format, etag=None):
        """Answer the blocks of `data` that `asked` names (at most MAX_PAYLOADS); returns their numbers."""
        if asked is None:
            return []
        szx = min(asked[0][2], MAX_SZX)
        size = 1 << (szx + 4)
        nblocks = max(1, -(-len(data) // size))
        wanted = []
        for num, more, _ in asked:
            stop = min(nblocks, num + MAX_PAYLOADS) if more else min(nblocks, num + 1)
            wanted.extend(n for n in range(num, stop) if n not in wanted)
        wanted = wanted[:MAX_PAYLOADS]
        if not wanted:
            msg = aiocoap.Message(code=Code.BAD_OPTION, payload=b"no block of the resource asked for")
            self._answer(request, address, [msg])
            return []
        responses = []
        for num in wanted:
            start, end = num * size, min(len(data), (num + 1) * size)
            m = aiocoap.Message(code=Code.CONTENT, payload=data[start:end])
            m.opt.content_format = content_format
            if etag is not None:
                m.opt.etag = etag
            m.opt.add_option(UintOption(Q_BLOCK2, block_value(num, end < len(data), szx)))
            m.opt.size2 = len(data)
            responses.append(m)
        self.stats["q_block2_blocks"] += len(responses)
        self._answer(request, address, responses)
        return wanted
