"""The server's CoAP resources: the Registration interface (/rd), LwM2M Send (/dp, send.py), package downloads
(/fw/<sha256>) and an observable endpoint lookup (/rd-lookup/ep, in the style of RFC 9176 §7) for monitoring tools.

One root resource routes on the full Uri-Path, so no request reaches a handler it was not meant for, and
aiocoap's implicit block-wise reassembly is off: Block1 on /rd is refused with 4.13 (a registration must fit
one datagram; this server allocates nothing for partial registrations), Block2 on /fw is computed per request.
"""

import logging

from aiocoap import Message, resource
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from . import registration as R
from . import send as S
from .packages import MAX_SZX, BlockOutOfRange, block_slice

log = logging.getLogger("tinymlaas.lwm2m.site")

CODES = {
    R.BAD_REQUEST: Code.BAD_REQUEST,
    R.NOT_FOUND: Code.NOT_FOUND,
    R.PRECONDITION_FAILED: Code.PRECONDITION_FAILED,
    R.UNSUPPORTED_FORMAT: Code.UNSUPPORTED_CONTENT_FORMAT,
}
MAX_REGISTRATION_PAYLOAD = 1024
SEND_CODES = {"4.00": Code.BAD_REQUEST, "4.13": Code.REQUEST_ENTITY_TOO_LARGE,
              "4.15": Code.UNSUPPORTED_CONTENT_FORMAT}


def _error(code, text=""):
    # Diagnostic payloads (RFC 7252 §5.5.2) help people reading captures; they are short, UTF-8 text.
    return Message(code=code, payload=text.encode("utf-8")[:120])


