# Pull delivery with Q-Block2 (RFC 9177): the device keeps up to `slots` blocks of the package in flight instead
# of one, so a lost datagram costs one more request rather than a retransmission timeout per block.
#
# Requests are Non-confirmable GETs carrying one Q-Block2 option per block asked for (M=0); the server answers
# each named block with a NON 2.05 on the same token. The device is the receiver and drives the transfer:
#
# * window: blocks base .. base+slots-1 may be asked for (coap.qblock.Window holds the ones that arrive early);
#   new blocks are asked for when a quarter of the window has opened, so requests are clocked by arrivals and
#   one lost request takes few blocks with it;
# * loss: paths keep order, so a block that arrives tells that every block asked for before it and still missing
#   is lost: those are asked for again at once, without waiting for a timer;
# * timer: when nothing arrives for the receive timeout every missing block of the window is asked for again and
#   the timeout doubles; after NON_MAX_RETRANSMIT quiet timeouts in a row at the full NON_RECEIVE_TIMEOUT the
#   download fails (Update Result 4), as a plain one does. The timeout starts at NON_RECEIVE_TIMEOUT (2 x the endpoint's ACK_TIMEOUT, RFC 9177
#   §7.2) and then follows the measured round trips (RFC 6298: SRTT + 4 RTTVAR, sampled only on blocks asked
#   for once), never below MIN_RTO_MS nor above NON_RECEIVE_TIMEOUT: a lost request on a fast path then costs
#   a fraction of a second, not seconds;
# * negotiation: a server without Q-Block answers the critical option with 4.02 Bad Option (or not at all): then
#   the same package is fetched with plain Block2 (pull.Download), from block 0. A server that answers only the
#   first Q-Block2 option of a request (libcoap 4.3.5) is asked one block per request from then on.
#
# At most `slots` (<= MAX_PAYLOADS) blocks are ever outstanding, and the timeout backs off exponentially, which
# keeps the transfer within RFC 9177 §7's congestion rules. Memory: the Window's arena (slots x block size).
import gc
import time

from coap import block, qblock
from coap import message as cm
from coap.endpoint import Transmission

from . import pull

NON_MAX_RETRANSMIT = 4
PROBES = 2  # unanswered timeouts before the first block, after which plain Block2 is tried instead
MIN_RTO_MS = 100


