"""Block-wise push of a package into /5/0/0 (RFC 7959 Block1 over CON), robust against loss and slow devices.

Leshan's pain points (leshan#698, #1394) were big packages timing out as one long exchange. Here every block
is its own CON exchange with CoAP retransmission underneath, plus a bounded number of whole-block resends on
top when a block's exchange times out, so one lost datagram costs one retransmission, not the transfer. Progress
is reported per acknowledged block; on failure the byte offset reached is returned so the next push resumes
there. The device's answers steer the transfer:

* 2.31 Continue with a smaller SZX: the device wants smaller blocks; what it acknowledged stays accepted and
  the transfer continues at the same byte offset with the smaller size (RFC 7959 §2.5).
* 4.08 Request Entity Incomplete: the device lost its partial state (e.g. it rebooted): start again at 0.
* 4.13 Request Entity Too Large: the package cannot fit; fail with the device's Size1 if it gave one.

`push_blocks()` only sees a `send_block(num, more, szx, chunk)` coroutine, so the logic is independent of aiocoap.
"""

import time
from dataclasses import dataclass

CONTINUE = "2.31"
CHANGED = "2.04"
INCOMPLETE = "4.08"
TOO_LARGE = "4.13"


class RttEstimator:
    """Retransmission timeout from measured round trips (RFC 6298 §2, as CoCoA proposes for CoAP).

    RFC 7252's fixed ACK_TIMEOUT of 2 s is meant for paths nothing is known about. A push sends hundreds of
    exchanges down one path, so after the first answer the timeout follows what the path actually does:
    RTO = SRTT + 4 RTTVAR, clamped to [min_rto, max_rto]. Only exchanges answered before their first
    retransmission could have fired are sampled (Karn's rule: an answer after a retransmission is ambiguous).
    """

    def __init__(self, initial, min_rto=0.25, max_rto=8.0):
        self.rto = initial
        self.min_rto, self.max_rto = min_rto, max_rto
        self.srtt = self.rttvar = None

    def sample(self, rtt, used_rto):
        if rtt >= used_rto:
            return  # a retransmission may have happened: ambiguous sample
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(self.max_rto, max(self.min_rto, self.srtt + 4 * self.rttvar))

    def backoff(self):
        """A whole exchange timed out: the path is worse than estimated."""
        self.rto = min(self.max_rto, self.rto * 2)


class PushFailed(Exception):
    def __init__(self, reason, offset, code=None, size1=None):
        super().__init__(reason)
        self.offset = offset  # bytes the device has acknowledged: resume from here
        self.code = code
        self.size1 = size1


class BlockTimeout(Exception):
    """Raised by send_block when one block's exchange got no answer."""


@dataclass
class BlockAnswer:
    code: str  # "2.31", "2.04", "4.08", ...
    block1: tuple = None  # (num, more, szx) echoed by the device, or None
    size1: int = None


@dataclass
class PushResult:
    total: int
    blocks: int
    block_resends: int
    restarts: int
    seconds: float
    final_code: str
    method: str = "block1"  # or "q-block1" (qpush.py)


async def push_blocks(send_block, data, szx=6, progress=None, offset=0, block_retries=4, max_restarts=2):
    total = len(data)
    if not 0 <= szx <= 6:
        raise ValueError("SZX must be 0..6 (16..1024-byte blocks)")
    size = 1 << (szx + 4)
    offset -= offset % size
    resends = restarts = blocks = 0
    t0 = time.monotonic()
    while True:
        num = offset // size
        chunk = data[offset : offset + size]
        more = offset + len(chunk) < total
        for attempt in range(block_retries + 1):
            try:
                answer = await send_block(num, more, szx, chunk)
            except BlockTimeout:
                if attempt == block_retries:
                    raise PushFailed("block %d unanswered after %d sends" % (num, attempt + 1), offset) from None
                resends += 1
                continue
            if answer.block1 is not None and answer.block1[0] != num and answer.code in (CONTINUE, CHANGED):
                # An answer for another block (e.g. a late duplicate) must not count for this one.
                if attempt == block_retries:
                    raise PushFailed("device keeps acknowledging block %d for block %d" % (answer.block1[0], num), offset)
                resends += 1
                continue
            break
        blocks += 1
        code = answer.code
        if (code == CONTINUE and more) or (code.startswith("2.") and code != CONTINUE and not more):
            offset += len(chunk)
            if progress:
                progress(offset, total)
            if not more:
                return PushResult(total, blocks, resends, restarts, time.monotonic() - t0, code)
            if answer.block1 is not None and answer.block1[2] < szx:
                szx = answer.block1[2]
                size = 1 << (szx + 4)
            continue
        if code == INCOMPLETE and restarts < max_restarts:
            restarts += 1
            offset = 0
            if progress:
                progress(0, total)
            continue
        if code == TOO_LARGE:
            raise PushFailed("device refused the %d-byte package (4.13)%s" % (
                total, ", it accepts at most %d" % answer.size1 if answer.size1 else ""), offset, code, answer.size1)
        raise PushFailed("device answered %s to block %d" % (code, num), offset, code)
