"""The device-management half of the LwM2M server (Core TS §6.3; Observe of §6.4): Read, Write,
Write-Attributes, Execute, Discover, Create, Delete and Observe of a registered device, under OSCORE when the
device has a context, with queue-mode devices waited for. `DeviceManagement` is mixed into `server.LwM2MServer`,
whose state (registrations, CoAP context, OSCORE contexts, observations) it uses; the errors it raises are
exported by server.py too."""

import asyncio
import logging
import time

import aiocoap
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.optiontypes import BlockOption

from ..errors import UserError
from . import codecs as C
from . import oscore
from . import paths as P

log = logging.getLogger("tinymlaas.lwm2m.server")


class LwM2MError(Exception):
    pass


class NotRegistered(LwM2MError):
    pass


class DeviceUnreachable(LwM2MError):
    pass


class NoTinyMLObject(LwM2MError, UserError):
    """The device did not list the TinyML object (32770): it stays managed, but has no capabilities to read and
    cannot take a model. A UserError too: the CLI and the HTTP API refuse with this reason before doing anything."""


class DeviceError(LwM2MError):
    def __init__(self, code, message=""):
        super().__init__("device answered %s%s" % (code, (": " + message) if message else ""))
        self.code = code


LEGACY_FORMATS = {1541: C.TEXT, 1542: C.TLV, 1544: C.OPAQUE}


def dotted(code):
    return "%d.%02d" % (int(code) >> 5, int(code) & 0x1F)


class _Tuning(TransportTuning):
    """Per-request CoAP timing (RFC 7252 §4.8 allows other values when the path is known)."""

    def __init__(self, ack_timeout, max_retransmit):
        self.ACK_TIMEOUT = ack_timeout
        self.MAX_RETRANSMIT = max_retransmit

    def exchange_bound(self):
        """How long a CON exchange with this timing can last before aiocoap gives up (MAX_TRANSMIT_WAIT, RFC
        7252 §4.8.2), plus slack. Waiting less leaves it running: aiocoap sends nothing else to that device
        until it ends (NSTART 1), so a new request would only queue behind it."""
        return self.ACK_TIMEOUT * (2 ** (self.MAX_RETRANSMIT + 1) - 1) * self.ACK_RANDOM_FACTOR + 1.0


class Observation:
    """A running observation; `cancel()` stops it: the device's next notification, CON or NON, gets a Reset,
    which ends the observation on the device (RFC 7641 §3.6; see guard.py)."""

    def __init__(self, server, endpoint, path, request, token):
        self.server, self.endpoint, self.path = server, endpoint, path
        self._request = request
        self.token = token  # on the wire (the outer token under OSCORE)
        self.task = None
        self.notifications = 0

    def cancel(self):
        if not self._request.observation.cancelled:
            self._request.observation.cancel()
            if self.server.guard is not None:
                self.server.guard.forget(self.token)
        if self.task:
            self.task.cancel()
        self.server._observations.get(self.endpoint, set()).discard(self)

    @property
    def active(self):
        return not self._request.observation.cancelled and self.task is not None and not self.task.done()


MULTI_VALUE_FORMATS = (C.TLV, C.SENML_JSON, C.SENML_CBOR)


def announced_format(reg):
    """The first data format for several values that the device listed in its root link's ct= and this server
    speaks, or None. Requests without an explicit format use it: a device that announced only SenML-JSON gets
    Accept 110, not a TLV or SenML-CBOR it may lack."""
    return next((f for f in reg.content_formats if f in MULTI_VALUE_FORMATS), None)


def values_format(reg):
    """The Content-Format of a Write or Create of several values: the announced format, else TLV for
    LwM2M 1.0 (its mandatory format) and SenML-CBOR for 1.1 and later."""
    return announced_format(reg) or (C.TLV if reg.lwm2m_version == "1.0" else C.SENML_CBOR)