def fitting_slots(wanted, size):
    """How many of `wanted` window slots of `size` bytes to use: the arena (slots x size) at most a quarter of the
    free heap, at least one slot. Beside a loaded model (esp32 profile) a 10 KB arena can be more than the heap
    spares; with fewer blocks in flight a download is slower on a lossy path, never refused for it."""
    gc.collect()
    return max(1, min(wanted, gc.mem_free() // 4 // size))


class QDownload:
    """Same interface as pull.Download (start, cancel; on_end(None) or on_end(error))."""

    def __init__(self, endpoint, uri, sink, on_end, szx=6, slots=None):
        self.plain = pull.Download(endpoint, uri, sink, on_end, szx)  # checks and resolves the URI
        self.ep = endpoint
        self.uri = uri
        self.addr = self.plain.addr
        self.sink = sink
        self.on_end = on_end
        self.szx = szx
        self.size = block.size(szx)
        wanted = min(slots or getattr(endpoint, "q_window", 0) or qblock.MAX_PAYLOADS, qblock.MAX_PAYLOADS)
        self.slots = fitting_slots(wanted, self.size)
        if self.slots < wanted:
            print("q-block2 window %d blocks, not %d: %d bytes of heap free" % (self.slots, wanted, gc.mem_free()))
        self.token = endpoint.new_token()
        self.window = None
        self.total = None  # blocks in the package, once known (Size2, or a block with M=0)
        self.etag = None
        self.asked_num = [-1] * self.slots  # per slot: block asked for, and the request that asked (serial)
        self.asked_ser = [-1] * self.slots
        self.asked_ms = [0] * self.slots  # when it was asked for; -1 after a second ask (Karn: no RTT sample)
        self.serial = 0
        self.one_each = False  # one Q-Block2 option per request (see _ask)
        self.asked_n = self.got_n = 0  # blocks named by the last _ask, and new blocks since
        self.max_rto = 2 * endpoint.ack_timeout_ms  # NON_RECEIVE_TIMEOUT
        self.base_rto = self.rto = self.max_rto
        self.srtt = self.rttvar = None
        self.deadline = 0
        self.listen = None
        self.quiet = 0  # timeouts in a row without a new block
        self.ended = False
        self.offset = 0
        self.stats = {"requests": 0, "blocks": 0, "duplicates": 0, "timeouts": 0, "fallback": 0, "slots": self.slots}

    # --- driving

    def start(self):
        # One Transmission stands for the whole download in the endpoint's pending list: the endpoint hands it
        # every response on the download's token (any number of them) and its deadline (the receive timeout);
        # after each, _done puts it back. The endpoint needs nothing Q-Block specific.
        self.listen = Transmission(None, self.addr, None, self.token, False, self._done)
        self._ask(list(range(self.slots)))
        self._arm()

    def _arm(self):
        t = self.listen
        t.state, t.response, t.deadline = "pending", None, self.deadline
        if t not in self.ep.pending:
            self.ep.pending.append(t)

    def _done(self, t):
        if self.ended:
            return
        if t.state == "done":
            self._on_response(t.response)
        elif t.state == "timeout":
            self.fire()
        if not self.ended:
            self._arm()

    def cancel(self):
        self._stop()
        self.plain.cancel()

    def _stop(self):
        self.ended = True
        if self.listen in self.ep.pending:
            self.ep.pending.remove(self.listen)
        self.window = None  # the arena goes back to the heap

    def _end(self, err):
        if self.ended:
            return
        self._stop()
        self.on_end(err)

    def _fallback(self):
        self._stop()
        self.stats["fallback"] = 1
        self.plain.start()

    def _ask(self, nums):
        """Ask for blocks `nums`: one request naming them all, or one request each for a server that answers
        only the first Q-Block2 option of a request (libcoap 4.3.5 does)."""
        now = time.ticks_ms()
        for n in nums:
            i = n % self.slots
            self.asked_ms[i] = -1 if self.asked_num[i] == n else now
            self.asked_num[i] = n
            self.asked_ser[i] = self.serial
        self.asked_n, self.got_n = len(nums), 0
        for part in ([[n] for n in nums] if self.one_each else [nums]):
            req = cm.Message(cm.NON, cm.GET, token=self.token)
            for s in self.plain.segs:
                req.add(cm.URI_PATH, s)
            for q in self.plain.qs:
                req.add(cm.URI_QUERY, q)
            for n in part:
                req.add(qblock.Q_BLOCK2, block.encode(n, False, self.szx))
            self.stats["requests"] += 1
            self.ep.send(self.addr, req)
        self.serial += 1
        self.deadline = time.ticks_add(time.ticks_ms(), self.rto)

    def _top(self):
        """One past the highest block the window may ask for now."""
        top = (self.window.base if self.window else 0) + self.slots
        return top if self.total is None else min(top, self.total)

    def fire(self):
        """Endpoint timer: nothing arrived for NON_RECEIVE_TIMEOUT."""
        self.stats["timeouts"] += 1
        if self.rto >= self.max_rto:
            # only timeouts at the full receive timeout count toward giving up: the short ones a fast path's
            # RTT estimate sets are quick re-asks, so the download fails after the same silence (~9 s at the
            # default ACK_TIMEOUT) whatever the estimate, not after 3 s on a loopback path that stalls
            self.quiet += 1
        if self.serial == 1 and self.got_n == 1 and self.asked_n > 1:
            # the first request, for a window's worth, brought its first block only: this server answers one
            # Q-Block2 option per request (libcoap 4.3.5), so from now on one request asks for one block
            self.one_each = True
        if self.window is None and self.quiet > PROBES:
            self._fallback()  # no answer at all: a server that drops what it does not know, or a dead path
            return
        if self.quiet > NON_MAX_RETRANSMIT:
            self._end(pull.PullError(pull.RESULT_CONNECTION_LOST, "no block for %d timeouts" % self.quiet))
            return
        self.rto = min(self.rto * 2, 4 * self.max_rto)
        base = self.window.base if self.window else 0
        self._ask([n for n in range(base, self._top()) if not (self.window and self.window.has(n))])

    # --- receiving

    def _on_response(self, msg):
        try:
            self._take(msg)
        except Exception as e:  # PullError, or the sink's WriteError (it has set State and Update Result)
            self._end(e)

    def _take(self, msg):
        raw = msg.opt(qblock.Q_BLOCK2)
        if msg.code == cm.BAD_OPTION and self.window is None:
            self._fallback()
            return
        if msg.code == cm.NOT_FOUND:
            raise pull.PullError(pull.RESULT_INVALID_URI, "%s: 4.04 Not Found" % self.uri)
        if msg.code != cm.CONTENT:
            raise pull.PullError(pull.RESULT_CONNECTION_LOST, "answered %s" % cm.code_str(msg.code))
        if raw is None:
            if self.window is None:
                self._fallback()  # a 2.05 without Q-Block2: let the plain path make sense of it
            return
        try:
            num, more, szx = block.decode(raw)
        except block.BlockError as e:
            raise pull.PullError(pull.RESULT_CONNECTION_LOST, str(e))
        n = len(msg.payload)
        if szx != self.szx or (more and n != self.size) or n > self.size:
            if self.window is None:
                self._fallback()  # another block size than asked: the plain path follows it
                return
            raise pull.PullError(pull.RESULT_CONNECTION_LOST, "unexpected block %d (SZX %d, %d bytes)" % (num, szx, n))
        etag = msg.opt(cm.ETAG)
        size2 = msg.uint(cm.SIZE2)
        if self.window is None:
            self.etag = etag
            self.sink.begin(size2)
            self.window = qblock.Window(self.slots, self.size)
        elif etag != self.etag:
            raise pull.PullError(pull.RESULT_CONNECTION_LOST, "the package changed during the download (ETag)")
        if size2 is not None and self.total is None:
            self.total = max(1, -(-size2 // self.size))
        if not more:
            self.total = num + 1
        w = self.window
        if not w.put(num, msg.payload, self._write):
            self.stats["duplicates"] += 1
            return
        self.stats["blocks"] += 1
        self.got_n += 1
        self.quiet = 0
        self._sample(num)
        self.rto = self.base_rto
        self.deadline = time.ticks_add(time.ticks_ms(), self.rto)
        if self.total is not None and w.base >= self.total:
            self.window = w = None  # the arena back to the heap before the package check, which needs it
            self.sink.finish()
            self._end(None)
            return
        self._next(num)

    def _sample(self, num):
        i = num % self.slots
        if self.asked_num[i] != num or self.asked_ms[i] < 0:
            return
        rtt = time.ticks_diff(time.ticks_ms(), self.asked_ms[i])
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt // 2
        else:
            self.rttvar = (3 * self.rttvar + abs(self.srtt - rtt)) // 4
            self.srtt = (7 * self.srtt + rtt) // 8
        self.base_rto = min(self.max_rto, max(MIN_RTO_MS, self.srtt + 4 * self.rttvar))

    def _write(self, num, chunk):
        self.sink.write(num * self.size, chunk)
        self.offset = num * self.size + len(chunk)

    def _next(self, num):
        """After block `num` arrived: ask again for the blocks it shows lost, and for newly opened ones."""
        w = self.window
        i = num % self.slots
        order = (self.asked_ser[i], num) if self.asked_num[i] == num else None
        again, fresh = [], []
        for n in range(w.base, self._top()):
            if w.has(n):
                continue
            j = n % self.slots
            if self.asked_num[j] != n:
                fresh.append(n)
            elif order is not None and (self.asked_ser[j], n) < order:
                again.append(n)
        if again or len(fresh) * 4 >= self.slots or (fresh and self.total is not None and fresh[-1] == self.total - 1):
            self._ask(again + fresh)
