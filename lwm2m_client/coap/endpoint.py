# CoAP over UDP for one device: CON retransmission with exponential back-off (RFC 7252 §4.2), duplicate
# detection by message ID with the cached response re-sent (§4.5), piggybacked and separate responses.
#
# Single-threaded by design (a microcontroller main loop): `poll()` waits for one datagram or the next
# retransmission deadline; `request()` drives `poll()` until its exchange completes, so requests from the
# server that arrive meanwhile (e.g. a Read during a pull download) are still answered.
#
# RAM: one receive buffer per datagram (RECV_BYTES), DEDUP_ENTRIES cached responses (each <= one block plus
# headers), one retained copy of each outstanding CON message.
#
# OSCORE (RFC 8613): after secure(context), with a coap.oscore.Context, every request and response this endpoint
# exchanges is protected with it, whoever the peer (the device talks to its LwM2M server only, and pull downloads
# come from that server too). Requests sent are protected in start() and their responses opened with the
# RequestId kept on the Transmission; a response that does not open fails the exchange like a timeout. Requests
# received must carry the OSCORE option: they are opened before any other check, handled in plain, and their
# response protected; anything else is refused with an unprotected error response and not handled. Duplicates
# get the cached (protected) response again without being opened a second time (the replay window would refuse
# them). Empty ACK/RST/ping stay unprotected (§4.2).
#
# Echo (RFC 9175) both ways, for replay windows lost in a reboot (RFC 8613 Appendix B.1.2): after boot the replay
# window knows nothing, so the first protected request is answered with a protected 4.01 carrying an Echo value
# and not handled; the request repeated with that Echo inside is handled and starts the window. A protected 4.01
# with Echo to one of our requests (an aiocoap server after its reboot) makes us repeat the request with it.

import os
import select
import time

from . import message as cm