class DeviceManagement:
    """LwM2MServer's device-management operations (see the module docstring)."""

    def _message(self, reg, code, path, payload=b"", content_format=None, accept=None, query=()):
        msg = Message(code=code, payload=payload)
        root = [s for s in reg.root_path.split("/") if s]
        if reg.remote is not None:
            msg.remote = reg.remote
        else:
            msg.set_request_uri("coap://%s/" % reg.address)
        msg.opt.uri_path = tuple(root) + tuple(str(i) for i in path)
        if content_format is not None:
            msg.opt.content_format = content_format
        if accept is not None:
            msg.opt.accept = accept
        if query:
            msg.opt.uri_query = tuple(query)
        return msg

    async def _await_awake(self, reg):
        """Queue mode (binding with Q, LwM2M 1.1 §6.5): a sleeping device only listens for `awake_time` after
        it last sent a Register or Update. Requests made while it sleeps wait for its next Update (up to
        `queue_timeout`) instead of timing out against a closed radio (leshan#1286)."""
        if "Q" not in reg.binding or time.time() < reg.updated_at + self.awake_time:
            return
        event = self._wake.setdefault(reg.endpoint, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), self.queue_timeout)
        except asyncio.TimeoutError:
            raise DeviceUnreachable("queue-mode device %s did not wake within %.0f s" % (reg.endpoint, self.queue_timeout)) from None

    def _woke(self, endpoint):
        event = self._wake.pop(endpoint, None)
        if event is not None:
            event.set()

    def add_oscore_device(self, keys):
        """From now on `keys.endpoint` talks to this server only under OSCORE (lwm2m/oscore.py)."""
        self.oscore.add(keys)

    async def _exchange(self, reg, msg, timeout=None, handle_blockwise=True):
        await self._await_awake(reg)
        ctx = self.oscore.for_endpoint(reg.endpoint)
        try:
            if ctx is not None:
                return await asyncio.wait_for(self._secured(ctx, msg), timeout or self.request_timeout)
            return await asyncio.wait_for(self.context.request(msg, handle_blockwise=handle_blockwise).response,
                                          timeout or self.request_timeout)
        except (asyncio.TimeoutError, aiocoap.error.NetworkError, aiocoap.error.RequestTimedOut) as e:
            raise DeviceUnreachable("no answer from %s: %s" % (msg.remote.hostinfo, type(e).__name__)) from None

    async def _protected(self, ctx, msg, awaiting=None):
        """Send msg under OSCORE and open the answer. A device that has just booted answers its first request
        with 4.01 and an Echo value (RFC 8613 Appendix B.1.2, RFC 9175): the request goes again, with the Echo
        inside and a new Partial IV. `awaiting(outer) -> outer response` overrides how the answer is awaited (the
        push bounds each exchange by its own timeout)."""
        for attempt in (0, 1):
            outer, request_id = oscore.protect_request(ctx, msg)
            outer.transport_tuning = msg.transport_tuning
            request = self.context.request(outer, handle_blockwise=False)
            resp = oscore.unprotect_response(ctx, await (awaiting(request) if awaiting else request.response),
                                             request_id)
            if attempt or resp.code != Code.UNAUTHORIZED or resp.opt.echo is None:
                return resp
            msg = msg.copy(mid=None)
            msg.opt.echo = resp.opt.echo
        return resp

    async def _secured(self, ctx, msg):
        """One request under OSCORE. Block-wise transfer is inner (inside the ciphertext, RFC 8613 §4.1.3.4), so
        a long response is fetched here block by block, each request protected on its own."""
        resp = await self._protected(ctx, msg)
        payload = resp.payload
        while resp.code.is_successful() and resp.opt.block2 is not None and resp.opt.block2.more:
            b2 = resp.opt.block2
            nxt = msg.copy(mid=None)
            nxt.opt.block2 = BlockOption.BlockwiseTuple(b2.block_number + 1, False, b2.size_exponent)
            resp = await self._protected(ctx, nxt)
            payload += resp.payload
        if resp.code.is_successful():
            resp.payload = payload
            resp.opt.block2 = None
        return resp

    def _check(self, resp):
        if not resp.code.is_successful():
            raise DeviceError(dotted(resp.code), resp.payload[:120].decode("utf-8", "replace"))
        return resp

    def _decode(self, path, resp):
        fmt = resp.opt.content_format
        if fmt is None:
            fmt = C.TEXT if len(path) >= 3 else C.TLV
        # Pre-1.0 LwM2M drafts used 1541 (text), 1542 (TLV) and 1544 (opaque); old clients still send them.
        fmt = LEGACY_FORMATS.get(int(fmt), int(fmt))
        try:
            return C.decode(int(fmt), path, resp.payload, self.model)
        except C.CodecError as e:
            raise DeviceError(dotted(resp.code), "undecodable %s payload: %s" % (fmt, e)) from None

    async def read(self, endpoint, path, fmt=None, timeout=None):
        """Read -> {path tuple: value}. fmt (e.g. C.SENML_CBOR or "tlv") is sent as Accept; without it, the
        data format the device announced (`announced_format`), else no Accept (the device chooses)."""
        return (await self.read_answer(endpoint, path, fmt, timeout))[2]

    async def read_answer(self, endpoint, path, fmt=None, timeout=None, tuning=None):
        """Read -> (content format or None, payload bytes, {path tuple: value}): the answer as the device sent it
        and decoded (the HTTP API shows the bytes on request)."""
        reg = self.device(endpoint)
        path = P.check(path)
        accept = C.content_format(fmt) if fmt is not None else announced_format(reg)
        msg = self._message(reg, Code.GET, path, accept=accept)
        if tuning is not None:
            msg.transport_tuning = tuning
        resp = self._check(await self._exchange(reg, msg, timeout))
        return resp.opt.content_format, resp.payload, self._decode(path, resp)

    async def read_value(self, endpoint, path, fmt=None):
        """Read one resource and return its value."""
        path = P.check(path)
        values = await self.read(endpoint, path, fmt)
        if path not in values:
            raise DeviceError("2.05", "no value for %s in the answer" % P.fmt(path))
        return values[path]

    def _write_format(self, reg, path, values, fmt):
        if fmt is not None:
            return C.content_format(fmt)
        if len(values) == 1 and path in values and len(path) >= 3:
            return C.OPAQUE if isinstance(values[path], (bytes, bytearray)) else C.TEXT
        return values_format(reg)

    async def write(self, endpoint, path, values, fmt=None, replace=True, timeout=None):
        """Write. `values` is a value (for a single resource path) or {path: value}. replace=False sends a
        partial update (POST) instead of a replace (PUT)."""
        reg = self.device(endpoint)
        path = P.check(path)
        if not isinstance(values, dict):
            values = {path: values}
        values = {P.check(k): v for k, v in values.items()}
        fmt = self._write_format(reg, path, values, fmt)
        payload = C.encode(fmt, path, values, self.model)
        msg = self._message(reg, Code.PUT if replace else Code.POST, path, payload, content_format=fmt)
        return dotted(self._check(await self._exchange(reg, msg, timeout)).code)

    async def write_attributes(self, endpoint, path, timeout=None, **attrs):
        """Write-Attributes, e.g. pmin=5, pmax=60, gt=..., lt=..., st=...; None clears one."""
        reg = self.device(endpoint)
        path = P.check(path)
        allowed = {"pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge", "con", "hqmax"}
        bad = set(attrs) - allowed
        if bad:
            raise ValueError("unknown notification attributes %s" % sorted(bad))
        query = [k if v is None else "%s=%s" % (k, v) for k, v in attrs.items()]
        return dotted(self._check(await self._exchange(reg, self._message(reg, Code.PUT, path, query=query), timeout)).code)

    async def execute(self, endpoint, path, args=None, timeout=None):
        reg = self.device(endpoint)
        path = P.check(path)
        if len(path) != 3:
            raise ValueError("Execute needs a resource path /o/i/r")
        payload = args.encode("utf-8") if isinstance(args, str) else (args or b"")
        msg = self._message(reg, Code.POST, path, payload, content_format=C.TEXT if payload else None)
        return dotted(self._check(await self._exchange(reg, msg, timeout)).code)

    async def discover(self, endpoint, path, timeout=None):
        reg = self.device(endpoint)
        path = P.check(path)
        resp = self._check(await self._exchange(reg, self._message(reg, Code.GET, path, accept=C.LINK_FORMAT), timeout))
        try:
            return C.linkformat.decode(resp.payload)
        except C.CodecError as e:
            raise DeviceError(dotted(resp.code), "undecodable Discover answer: %s" % e) from None

    async def create(self, endpoint, path, values, fmt=None, timeout=None):
        reg = self.device(endpoint)
        path = P.check(path)
        fmt = C.content_format(fmt) if fmt is not None else values_format(reg)
        payload = C.encode(fmt, path, {P.check(k): v for k, v in values.items()}, self.model)
        resp = self._check(await self._exchange(reg, self._message(reg, Code.POST, path, payload, content_format=fmt), timeout))
        return resp.opt.location_path

    async def delete(self, endpoint, path, timeout=None):
        reg = self.device(endpoint)
        path = P.check(path)
        return dotted(self._check(await self._exchange(reg, self._message(reg, Code.DELETE, path), timeout)).code)

    async def observe(self, endpoint, path, callback, fmt=None):
        """Observe a path. callback(values, observation) runs for the first answer and every notification;
        callback(None, observation) once when the observation ends (device gone, cancelled by the device)."""
        reg = self.device(endpoint)
        path = P.check(path)
        msg = self._message(reg, Code.GET, path, accept=C.content_format(fmt) if fmt is not None else announced_format(reg))
        msg.opt.observe = 0
        await self._await_awake(reg)
        ctx = self.oscore.for_endpoint(endpoint)
        for attempt in (0, 1):
            sent, request_id = oscore.protect_request(ctx, msg) if ctx is not None else (msg, None)

            def opened(outer, request_id=request_id):
                # the request and every notification under OSCORE (RFC 8613 §4.1.3.5)
                return oscore.unprotect_response(ctx, outer, request_id) if ctx is not None else outer

            request = self.context.request(sent)
            try:
                outer_first = await asyncio.wait_for(request.response, self.request_timeout)
            except (asyncio.TimeoutError, aiocoap.error.NetworkError, aiocoap.error.RequestTimedOut) as e:
                request.observation.cancel()
                raise DeviceUnreachable("no answer to Observe from %s: %s" % (reg.address, type(e).__name__)) from None
            first = opened(outer_first)
            if attempt or first.code != Code.UNAUTHORIZED or first.opt.echo is None:
                break
            request.observation.cancel()  # a device that just booted asks for Echo first (see _protected)
            msg = msg.copy(mid=None)
            msg.opt.echo = first.opt.echo
        if not first.code.is_successful():
            if not request.observation.cancelled:   # aiocoap ends it itself on an error answer
                request.observation.cancel()
            raise DeviceError(dotted(first.code))
        obs = Observation(self, endpoint, path, request, outer_first.token)
        self._observations.setdefault(endpoint, set()).add(obs)
        callback(self._decode(path, first), obs)
        if outer_first.opt.observe is None:
            # The device answered but did not start an observation (RFC 7641 §3.1): nothing more will come.
            request.observation.cancel()
            callback(None, obs)
            return obs

        async def follow():
            try:
                async for note in request.observation:
                    obs.notifications += 1
                    try:
                        values = self._decode(path, self._check(opened(note)))
                    except LwM2MError as e:
                        log.warning("bad notification from %s for %s: %s", endpoint, P.fmt(path), e)
                        continue
                    try:
                        callback(values, obs)
                    except Exception:  # a broken callback must not end the observation
                        log.exception("observation callback for %s %s failed", endpoint, P.fmt(path))
            except Exception as e:  # aiocoap ends observations with an exception (e.g. NotObservable)
                log.info("observation %s %s ended: %s", endpoint, P.fmt(path), e)
            finally:
                self._observations.get(endpoint, set()).discard(obs)
                callback(None, obs)

        obs.task = self._spawn(follow())
        return obs

    def observations(self, endpoint):
        return list(self._observations.get(endpoint, ()))
