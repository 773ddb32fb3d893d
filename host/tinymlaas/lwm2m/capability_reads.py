"""The server's first read of each new device's TinyML object (its capabilities), after Register or Update.

A registration storm must not read 1,000 devices at once: the devices (250 share a micropython process in
`fleet emulate`) and the server's loop then answer late and most reads time out (docs/benchmarks.md, "Fleets
at scale"). So at most `concurrency` reads run at a time, and a read that gets no answer is tried again after
2 s, 4 s, 8 s ... (at most `max_retry`, with jitter so retries do not come back in step), not only at the
device's next Update, until it succeeds, the device answers an error, or the registration ends or is replaced.
A queue-mode device that sleeps is waited for without holding a read slot.
"""

import asyncio
import logging
import random

log = logging.getLogger("tinymlaas.lwm2m.server")

CONCURRENCY = 32
FIRST_RETRY = 2.0
MAX_RETRY = 60.0
# One attempt: three CoAP transmissions (at 0, 2-3 and 6-9 s; the exchange ends after 14-21 s), then a new
# request after the backoff. The attempt waits for its exchange to end: aiocoap sends one request at a time to
# a device (NSTART 1), so a retry made while the old exchange still retransmits would only queue behind it.
ACK_TIMEOUT = 2.0
MAX_RETRANSMIT = 2


class CapabilityReads:
    def __init__(self, server, concurrency=CONCURRENCY, first_retry=FIRST_RETRY, max_retry=MAX_RETRY,
                 ack_timeout=ACK_TIMEOUT, max_retransmit=MAX_RETRANSMIT):
        self.server = server
        self.ack_timeout, self.max_retransmit = ack_timeout, max_retransmit
        self.first_retry = first_retry
        self.max_retry = max_retry
        self._slots = asyncio.Semaphore(concurrency)
        self._reading = {}  # endpoint -> (Registration, task): one read loop per registration
        self.retries = 0  # reads tried again after no answer (a behaviour figure for tests and benches)

    def want(self, reg):
        """Read `reg`'s capabilities soon; a read already under way for this same registration is kept."""
        current = self._reading.get(reg.endpoint)
        if current is not None and not current[1].done():
            if current[0] is reg:
                return
            current[1].cancel()  # re-registered: the old registration's read is moot
        self._reading[reg.endpoint] = (reg, self.server._spawn(self._read(reg)))

    def stats(self):
        return {"reading": len(self._reading), "retries": self.retries}

    def _current(self, reg):
        return self.server._regs.get(reg.endpoint) is reg

    async def _read(self, reg):
        from .dm import DeviceUnreachable, LwM2MError, _Tuning

        delay = self.first_retry
        try:
            while self._current(reg):
                await self.server._await_awake(reg)
                async with self._slots:
                    if not self._current(reg):
                        return
                    try:
                        tuning = _Tuning(self.ack_timeout, self.max_retransmit)
                        await self.server.fetch_capabilities(reg.endpoint, timeout=tuning.exchange_bound(),
                                                             tuning=tuning)
                        return
                    except DeviceUnreachable as e:
                        log.warning("reading capabilities of %s failed: %s (again in %.0f s)", reg.endpoint, e, delay)
                    except LwM2MError as e:  # it answered (an error), or has no TinyML object: asking again won't help
                        log.warning("reading capabilities of %s failed: %s", reg.endpoint, e)
                        return
                await asyncio.sleep(delay * random.uniform(0.75, 1.25))
                delay = min(delay * 2, self.max_retry)
                self.retries += 1
        finally:
            current = self._reading.get(reg.endpoint)
            if current is not None and current[0] is reg:
                del self._reading[reg.endpoint]