class Root(resource.ObservableResource):
    def __init__(self, server):
        super().__init__()
        self.server = server
        self._lookup_observers = set()

    async def needs_blockwise_assembly(self, request):
        return False

    async def add_observation(self, request, serverobservation):
        # Only the endpoint lookup is observable; anything else is answered without an Observe option.
        if request.opt.uri_path == ("rd-lookup", "ep"):
            self._lookup_observers.add(serverobservation)
            serverobservation.accept(lambda: self._lookup_observers.discard(serverobservation))

    def registrations_changed(self):
        for o in list(self._lookup_observers):
            o.trigger()

    async def render(self, request):
        if request.opt.oscore is not None:
            return await self._render_protected(request)
        return await self._render(request, None)

    async def _render_protected(self, request):
        """An OSCORE request: opened with the sending device's context, answered under the same protection.
        What it may do is bound to that device's endpoint (`as_endpoint`)."""
        from .oscore import protect_response

        opened = self.server.oscore.unprotect_request(request)
        if isinstance(opened, Message):
            return opened  # refused: unprotected, with the reason
        endpoint, ctx, plain, request_id = opened
        return protect_response(ctx, await self._render(plain, endpoint), request_id)

    async def _render(self, request, as_endpoint):
        path = request.opt.uri_path
        try:
            if path[:1] == ("rd",):
                return await self._registration(request, path[1:], as_endpoint)
            if len(path) == 2 and path[0] == "fw":
                return self._package(request, path[1])
            if path == ("rd-lookup", "ep"):
                return self._lookup(request)
            if path == ("dp",):
                return await self._send(request, as_endpoint)
        except R.Rejected as e:
            log.info("%s %s from %s rejected: %s", request.code, "/".join(path), request.remote.hostinfo, e.reason)
            return _error(CODES[e.code], e.reason)
        return _error(Code.NOT_FOUND)

    # ---- /rd ---------------------------------------------------------------------------------------------

    async def _registration(self, request, rest, as_endpoint=None):
        if request.opt.block1 is not None and (request.opt.block1.block_number or request.opt.block1.more):
            m = _error(Code.REQUEST_ENTITY_TOO_LARGE, "registration must fit one datagram")
            m.opt.size1 = MAX_REGISTRATION_PAYLOAD
            return m
        if len(request.payload) > MAX_REGISTRATION_PAYLOAD:
            m = _error(Code.REQUEST_ENTITY_TOO_LARGE)
            m.opt.size1 = MAX_REGISTRATION_PAYLOAD
            return m
        if not rest:
            if request.code != Code.POST:
                return _error(Code.METHOD_NOT_ALLOWED)
            fields = R.check_register(request.opt.uri_query, request.opt.content_format, request.payload)
            refused = self._not_allowed(fields["endpoint"], as_endpoint)
            if refused:
                return refused
            reg = await self.server._register(fields, request.remote)
            m = Message(code=Code.CREATED)
            m.opt.location_path = ("rd", reg.id)
            return m
        if len(rest) != 1:
            return _error(Code.NOT_FOUND)
        reg_id = rest[0]
        reg = self.server._registration_by_id(reg_id)
        if reg is not None:
            refused = self._not_allowed(reg.endpoint, as_endpoint)
            if refused:
                return refused
        if request.code == Code.POST:
            if reg is None:
                return _error(Code.NOT_FOUND)
            fields = R.check_update(request.opt.uri_query, request.opt.content_format, request.payload, reg.lwm2m_version)
            if not await self.server._update(reg_id, fields, request.remote):
                return _error(Code.NOT_FOUND)
            return Message(code=Code.CHANGED)
        if request.code == Code.DELETE:
            if request.payload or request.opt.uri_query:
                return _error(Code.BAD_REQUEST, "De-register takes no payload or query")
            if not await self.server._deregister(reg_id):
                return _error(Code.NOT_FOUND)
            return Message(code=Code.DELETED)
        return _error(Code.METHOD_NOT_ALLOWED)

    def _not_allowed(self, endpoint, as_endpoint):
        """A device with OSCORE keys only registers (updates, de-registers) itself, and only under OSCORE."""
        if as_endpoint is not None and endpoint != as_endpoint:
            return _error(Code.FORBIDDEN, "these OSCORE keys belong to %s" % as_endpoint)
        if as_endpoint is None and self.server.oscore.for_endpoint(endpoint) is not None:
            return _error(Code.UNAUTHORIZED, "%s must use OSCORE" % endpoint)
        return None

    # ---- /dp: LwM2M Send ----------------------------------------------------------------------------------

    async def _send(self, request, as_endpoint):
        """A registered device's Send: stored, then 2.04; refused with the reason otherwise (send.py)."""
        if request.code != Code.POST:
            return _error(Code.METHOD_NOT_ALLOWED)
        who = request.remote.hostinfo
        if as_endpoint is not None:
            reg = self.server.find(as_endpoint)
        else:
            reg = S.sender(self.server, who)
            if reg is not None and self.server.oscore.for_endpoint(reg.endpoint) is not None:
                return _error(Code.UNAUTHORIZED, "%s must use OSCORE" % reg.endpoint)
        if reg is None:
            log.info("Send from %s refused: not a registered device", who)
            return _error(Code.UNAUTHORIZED, "Send from %s: no device registered there" % (as_endpoint or who))
        if request.opt.block1 is not None:
            return _error(Code.REQUEST_ENTITY_TOO_LARGE, "a Send must fit one datagram")
        try:
            values = S.check(request.opt.content_format, request.payload, self.server.model, reg.objects)
        except S.Refused as e:
            log.info("Send from %s (%s) refused: %s", reg.endpoint, who, e.reason)
            return _error(SEND_CODES[e.code], e.reason)
        await self.server.reported(reg, values)
        return Message(code=Code.CHANGED)

    # ---- /rd-lookup/ep ------------------------------------------------------------------------------------

    def _lookup(self, request):
        if request.code != Code.GET:
            return _error(Code.METHOD_NOT_ALLOWED)
        if request.opt.accept not in (None, 40):
            return _error(Code.NOT_ACCEPTABLE)
        links = ",".join('</rd/%s>;ep="%s";base="coap://%s";lt=%d' % (r.id, r.endpoint.replace('"', '\\"'), r.address, r.lifetime)
                         for r in self.server.devices())
        return Message(code=Code.CONTENT, payload=links.encode("utf-8"), content_format=40)

    # ---- /fw/<sha256> ------------------------------------------------------------------------------------

    def _package(self, request, sha):
        if request.code != Code.GET:
            return _error(Code.METHOD_NOT_ALLOWED)
        data = self.server.packages.get(sha)
        if data is None:
            return _error(Code.NOT_FOUND)
        b2 = request.opt.block2
        num, szx = (b2.block_number, min(b2.size_exponent, MAX_SZX)) if b2 is not None else (0, MAX_SZX)
        if b2 is not None and b2.size_exponent > MAX_SZX and num != 0:
            # SZX 7 is reserved over UDP (BERT is TCP-only). Block 0 can still be answered at 1024 bytes (the
            # client then follows the smaller size); a later NUM names a byte range we cannot map.
            return _error(Code.BAD_OPTION, "SZX 7 is reserved over UDP")
        try:
            start, end, more = block_slice(len(data), num, szx)
        except BlockOutOfRange as e:
            return _error(Code.BAD_OPTION, str(e))
        m = Message(code=Code.CONTENT, payload=data[start:end])
        m.opt.content_format = 42
        m.opt.etag = bytes.fromhex(sha[:16])
        if more or num or b2 is not None:
            m.opt.block2 = BlockOption.BlockwiseTuple(num, more, szx)
        if num == 0:
            m.opt.size2 = len(data)
        self.server._note_download(sha, end, len(data), request.remote.hostinfo)
        return m
