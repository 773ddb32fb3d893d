"""A LwM2M Bootstrap-Server (OMA LwM2M 1.1 Core §5.2.7, §6.1.7, client-initiated bootstrap) that gives each device
its account on this service's LwM2M server and fresh OSCORE keys for it: zero-touch provisioning of the keys.

A device that ships knowing only the bootstrap server sends Bootstrap-Request (POST /bs?ep=NAME). The server
answers 2.04 and then, from its own CoAP context, to the address the request came from:

    DELETE /                          Bootstrap-Delete (the device keeps its bootstrap account)
    PUT /21/0   TLV                   OSCORE object: master secret, the device's Sender ID, Recipient ID, AEAD 10
                                      (AES-CCM-16-64-128), HMAC -10 (HKDF SHA-256), master salt
    PUT /0/1    TLV                   Security: LwM2M server URI, not bootstrap, mode 3 (NoSec at the DTLS layer),
                                      Short Server ID 1, OSCORE Security Mode -> 21:0
    PUT /1/0    TLV                   Server: Short Server ID 1, lifetime, binding U
    PUT /32770/0/32  Opaque           TinyML Trust Anchor Keys (with `anchors`): the 65-byte points of the keys
                                      whose signed packages the device installs, concatenated, current key first
    POST /bs                          Bootstrap-Finish

The keys are generated here and registered with the LwM2M server (LwM2MServer.add_oscore_device) before they are
written, so the device's first Register already finds them. With `bootstrap_keys` the bootstrap exchange itself is
under OSCORE with the device's factory keys (the device must then use them); without, the bootstrap link must be
trusted (a factory line, a local network), because the new secret travels in it: the docs say so.
"""

import asyncio
import logging
from dataclasses import dataclass

import aiocoap
from aiocoap import Message, resource
from aiocoap.numbers.codes import Code

from . import codecs as C
from . import guard, oscore
from .server import shutdown_context
from .objects import default_model
from .values import ObjLink

log = logging.getLogger("tinymlaas.lwm2m.bootstrap")

SSID = 1
AEAD_AES_CCM_16_64_128 = 10
HMAC_HKDF_SHA256 = -10
TRUST_ANCHOR_KEYS = (32770, 0, 32)  # docs/tinyml-object.md: written only by a Bootstrap-Server


@dataclass
class Outcome:
    endpoint: str
    ok: bool
    reason: str = ""