_OSCORE = 9  # option numbers; coap.oscore itself is only imported where a context is configured
_ECHO = 252  # RFC 9175; Class E

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
                 "on_done", "request_id", "plain", "request")

    def __init__(self, data, addr, mid, token, con, on_done, request_id=None):
        self.data = data
        self.request = True  # False for a CON response (a notification): its empty ACK ends the exchange
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
        self.request_id = request_id  # OSCORE: the RequestId its response is opened with
        self.plain = None  # OSCORE: the request before protection, to repeat it with an Echo


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
        self.security = None  # an OSCORE Context: all traffic protected (see the top of this file); use secure()
        self.echo = None  # OSCORE: the Echo value a request must carry before the replay window is trusted
        self.request_id = None  # OSCORE: the RequestId of the request the handler is answering (for Observe)
        self.stats = {"rx": 0, "tx": 0, "retransmit": 0, "duplicate": 0, "malformed": 0, "refused": 0}
        # accept(addr) -> bool: who may send requests (and pings) here; the others are dropped unanswered before
        # the duplicate cache, so a flood from elsewhere cannot evict the server's entries (lwm2m/client.py)
        self.accept = None

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

    def secure(self, context, echo=True):
        """Protect all traffic with the OSCORE Context `context`. `echo`: check the freshness of the first
        request after boot with Echo (RFC 8613 B.1.2); without it an old request replayed after a reboot would
        be accepted."""
        self.security = context
        self.echo = os.urandom(8) if echo else None

    def protect(self, msg, request_id=None):
        """(message to send, RequestId or None): with OSCORE, a request protected, or a response to the
        request `request_id` protected (always with its own Partial IV: the responses that come here outside
        the request/response path are notifications). Empty messages are sent as they are."""
        if self.security is None or msg.code == cm.EMPTY:
            return msg, None
        if msg.is_request():
            return self.security.protect_request(msg)
        return self.security.protect_response(msg, request_id, True), None

    def send(self, addr, msg, request_id=None):
        """Send without waiting (NON, ACK, RST). Returns the message ID used. `request_id`: the OSCORE
        RequestId a response (notification) answers."""
        msg = self.protect(msg, request_id)[0]
        if msg.type == cm.NON:
            msg.mid = self.next_mid()
            self.sent_non.append((msg.mid, addr, msg.token))
            if len(self.sent_non) > 8:
                self.sent_non.pop(0)
        self._sendto(cm.encode(msg), addr)
        return msg.mid

    def start(self, addr, msg, on_done=None, request_id=None):
        """Send a CON message (or a NON request) and track it until it is answered or times out.
        `request_id`: for a CON notification, the OSCORE RequestId of its Observe request."""
        plain = msg
        msg, rid = self.protect(msg, request_id)
        msg.mid = self.next_mid()
        con = msg.type == cm.CON
        t = Transmission(cm.encode(msg), addr, msg.mid, msg.token, con, on_done, rid)
        t.request = plain.is_request()
        if rid is not None:
            t.plain = plain
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
        t.data = t.plain = None  # release the retained copies
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
        elif (msg.code == cm.EMPTY or msg.is_request()) and self.accept is not None and not self.accept(addr):
            self.stats["refused"] += 1
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
                        if not t.token or not t.request:  # a ping, or a CON notification: done
                            self._finish(t, "done")
                elif msg.token == t.token:
                    self._response(t, msg)
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
                self._response(t, msg)
                return
        if msg.type == cm.CON:
            self._reset(addr, msg.mid)  # unexpected response: reject

    def _response(self, t, msg):
        """The response to t arrived: open it (OSCORE) and complete the exchange. A response that does not
        open fails the exchange like a timeout; one with a bad option is ignored (the exchange goes on)."""
        if t.request_id is not None:
            try:
                msg = self.security.unprotect_response(msg, t.request_id)
            except ValueError as e:  # OscoreError
                print("oscore: response to message %d refused: %s" % (t.mid, e))
                self._finish(t, "timeout")
                return
            echo = msg.opt(_ECHO)
            if msg.code == cm.UNAUTHORIZED and echo is not None and t.plain.opt(_ECHO) is None:
                self._repeat(t, echo)
                return
        if cm.bad_option(msg) is None:
            self._finish(t, "done", msg)

    def _repeat(self, t, echo):
        """The server asked for an Echo (RFC 9175 §2.3): the same request again with it, as a new exchange
        under the same token and Transmission."""
        t.plain.add(_ECHO, echo)
        msg, t.request_id = self.security.protect_request(t.plain)
        msg.mid = t.mid = self.next_mid()
        t.data = cm.encode(msg)
        t.state = "pending"
        t.retries = 0
        t.timeout = self.ack_timeout_ms if t.con else self.separate_timeout_ms
        t.deadline = time.ticks_add(time.ticks_ms(), t.timeout)
        self._sendto(t.data, t.addr)

    def _open(self, req):
        """(plain request, RequestId) to handle, (None, unprotected error response) for a request that is
        refused, or (response, RequestId) to protect and send without handling (Echo)."""
        from . import oscore

        if req.opt(_OSCORE) is None:
            return None, cm.Message(code=cm.UNAUTHORIZED, payload=b"OSCORE required")
        try:
            req, rid = self.security.unprotect_request(req)
        except oscore.OscoreError as e:
            print("oscore: request refused:", e)
            return None, cm.Message(code=e.code, payload=e.reason.encode())
        if self.echo is not None:
            if req.opt(_ECHO) != self.echo:
                resp = cm.Message(code=cm.UNAUTHORIZED)  # not handled; answered protected (RFC 9175 §2.4)
                resp.add(_ECHO, self.echo)
                return resp, rid
            # fresh: the window starts at this request; what it saw before the Echo check is forgotten
            self.echo = None
            self.security.replay = oscore.ReplayWindow()
            self.security.replay.mark(cm.uint_value(rid.piv))
        return req, rid

    def _answer(self, req, addr, rid):
        bad = cm.bad_option(req)
        if bad is not None:
            return cm.Message(code=cm.BAD_OPTION, payload=b"option %d" % bad)
        if req.opt(cm.PROXY_URI) is not None or req.opt(cm.PROXY_SCHEME) is not None:
            return cm.Message(code=cm.PROXYING_NOT_SUPPORTED)
        if not self.handler:
            return cm.Message(code=cm.NOT_FOUND)
        self.request_id = rid
        try:
            return self.handler(req, addr)
        except MemoryError:
            return cm.Message(code=cm.INTERNAL_SERVER_ERROR, payload=b"out of memory")
        except Exception as e:  # a bug in one handler must not take the device off the network
            return cm.Message(code=cm.INTERNAL_SERVER_ERROR, payload=str(e).encode()[:64])
        finally:
            self.request_id = None

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
        token, mtype = req.token, req.type
        rid = None
        fresh_piv = False
        if self.security is not None:
            req, rid = self._open(req)
        if req is None:
            resp, rid = rid, None  # refused: answered unprotected, not handled
        elif not req.is_request():
            # asked for an Echo: answered protected, not handled. The request may be an old one replayed, so the
            # answer takes a Partial IV of its own: the request's nonce may have sealed a response before
            resp = req
            fresh_piv = True
        else:
            resp = self._answer(req, addr, rid)
        if resp is None:
            return
        if rid is not None:
            try:
                resp = self.security.protect_response(resp, rid, fresh_piv)
            except Exception as e:  # sequence numbers exhausted or their store unwritable: say nothing
                print("oscore: cannot protect the response:", e)
                return
        resp.token = token
        if mtype == cm.CON:
            resp.type = cm.ACK
            resp.mid = entry[1]
        else:
            resp.type = cm.NON
            resp.mid = self.next_mid()
        data = cm.encode(resp)
        entry[2] = data
        self._sendto(data, addr)
