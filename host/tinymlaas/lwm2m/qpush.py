"""Push a package with Q-Block1 (RFC 9177): several blocks in flight as NON PUTs, recovered by the device's answers.

The exchange, one Request-Tag for the whole body:

1. probe: block 0 (Size1, Request-Tag) alone, Confirmable (each try its own message: an ACK for an earlier try
   ends nothing here). A device with Q-Block1 answers 2.31 Continue; one without it
   answers 4.02 Bad Option (the option is critical); one that ignores the critical option answers 2.04 without
   Q-Block1 (aiocoap), and one that drops it stays quiet for PROBES x `ack_timeout`: all raise Unsupported and
   the caller pushes with plain Block1 instead.
2. stream: blocks are sent while fewer than `window` (MAX_PAYLOADS, the device's reorder window) lie beyond the
   device's cumulative acknowledgement. The device acknowledges with 2.31 and Q-Block1 = the highest block
   below which it has everything; when a block arrives past holes it answers 4.08 with Content-Format 272, a
   CBOR sequence of the missing block numbers, which are sent again at once. Each datagram has its own token
   (push id + send counter), so an answer tells which datagram caused it: a hole is sent again only if its
   last copy went out before that datagram (paths keep order: that copy is lost too), and each 2.31 gives an
   unambiguous round-trip sample.
3. timer: when the device says nothing for the RTO (push.RttEstimator: SRTT + 4 RTTVAR from the 2.31 answers,
   starting at `ack_timeout`, RFC 9177's NON_TIMEOUT), the highest block sent goes again as a
   probe: the device answers a block it already has with its state (2.31 or 4.08). The timeout doubles with
   each quiet RTO in a row (up to 8 x the estimate: one datagram per RTO is all a quiet device gets) and is back
   to the estimate at the next answer; after `max_quiet` quiet RTOs the push fails with the acknowledged offset.
4. end: 2.04 (or 2.01) with Q-Block1 = the last block: the device has it all and has checked the package. A
   4.08 without the missing-blocks format means the device lost the transfer: start over (at most
   `max_restarts` times). 4.13 and other errors fail as with Block1.
5. resume: a push that failed (the device went quiet) leaves its Request-Tag and the device's acknowledged
   block with the port (`QBlockPort.resumable`, by device address, path, package and block size). The next push
   of the same bytes there goes on from that block with that tag, no probe: the device, which keeps a transfer
   until another body replaces it, answers as in 2-3 (its own state, when it has more than the server knew),
   and one that lost it (rebooted, another body) answers a block other than 0 with plain 4.08: start over
   from byte 0, not counted as a restart.

6. OSCORE (RFC 8613): with the device's security context each datagram is protected on its own (Q-Block1,
   Request-Tag, Size1 and the payload inside, Class E; the outer message a POST with the push's token), its
   answer opened with that datagram's request id; a device that just booted answers the probe with a protected
   4.01 and an Echo value, which the repeated probe carries inside.

At most `window` blocks are ever unacknowledged and a quiet device gets one datagram per doubling RTO, so the
push stays within RFC 9177 §7's congestion control (MAX_PAYLOADS per round trip, NON_TIMEOUT back-off).
"""

import asyncio
import hashlib
import os
import time

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import CON, NON
from aiocoap.optiontypes import OpaqueOption, UintOption

from .dm import dotted
from .oscore import protect_request, unprotect_response
from .push import PushFailed, PushResult, RttEstimator
from .qblock import MAX_PAYLOADS, MISSING_BLOCKS, Q_BLOCK1, REQUEST_TAG, block_value, decode_missing, options, \
    parse_block

PROBES = 2
RESUMABLE = 1024      # failed pushes remembered per port for a resume (the oldest forgotten first)


class Unsupported(Exception):
    """The device does not do Q-Block1: push with plain Block1."""


