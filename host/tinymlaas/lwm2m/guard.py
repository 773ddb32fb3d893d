"""Puts `frame.check` in front of aiocoap's UDP transport, so malformed datagrams never reach aiocoap."""

import logging

from . import frame

log = logging.getLogger("tinymlaas.lwm2m.guard")


class GuardStats:
    def __init__(self):
        self.accepted = 0
        self.dropped = 0
        self.reset = 0
        self.replied = 0
        self.stripped = 0

    def as_dict(self):
        return dict(vars(self))


def install(context):
    """Wrap every UDP message interface of an aiocoap server context; returns the shared GuardStats."""
    stats = GuardStats()
    for ri in context.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        if mi is None or not hasattr(mi, "datagram_msg_received"):
            continue
        original = mi.datagram_msg_received

        def guarded(data, ancdata, flags, address, _original=original, _mi=mi):
            verdict = frame.check(data)
            if verdict.action == "accept":
                stats.accepted += 1
                if verdict.reason:
                    stats.stripped += 1
                return _original(verdict.data, ancdata, flags, address)
            log.info("%s from %s: %s", verdict.action, address, verdict.reason)
            if verdict.action == "drop":
                stats.dropped += 1
                return None
            if verdict.action == "reset":
                stats.reset += 1
            else:
                stats.replied += 1
            _mi.transport.sendmsg(verdict.data, [], 0, address)
            return None

        mi.datagram_msg_received = guarded
    return stats


def bound_port(context):
    for ri in context.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        if mi is not None and getattr(mi, "transport", None) is not None:
            return mi.transport.get_extra_info("socket").getsockname()[1]
    return None
