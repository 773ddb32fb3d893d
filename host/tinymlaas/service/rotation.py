"""Key rotation reaching devices: after a device reports its TinyML object, the service sends it the anchor updates
(signing/anchors.py) it needs to trust the current signing key, one Write of /32770/0/29 each, in sequence order,
then reads the object again so that the selection sees the new anchors.

A device that trusts the current key, that reports no signed-package state (a client from before signed
packages), or that no chain of updates reaches (it trusts none of the keys that signed one: provision it again)
gets nothing. An update the device refuses ends the catch-up for that report; it is logged with the device's
reason and tried again at its next report.
"""

import logging

from ..signing import anchors
from .core import normalize_capabilities

log = logging.getLogger(__name__)

ANCHOR_UPDATE_PATH = "/32770/0/29"


def _reported(caps):
    """(key ids, anchor sequence) a device reported, or None when it reports no signed-package state."""
    key = {k.lower().replace(" ", "_"): v for k, v in (caps or {}).items()}
    trust = normalize_capabilities(caps).get("trust")
    if trust is None:
        return None
    return trust["key_ids"], int(key.get("anchor_sequence") or 0)


class AnchorPush:
    def __init__(self, server, keys, spawn):
        self.server = server
        self.keys = keys
        self.spawn = spawn
        self.sent = {}  # endpoint -> anchor updates it took (for tests and the console)

    def attach(self):
        self.server.on_event(lambda ev: self.spawn(self.catch_up(ev.endpoint)) if ev.kind == "capabilities"
                             else None)
        return self

    def pending(self, endpoint):
        """The update envelopes the device still needs, from what it reported last ([] when none or unknown)."""
        reg = self.server.find(endpoint)
        reported = _reported(reg.capabilities) if reg is not None else None
        if reported is None:
            return []
        return anchors.chain_for(self.keys, *reported)

    async def catch_up(self, endpoint):
        """Send the device the updates it needs; -> how many it took."""
        chain = self.pending(endpoint)
        taken = 0
        for envelope in chain:
            try:
                await self.server.write(endpoint, ANCHOR_UPDATE_PATH, envelope)
            except Exception as e:  # a refusal (4.03 + reason), a timeout, the device gone
                log.warning("anchor update to %s refused or lost: %s", endpoint, e)
                break
            taken += 1
        if taken:
            self.sent[endpoint] = self.sent.get(endpoint, 0) + taken
            log.info("%s took %d anchor update(s): now trusts key %s", endpoint, taken, self.keys.current_kid())
            await self.server.refresh_capabilities(endpoint)
        return taken