class QBlock1Push:
    def __init__(self, port, address, path, data, szx=6, window=MAX_PAYLOADS, ack_timeout=2.0, min_rto=0.25,
                 max_quiet=6, max_restarts=2, progress=None, content_format=42, resume=True, oscore_context=None):
        self.port, self.address, self.path, self.data = port, address, tuple(path), bytes(data)
        self.szx, self.size = szx, 1 << (szx + 4)
        self.total = max(1, -(-len(self.data) // self.size))
        self.window = window
        self.ack_timeout = ack_timeout
        self.rtt = RttEstimator(ack_timeout, min_rto=min(min_rto, ack_timeout), max_rto=max(ack_timeout, 8.0))
        self.max_quiet, self.max_restarts = max_quiet, max_restarts
        self.progress = progress
        self.content_format = content_format
        self.token = port.new_token()  # each request's token: this, then a 3-byte send counter
        self.seq = 0
        self.sends = {}  # send counter -> when sent: an answer's token tells which datagram caused it
        self.events = asyncio.Queue()
        self.sent = self.resent = self.restarts = 0
        # under OSCORE (6.) every datagram is its own protected request: the request id to open its answer with
        self.ctx = oscore_context
        self.request_ids = {}
        self.echo = None
        self.key = (address, self.path, hashlib.sha256(self.data).digest(), szx)
        self.resumed_from = None      # the block a resumed push went on from
        self._resume = port.resumable.pop(self.key, None) if resume else None

    def _send(self, num, con=False):
        start = num * self.size
        chunk = self.data[start:start + self.size]
        self.seq += 1
        token = self.token + self.seq.to_bytes(3, "big")
        msg = aiocoap.Message(code=Code.PUT, payload=chunk)
        msg.mtype, msg.mid, msg.token = CON if con else NON, self.port.next_mid(), token
        msg.opt.uri_path = self.path
        msg.opt.content_format = self.content_format
        msg.opt.add_option(UintOption(Q_BLOCK1, block_value(num, start + len(chunk) < len(self.data), self.szx)))
        msg.opt.add_option(OpaqueOption(REQUEST_TAG, self.tag))
        if num == 0:
            msg.opt.size1 = len(self.data)
        if self.ctx is not None:
            msg = self._protect(msg)
        self.port.send(msg.encode(), self.address)
        self.sent += 1
        now = time.monotonic()
        self.sends[self.seq] = now
        self.last_sent[num] = now

    def _protect(self, msg):
        if self.echo is not None:       # the device's freshness check after its boot (RFC 9175 §2.4)
            msg.opt.echo, self.echo = self.echo, None
        outer, self.request_ids[self.seq] = protect_request(self.ctx, msg)
        outer.mtype, outer.mid, outer.token = msg.mtype, msg.mid, msg.token
        return outer

    def _opened(self, msg, caused_by):
        """The plain answer of a protected one (or the device's unprotected refusal); None: not ours to open."""
        request_id = self.request_ids.get(caused_by)
        if request_id is None:
            return None
        plain = unprotect_response(self.ctx, msg, request_id)
        plain.token = msg.token
        return plain

    async def _answer(self, timeout):
        try:
            return await asyncio.wait_for(self.events.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def run(self):
        self.port.pushes[self.token] = lambda msg, addr: self.events.put_nowait(msg)
        t0 = time.monotonic()
        try:
            while True:
                resume, self._resume = self._resume, None
                try:
                    code = await self._transfer(*(resume or (os.urandom(4), 0)))
                except PushFailed as e:
                    if e.code is None and e.offset:     # quiet device: the next push may go on from there
                        self._remember(self.tag, e.offset // self.size)
                    raise
                if code is not None:
                    return PushResult(len(self.data), self.sent, self.resent, self.restarts,
                                      time.monotonic() - t0, code, "q-block1")
                if resume is None:
                    self.restarts += 1
        finally:
            self.port.pushes.pop(self.token, None)

    def _remember(self, tag, acked):
        resumable = self.port.resumable
        resumable[self.key] = (tag, acked)
        while len(resumable) > RESUMABLE:
            resumable.pop(next(iter(resumable)))

    async def _transfer(self, tag, acked):
        """One try at the whole body, from block `acked` on (a resume, with the failed push's tag) or from 0:
        the final code, or None when the device lost it and it starts again."""
        self.tag = tag
        self.last_sent = {}
        first = self.seq + 1    # answers to datagrams of an earlier try are late: not this transfer's
        # acked: blocks below this the device has; sent_upto: blocks below this have been sent at least once
        sent_upto = acked
        quiet = 0
        probing = not acked     # a resumed device spoke Q-Block1 already
        self.resumed_from = acked or self.resumed_from
        while True:
            if probing:
                self._send(0, con=True)  # CON: a peer without Q-Block1 answers 4.02 piggybacked, libcoap too
                sent_upto = 1
            else:
                while sent_upto < min(acked + self.window, self.total):
                    self._send(sent_upto)
                    sent_upto += 1
            if probing:  # nothing known of the path yet: RFC 9177's NON_TIMEOUT (= ACK_TIMEOUT) per probe
                rto = self.ack_timeout
            else:  # the estimate, doubling with each quiet timeout in a row up to 8 times it
                rto = min(self.rtt.rto * (1 << min(quiet, 3)), self.rtt.max_rto)
            msg = await self._answer(rto)
            if msg is None:
                quiet += 1
                if probing and quiet >= PROBES:
                    raise Unsupported("no answer to %d Q-Block1 probes" % quiet)
                if quiet > self.max_quiet:
                    raise PushFailed("block %d unanswered: device quiet for %d timeouts" % (acked, quiet),
                                     acked * self.size)
                self.resent += 1  # a lost probe goes again at the loop's top
                if not probing:
                    self._send(sent_upto - 1)  # the device answers a block it has with its state
                continue
            quiet = 0
            code = msg.code
            caused_by = int.from_bytes(msg.token[len(self.token):], "big")
            if caused_by < first:
                continue
            if self.ctx is not None:
                msg = self._opened(msg, caused_by)
                if msg is None:
                    continue
                code = msg.code
                if probing and code == Code.UNAUTHORIZED and msg.opt.echo is not None and self.echo is None:
                    self.echo = msg.opt.echo    # the probe again, with the Echo value inside
                    self.resent += 1
                    continue
            caused_at = self.sends.get(caused_by)
            blocks = [parse_block(v) for v in options(msg, Q_BLOCK1)]
            if probing and code == Code.BAD_OPTION:
                raise Unsupported("device answered 4.02 Bad Option")
            if probing and code.is_successful() and not blocks:
                # it took block 0 as the whole body: it ignored the critical option (aiocoap does), so it cannot
                # be trusted with Q-Block1; Block1 from byte 0 replaces what it stored
                raise Unsupported("device answered %s without Q-Block1" % dotted(code))
            if code == Code.CONTINUE and blocks:
                num = blocks[0][0]
                if caused_at is not None:
                    self.rtt.sample(time.monotonic() - caused_at, self.rtt.rto)
                if num + 1 > acked:
                    acked = min(num + 1, self.total)
                    if self.progress:
                        self.progress(min(acked * self.size, len(self.data)), len(self.data))
                probing = False
                continue
            if code == Code.REQUEST_ENTITY_INCOMPLETE and msg.opt.content_format == MISSING_BLOCKS:
                try:
                    missing = decode_missing(msg.payload)
                except ValueError as e:
                    raise PushFailed("device's missing-blocks list: %s" % e, acked * self.size) from None
                probing = False
                if caused_at is None:
                    continue
                for num in sorted(set(missing)):
                    # the device lists every hole at each arrival past it; paths keep order, so a hole last sent
                    # before the datagram that caused this answer is lost (again), one sent after may be on its way
                    if acked <= num < sent_upto and self.last_sent.get(num, 0.0) < caused_at:
                        self.resent += 1
                        self._send(num)
                continue
            if code == Code.REQUEST_ENTITY_INCOMPLETE:
                if self.restarts >= self.max_restarts:
                    raise PushFailed("device lost the transfer %d times" % (self.restarts + 1), 0, "4.08")
                if self.progress:
                    self.progress(0, len(self.data))
                return None
            if code.is_successful():
                if blocks and blocks[0][0] == self.total - 1 and not blocks[0][1]:
                    if self.progress:
                        self.progress(len(self.data), len(self.data))
                    return dotted(code)
                continue  # e.g. a late answer from the previous transfer
            if code == Code.REQUEST_ENTITY_TOO_LARGE:
                size1 = msg.opt.size1
                raise PushFailed("device refused the %d-byte package (4.13)%s" % (
                    len(self.data), ", it accepts at most %d" % size1 if size1 else ""), acked * self.size, "4.13",
                    size1)
            said = msg.payload[:64].decode("utf-8", "replace") if msg.payload else ""  # its diagnostic text
            raise PushFailed("device answered %s to the Q-Block1 push%s" % (dotted(code), ": " + said if said else ""),
                             acked * self.size, dotted(code))
