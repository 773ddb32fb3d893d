# CoAP over UDP for one device: CON retransmission with exponential back-off (RFC 7252 §4.2), duplicate
# detection by message ID with the cached response re-sent (§4.5), piggybacked and separate responses.
#
# Single-threaded by design (a microcontroller main loop): `poll()` waits for one datagram or the next
# retransmission deadline; `request()` drives `poll()` until its exchange completes, so requests from the
# server that arrive meanwhile (e.g. a Read during a pull download) are still answered.
#
# RAM: one receive buffer per datagram (RECV_BYTES), DEDUP_ENTRIES cached responses (each <= one block plus
# headers), one retained copy of each outstanding CON message.

import os
import select
import time

from . import message as cm

RECV_BYTES = 1280  # 1024-byte block + token + options, with margin (RFC 7252 §4.6 suggests 1152)
DEDUP_ENTRIES = 8


class Timeout(Exception):
    pass


class Reset(Exception):
    pass


def _rand16():
    b = os.urandom(2)
    return (b[0] << 8) | b[1]


class Transmission:
    """One outgoing message we expect an answer to (CON: an ACK; request: a response)."""

    __slots__ = ("data", "addr", "mid", "token", "con", "deadline", "timeout", "retries", "state", "response",
                 "on_done")

    def __init__(self, data, addr, mid, token, con, on_done):
        self.data = data
        self.addr = addr
        self.mid = mid
        self.token = token
        self.con = con
        self.deadline = 0
        self.timeout = 0
        self.retries = 0
        self.state = "pending"  # pending -> acked (empty ACK, waiting for separate response) -> done/timeout/reset
        self.response = None
        self.on_done = on_done


