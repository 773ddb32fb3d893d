"""Puts `frame.check` in front of aiocoap's UDP transport, so malformed datagrams never reach aiocoap, and makes
a cancelled observation end on the device at its next notification.

Cancelling (RFC 7641 §3.6): the client forgets the token and answers the next notification with a Reset, which
tells the device to stop. aiocoap 0.4 does neither in time: a cancelled request keeps its token until the next
notification arrives (that one is still acknowledged, aiocoap#92), and a Non-confirmable response for an unknown
token is ignored without a word (RFC 7252 §4.3 allows a Reset), so a device notifying NON went on for ever.
Here `Guard.forget(token)` makes the very next response on that token unknown to aiocoap's message layer (it
answers a CON one with a Reset), and every NON response that matches no request is answered with a Reset of
its Message ID (which also ends observations a restarted server no longer knows). The explicit cancel, a GET
with Observe = 1, is not sent: lwm2m-node-lib 1.4.0 never answers one (an empty ACK, then nothing) and files it
as one more observer.

It also keeps one peer's ICMP error from failing a request to another. aiocoap turns on IP_RECVERR, and Linux
then mirrors a "port unreachable" (a device that went away: killed, rebooted onto a new port, re-mapped by a
NAT) into the socket's pending error as well as its error queue; the next sendmsg, to whichever peer, fails
with ECONNREFUSED without sending, consuming that error, and aiocoap files it against the peer being sent to:
a live device's request ended in NetworkError (CI, a signed-install test: the killed board's old port, then an
infer to its new one). `Guard` sends once more when a send fails that way; the peer that really is gone answers
its own datagrams with ICMP again, which aiocoap reads from the error queue and reports for that peer.
"""

import errno
import logging
import socket
from collections import OrderedDict

from aiocoap.numbers.types import NON

from . import frame

log = logging.getLogger("tinymlaas.lwm2m.guard")

# errors a send can fail with that belong to an earlier datagram's ICMP (ip(7) IP_RECVERR): sent again
STALE_SEND_ERRORS = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN)
SEND_ATTEMPTS = 4  # one pending error per attempt; a peer that is gone fails every one
MAX_FORGOTTEN = 4096  # cancelled tokens remembered until their device's next notification (oldest dropped)
RECEIVE_BUFFER = 4 << 20  # bytes: a registration storm of a few thousand datagrams waits here, not dropped


class GuardStats:
    def __init__(self):
        self.accepted = 0
        self.dropped = 0
        self.reset = 0
        self.replied = 0
        self.stripped = 0
        self.unmatched = 0  # NON responses (notifications) that no request awaits, answered with a Reset
        self.resent = 0  # sends that failed on another datagram's ICMP error and went again

    def as_dict(self):
        return dict(vars(self))


class Guard:
    def __init__(self):
        self.stats = GuardStats()
        self._forgotten = OrderedDict()  # token -> None
        self.intercept = None  # intercept(data, address) -> True when it took the datagram (qblock.QBlockPort)

    def forget(self, token):
        """From now on a response with this token (a cancelled observation's notification) is answered with a
        Reset, Confirmable or not."""
        self._forgotten[bytes(token)] = None
        while len(self._forgotten) > MAX_FORGOTTEN:
            self._forgotten.popitem(last=False)

    def _wrap_token_manager(self, ri, unmatched):
        original = ri.process_response  # aiocoap's TokenManager interface: True when a request took the response

        def process_response(response):
            matched = original(response)
            if response.token in self._forgotten:
                del self._forgotten[response.token]
                matched = False  # the cancelled request saw it and let the token go; the sender gets a Reset
            if not matched and response.mtype == NON:
                unmatched.append(response.mid)
            return matched

        ri.process_response = process_response

    def _wrap_transport(self, mi, unmatched):
        original = mi.datagram_msg_received
        stats = self.stats

        def guarded(data, ancdata, flags, address):
            verdict = frame.check(data)
            if verdict.action == "accept":
                stats.accepted += 1
                if verdict.reason:
                    stats.stripped += 1
                if self.intercept is not None and self.intercept(verdict.data, address):
                    return None
                unmatched.clear()
                result = original(verdict.data, ancdata, flags, address)  # aiocoap dispatches synchronously
                while unmatched:
                    stats.unmatched += 1
                    log.info("Reset for a NON response from %s that no request awaits", address)
                    mi.transport.sendmsg(frame.reset(unmatched.pop()), [], 0, address)
                return result
            log.info("%s from %s: %s", verdict.action, address, verdict.reason)
            if verdict.action == "drop":
                stats.dropped += 1
                return None
            if verdict.action == "reset":
                stats.reset += 1
            else:
                stats.replied += 1
            mi.transport.sendmsg(verdict.data, [], 0, address)
            return None

        mi.datagram_msg_received = guarded

    def _wrap_send(self, mi):
        transport = mi.transport
        sock, report = transport.get_extra_info("socket"), transport.sendmsg
        stats = self.stats

        def sendmsg(data, ancdata, flags, address):
            for _ in range(SEND_ATTEMPTS - 1):
                try:
                    sock.sendmsg((data,), ancdata, flags, address)
                    return
                except OSError as e:
                    if e.errno not in STALE_SEND_ERRORS:
                        break
                    stats.resent += 1
            report(data, ancdata, flags, address)  # the last attempt: aiocoap's own, which reports an error

        transport.sendmsg = sendmsg


def install(context):
    """Wrap every UDP message interface of an aiocoap context and its token manager; returns the Guard."""
    guard = Guard()
    for ri in context.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        if mi is None or not hasattr(mi, "datagram_msg_received") or not hasattr(ri, "process_response"):
            continue
        unmatched = []  # Message IDs of the NON responses no request took, while one datagram is dispatched
        guard._wrap_token_manager(ri, unmatched)
        guard._wrap_transport(mi, unmatched)
        if getattr(mi, "transport", None) is not None and mi.transport.get_extra_info("socket") is not None:
            guard._wrap_send(mi)
    return guard


def sender(context):
    """send(data, address) on the context's UDP socket, or None."""
    for ri in context.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        if mi is not None and getattr(mi, "transport", None) is not None:
            return lambda data, address, t=mi.transport: t.sendmsg(data, [], 0, address)
    return None


def socket_family(context):
    for sock in _sockets(context):
        return sock.family
    return socket.AF_INET6


def _sockets(context):
    for ri in context.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        if mi is not None and getattr(mi, "transport", None) is not None:
            yield mi.transport.get_extra_info("socket")


def bound_port(context):
    for sock in _sockets(context):
        return sock.getsockname()[1]
    return None


def enlarge_receive_buffer(context, size=RECEIVE_BUFFER):
    """Ask for `size` bytes of UDP receive buffer on the context's sockets. Linux's default (~208 KB) holds about
    200 datagrams, and a fleet that registers at once sends more before the loop reads one: 592 of 1,000 Registers
    were dropped and retransmitted 2-3 s later (docs/fleet.md). The kernel grants at most net.core.rmem_max."""
    for sock in _sockets(context):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError as e:
            log.warning("cannot enlarge the UDP receive buffer: %s", e)
            continue
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports twice the size
        if granted < size:
            log.info("UDP receive buffer %d bytes (asked %d; raise net.core.rmem_max for more)", granted, size)