class BootstrapServer:
    def __init__(self, lwm2m_server, server_uri, lifetime=300, bootstrap_keys=(), oscore_dir=None,
                 request_timeout=20.0, anchors=None):
        """lwm2m_server: the LwM2MServer the devices are sent to, reachable by them at server_uri.
        bootstrap_keys: DeviceKeys of devices whose bootstrap must be OSCORE-protected (their factory keys).
        anchors: a callable -> {kid hex: point hex} (signing.anchors.device_anchors of the service's key store),
        asked at each bootstrap: the trust anchors written to the device; None writes none."""
        self.anchors = anchors
        self.lwm2m = lwm2m_server
        self.server_uri = server_uri
        self.lifetime = lifetime
        self.request_timeout = request_timeout
        self.contexts = oscore.Contexts(oscore_dir or (lwm2m_server.oscore.directory.parent /
                                                       (lwm2m_server.oscore.directory.name + "-bootstrap")))
        for keys in bootstrap_keys:
            self.contexts.add(keys)
        self.model = default_model()
        self.context = None
        self.port = None
        self.guard_stats = None
        self.outcomes = asyncio.Queue()   # Outcome per finished (or failed) bootstrap
        self._tasks = set()

    async def start(self, host="127.0.0.1", port=5693):
        self.context = await aiocoap.Context.create_server_context(_Site(self), bind=(host, port), transports=["udp6"])
        # the same strict datagram check as the LwM2M server: this port faces devices that know nothing else yet
        self.guard_stats = guard.install(self.context).stats
        self.port = guard.bound_port(self.context) or port
        log.info("LwM2M bootstrap server on coap://%s:%d", host, self.port)
        return self

    async def stop(self):
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.context:
            await shutdown_context(self.context)

    # ---- one device ---------------------------------------------------------------------------------------

    def _accept(self, endpoint, remote, ctx):
        task = asyncio.get_running_loop().create_task(self._provision(endpoint, remote, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _provision(self, endpoint, remote, ctx):
        outcome = Outcome(endpoint, False)
        try:
            keys = oscore.DeviceKeys.generate(endpoint, self.lwm2m.oscore.sender_ids_in_use(except_endpoint=endpoint))
            self.lwm2m.add_oscore_device(keys)  # before the device can Register with them
            writes = [
                ((21, 0), {(21, 0, 0): keys.master_secret, (21, 0, 1): keys.device_id, (21, 0, 2): keys.server_id,
                           (21, 0, 3): AEAD_AES_CCM_16_64_128, (21, 0, 4): HMAC_HKDF_SHA256,
                           (21, 0, 5): keys.master_salt}),
                ((0, 1), {(0, 1, 0): self.server_uri, (0, 1, 1): False, (0, 1, 2): 3, (0, 1, 10): SSID,
                          (0, 1, 17): ObjLink(21, 0)}),
                ((1, 0), {(1, 0, 0): SSID, (1, 0, 1): self.lifetime, (1, 0, 7): "U"}),
            ]
            await self._request(ctx, remote, Code.DELETE, ())
            for path, values in writes:
                await self._request(ctx, remote, Code.PUT, path, C.encode(C.TLV, path, values, self.model), C.TLV)
            if self.anchors is not None:
                points = b"".join(bytes.fromhex(p) for p in self.anchors().values())
                await self._request(ctx, remote, Code.PUT, TRUST_ANCHOR_KEYS, points, C.OPAQUE)
            await self._request(ctx, remote, Code.POST, ("bs",))
            outcome.ok = True
            log.info("bootstrapped %s (OSCORE Sender ID %s)", endpoint, keys.device_id.hex())
        except BootstrapFailed as e:
            outcome.reason = str(e)
            log.warning("bootstrap of %s failed: %s", endpoint, e)
        await self.outcomes.put(outcome)

    async def _request(self, ctx, remote, code, path, payload=b"", content_format=None):
        msg = Message(code=code, payload=payload)
        msg.remote = remote
        msg.opt.uri_path = tuple(str(p) for p in path)
        if content_format is not None:
            msg.opt.content_format = content_format
        sent, request_id = oscore.protect_request(ctx, msg) if ctx is not None else (msg, None)
        what = "%s /%s" % (code, "/".join(msg.opt.uri_path))
        try:
            resp = await asyncio.wait_for(self.context.request(sent, handle_blockwise=False).response,
                                          self.request_timeout)
        except (asyncio.TimeoutError, aiocoap.error.NetworkError, aiocoap.error.RequestTimedOut) as e:
            raise BootstrapFailed("%s: no answer (%s)" % (what, type(e).__name__)) from None
        if ctx is not None:
            resp = oscore.unprotect_response(ctx, resp, request_id)
        if not resp.code.is_successful():
            raise BootstrapFailed("%s: %s %s" % (what, resp.code, resp.payload[:80].decode("utf-8", "replace")))


class BootstrapFailed(Exception):
    pass


class _Site(resource.Resource):
    """POST /bs?ep=NAME, plain or under the device's bootstrap OSCORE keys."""

    def __init__(self, bs):
        super().__init__()
        self.bs = bs

    async def needs_blockwise_assembly(self, request):
        return False

    async def render(self, request):
        if request.opt.oscore is not None:
            opened = self.bs.contexts.unprotect_request(request)
            if isinstance(opened, Message):
                return opened
            endpoint, ctx, plain, request_id = opened
            return oscore.protect_response(ctx, self._bootstrap_request(plain, endpoint, ctx), request_id)
        return self._bootstrap_request(request, None, None)

    def _bootstrap_request(self, request, as_endpoint, ctx):
        if request.opt.uri_path != ("bs",):
            return Message(code=Code.NOT_FOUND)
        if request.code != Code.POST:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        ep = [q[3:] for q in request.opt.uri_query if q.startswith("ep=")]
        if len(ep) != 1 or not ep[0]:
            return Message(code=Code.BAD_REQUEST, payload=b"Bootstrap-Request needs ep=")
        endpoint = ep[0]
        if as_endpoint is not None and endpoint != as_endpoint:
            return Message(code=Code.FORBIDDEN, payload=("these keys belong to %s" % as_endpoint).encode())
        if as_endpoint is None and self.bs.contexts.for_endpoint(endpoint) is not None:
            return Message(code=Code.UNAUTHORIZED, payload=("%s must bootstrap under OSCORE" % endpoint).encode())
        self.bs._accept(endpoint, request.remote, ctx)
        return Message(code=Code.CHANGED)