class Endpoint:
    def __init__(self, sock, handler=None, ack_timeout_ms=2000, ack_random_factor=1.5, max_retransmit=4,
                 separate_timeout_ms=93000, exchange_lifetime_ms=247000):
        self.sock = sock
        self.handler = handler  # handler(request Message, addr) -> response Message (code/options/payload)
        self.ack_timeout_ms = ack_timeout_ms
        self.ack_random_factor = ack_random_factor
        self.max_retransmit = max_retransmit
        self.separate_timeout_ms = separate_timeout_ms
        self.exchange_lifetime_ms = exchange_lifetime_ms
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self._mid = _rand16()
        self.pending = []
        self.recent = []  # [addr, mid, encoded response or None, expiry ticks] for duplicate detection
        self.sent_non = []  # (mid, addr, token) of recent NON messages, so a Reset can be matched to them
        self.on_reject = None  # on_reject(addr, token): the peer answered our message with Reset
        self.stats = {"rx": 0, "tx": 0, "retransmit": 0, "duplicate": 0, "malformed": 0}

    def next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    @staticmethod
    def new_token(n=4):
        return os.urandom(n)

    # --- sending

    def _sendto(self, data, addr):
        self.stats["tx"] += 1
        self.sock.sendto(data, addr)

    def send(self, addr, msg):
        """Send without waiting (NON, ACK, RST). Returns the message ID used."""
        if msg.type == cm.NON:
            msg.mid = self.next_mid()
            self.sent_non.append((msg.mid, addr, msg.token))
            if len(self.sent_non) > 8:
                self.sent_non.pop(0)
        self._sendto(cm.encode(msg), addr)
        return msg.mid

    def start(self, addr, msg, on_done=None):
        """Send a CON message (or a NON request) and track it until it is answered or times out."""
        msg.mid = self.next_mid()
        con = msg.type == cm.CON
        t = Transmission(cm.encode(msg), addr, msg.mid, msg.token, con, on_done)
        # initial timeout: random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR]
        r = os.urandom(1)[0] / 255
        t.timeout = int(self.ack_timeout_ms * (1 + (self.ack_random_factor - 1) * r))
        if not con:
            t.timeout = self.separate_timeout_ms
        t.deadline = time.ticks_add(time.ticks_ms(), t.timeout)
        self.pending.append(t)
        self._sendto(t.data, addr)
        return t

    def request(self, addr, msg, timeout_ms=None):
        """Send a request and return its response Message. Raises Timeout or Reset."""
        if not msg.token and msg.is_request():
            msg.token = self.new_token()
        t = self.start(addr, msg)
        limit = None if timeout_ms is None else time.ticks_add(time.ticks_ms(), timeout_ms)
        while t.state in ("pending", "acked"):
            self.poll(100)
            if limit is not None and time.ticks_diff(limit, time.ticks_ms()) <= 0:
                self._finish(t, "timeout")
        if t.state == "reset":
            raise Reset("peer reset message %d" % t.mid)
        if t.state != "done":
            raise Timeout("no response to message %d" % t.mid)
        return t.response

    # --- receiving

    def poll(self, timeout_ms):
        """Handle at most one datagram, waiting up to timeout_ms (less if a retransmission is due)."""
        now = time.ticks_ms()
        wait = timeout_ms
        for t in self.pending:
            d = time.ticks_diff(t.deadline, now)
            if d < wait:
                wait = d if d > 0 else 0
        got = False
        if self.poller.poll(wait):
            data, addr = self.sock.recvfrom(RECV_BYTES)
            self.stats["rx"] += 1
            self.receive(data, addr)
            got = True
        self._deadlines()
        return got

    def _deadlines(self):
        now = time.ticks_ms()
        for t in list(self.pending):
            if time.ticks_diff(t.deadline, now) > 0:
                continue
            if t.state == "pending" and t.con and t.retries < self.max_retransmit:
                t.retries += 1
                t.timeout *= 2  # exponential back-off
                t.deadline = time.ticks_add(now, t.timeout)
                self.stats["retransmit"] += 1
                self._sendto(t.data, t.addr)
            else:
                self._finish(t, "timeout")

    def _finish(self, t, state, response=None):
        t.state = state
        t.response = response
        t.data = None  # release the retained copy
        if t in self.pending:
            self.pending.remove(t)
        if t.on_done:
            t.on_done(t)

    def _reset(self, addr, mid):
        self._sendto(cm.encode(cm.Message(cm.RST, cm.EMPTY, mid)), addr)

    def receive(self, data, addr):
        try:
            msg = cm.decode(data)
        except cm.FormatError as e:
            self.stats["malformed"] += 1
            if e.con and e.mid is not None and not e.silent:
                self._reset(addr, e.mid)  # reject (RFC 7252 §4.2); nothing else changes
            return
        if msg.type in (cm.ACK, cm.RST):
            self._on_ack_or_reset(msg, addr)
        elif msg.code == cm.EMPTY:
            if msg.type == cm.CON:
                self._reset(addr, msg.mid)  # CoAP ping
        elif msg.is_request():
            self._on_request(msg, addr)
        else:
            self._on_separate_response(msg, addr)

    def _on_ack_or_reset(self, msg, addr):
        for t in self.pending:
            if t.mid == msg.mid and t.addr == addr:
                if msg.type == cm.RST:
                    self._finish(t, "reset")
                    if self.on_reject:
                        self.on_reject(addr, t.token)
                elif msg.code == cm.EMPTY:
                    if t.state == "pending":  # a separate response will follow
                        t.state = "acked"
                        t.deadline = time.ticks_add(time.ticks_ms(), self.separate_timeout_ms)
                        if not t.token:
                            self._finish(t, "done")
                elif msg.token == t.token and not cm.bad_option(msg):
                    self._finish(t, "done", msg)
                return
        if msg.type == cm.RST and self.on_reject:
            for mid, a, token in self.sent_non:
                if mid == msg.mid and a == addr:
                    self.on_reject(addr, token)
                    return

    def _on_separate_response(self, msg, addr):
        for t in self.pending:
            if t.token == msg.token and t.addr == addr and msg.token:
                if msg.type == cm.CON:
                    self._sendto(cm.encode(cm.Message(cm.ACK, cm.EMPTY, msg.mid)), addr)
                if cm.bad_option(msg) is not None:
                    return
                self._finish(t, "done", msg)
                return
        if msg.type == cm.CON:
            self._reset(addr, msg.mid)  # unexpected response: reject

    def _on_request(self, req, addr):
        now = time.ticks_ms()
        for e in self.recent:
            if e[1] == req.mid and e[0] == addr and time.ticks_diff(e[3], now) > 0:
                self.stats["duplicate"] += 1
                if e[2] is not None:
                    self._sendto(e[2], addr)  # same answer again, the handler does not run twice
                return
        entry = [addr, req.mid, None, time.ticks_add(now, self.exchange_lifetime_ms)]
        self.recent.append(entry)
        if len(self.recent) > DEDUP_ENTRIES:
            self.recent.pop(0)
        bad = cm.bad_option(req)
        if bad is not None:
            resp = cm.Message(code=cm.BAD_OPTION, payload=b"option %d" % bad)
        elif req.opt(cm.PROXY_URI) is not None or req.opt(cm.PROXY_SCHEME) is not None:
            resp = cm.Message(code=cm.PROXYING_NOT_SUPPORTED)
        else:
            try:
                resp = self.handler(req, addr) if self.handler else cm.Message(code=cm.NOT_FOUND)
            except MemoryError:
                resp = cm.Message(code=cm.INTERNAL_SERVER_ERROR, payload=b"out of memory")
            except Exception as e:  # a bug in one handler must not take the device off the network
                resp = cm.Message(code=cm.INTERNAL_SERVER_ERROR, payload=str(e).encode()[:64])
        if resp is None:
            return
        resp.token = req.token
        if req.type == cm.CON:
            resp.type = cm.ACK
            resp.mid = req.mid
        else:
            resp.type = cm.NON
            resp.mid = self.next_mid()
        data = cm.encode(resp)
        entry[2] = data
        self._sendto(data, addr)
