"""Package delivery of the LwM2M server (Firmware Update object 5): push into /5/0/0 with Q-Block1 (qpush.py) or
Block1 (push.py), resumable, and pull, the package offered at a coap:// URI written into /5/0/1. `PackageDelivery`
is mixed into `server.LwM2MServer`."""

import asyncio
import hashlib
import logging
import time

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from . import codecs as C
from . import paths as P
from .dm import _Tuning, dotted
from .push import BlockAnswer, BlockTimeout, PushFailed, RttEstimator, push_blocks
from .qblock import device_sockaddr
from .qpush import QBlock1Push, Unsupported

log = logging.getLogger("tinymlaas.lwm2m.server")


class PackageDelivery:
    """LwM2MServer's package delivery (see the module docstring)."""


    async def push_package(self, endpoint, data, progress=None, block_size=1024, resume=True, block_retries=4,
                           ack_timeout=2.0, max_retransmit=4, adaptive=True, min_rto=0.25, path="/5/0/0",
                           q_block=True):
        """Write `data` into /5/0/0 block-wise (Block1, CON). Returns push.PushResult; raises push.PushFailed
        (with .offset) after retries run out. With resume=True a push of the same bytes to the same device
        continues from where the last failed one stopped; a device that lost its state answers 4.08 and the
        transfer restarts from 0.

        Timing: the first block waits `ack_timeout` (RFC 7252's 2 s) before CoAP retransmits it; with
        adaptive=True later blocks use a timeout estimated from the measured round trips (push.RttEstimator,
        never below `min_rto`), so a lost datagram on a fast path costs ~min_rto instead of 2-3 s.

        With q_block=True (under OSCORE too) the push is tried with Q-Block1 first (qpush.py, RFC 9177: up to
        MAX_PAYLOADS blocks in flight); a device that answers 4.02 or nothing to the probe gets Block1 as above,
        and this server remembers that until the device registers again. A Q-Block1 push that failed is resumed
        too, from the device's acknowledged block with the same Request-Tag (qpush.py, 5.)."""
        self.device(endpoint)  # NotRegistered before any work
        path = P.check(path)
        if block_size not in (16, 32, 64, 128, 256, 512, 1024):
            raise ValueError("block size must be a power of two in 16..1024")
        szx = block_size.bit_length() - 5
        key = (endpoint, hashlib.sha256(data).hexdigest())
        offset = self._push_offsets.get(key, 0) if resume else 0
        if q_block and endpoint not in self._block1_only:
            reg = self.device(endpoint)
            await self._await_awake(reg)
            segments = tuple(s for s in reg.root_path.split("/") if s) + tuple(str(i) for i in path)
            qpush = QBlock1Push(self.qblock, device_sockaddr(reg, self.qblock.family), segments, data, szx,
                                ack_timeout=ack_timeout, min_rto=min_rto, progress=progress,
                                max_quiet=max_retransmit + 2, resume=resume,
                                oscore_context=self.oscore.for_endpoint(endpoint))
            try:
                return await qpush.run()
            except Unsupported as e:
                log.info("%s: no Q-Block1 (%s), pushing with Block1", endpoint, e)
                self._block1_only.add(endpoint)
        rtt = RttEstimator(ack_timeout, min_rto=min(min_rto, ack_timeout), max_rto=max(ack_timeout, 8.0))

        async def send_block(num, more, szx_, chunk):
            reg_now = self.device(endpoint)  # follows the device if it re-registers from another address
            msg = self._message(reg_now, Code.PUT, path, bytes(chunk), content_format=C.OPAQUE)
            rto = rtt.rto if adaptive else ack_timeout
            msg.transport_tuning = _Tuning(rto, max_retransmit)
            msg.opt.block1 = BlockOption.BlockwiseTuple(num, more, szx_)
            if num == 0:
                msg.opt.size1 = len(data)
            # Whole-exchange bound: CoAP's MAX_TRANSMIT_WAIT for this timeout (RFC 7252 §4.8.2) plus slack.
            exchange_timeout = rto * ((2 ** (max_retransmit + 1)) - 1) * 1.5 + 1.0
            await self._await_awake(reg_now)
            t0 = time.monotonic()
            ctx = self.oscore.for_endpoint(endpoint)
            try:
                if ctx is not None:  # each block its own protected request (inner Block1, RFC 8613 §4.1.3.4)
                    resp = await self._protected(
                        ctx, msg, awaiting=lambda request: asyncio.wait_for(request.response, exchange_timeout))
                else:
                    resp = await asyncio.wait_for(self.context.request(msg, handle_blockwise=False).response,
                                                  exchange_timeout)
            except (asyncio.TimeoutError, aiocoap.error.NetworkError, aiocoap.error.RequestTimedOut):
                rtt.backoff()
                raise BlockTimeout() from None
            rtt.sample(time.monotonic() - t0, rto)
            b1 = resp.opt.block1
            return BlockAnswer(dotted(resp.code), (b1.block_number, b1.more, b1.size_exponent) if b1 else None,
                               resp.opt.size1)

        def on_progress(done, total):
            self._push_offsets[key] = done
            if progress:
                progress(done, total)

        try:
            result = await push_blocks(send_block, data, szx, on_progress, offset, block_retries)
        except PushFailed as e:
            self._push_offsets[key] = e.offset
            raise
        self._push_offsets.pop(key, None)
        return result

    def offer_package(self, data):
        """Make `data` downloadable (Block2) and return its coap:// URI for /5/0/1 Package URI."""
        sha = self.packages.add(data)
        host = self.public_host or self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = "[%s]" % host
        return "coap://%s:%d/fw/%s" % (host, self.port, sha)

    async def deliver_by_uri(self, endpoint, data):
        """Pull delivery: offer the package and write its URI into /5/0/1; the device fetches it itself."""
        uri = self.offer_package(data)
        await self.write(endpoint, "/5/0/1", uri)
        return uri

    def _note_download(self, sha, served_to, total, who):
        d = self.downloads.setdefault(sha, {})
        d[who] = max(d.get(who, 0), served_to)
