"""The deployment engine's view of devices, implemented on the LwM2M server (object 5 + the TinyML object)."""

import asyncio
import time

from ..lwm2m.server import DeviceError, LwM2MError
from .deployments import DeliveryError, DeviceChannel

FW_INSTANCE = "/5/0"
FW_STATE = (5, 0, 3)
FW_RESULT = (5, 0, 5)
FW_UPDATE = "/5/0/2"
FW_URI = "/5/0/1"
# LwM2M object 5 Update Result codes (OMA-TS-LightweightM2M Core, object 5 resource 5).
UPDATE_RESULTS = {
    0: "initial value", 1: "firmware updated successfully", 2: "not enough flash memory for the package",
    3: "out of RAM during download", 4: "connection lost during download", 5: "integrity check failure",
    6: "unsupported package type", 7: "invalid URI", 8: "firmware update failed", 9: "unsupported protocol",
}
STATE_IDLE, STATE_DOWNLOADING, STATE_DOWNLOADED, STATE_UPDATING = 0, 1, 2, 3


class LwM2MChannel(DeviceChannel):
    def __init__(self, server, delivery="push", timeout=180.0, poll=0.1, ack_timeout=2.0, max_retransmit=4):
        self.server = server
        self.delivery = delivery          # "push" (Block1 to /5/0/0) or "pull" (/5/0/1 Package URI + Block2)
        self.timeout = timeout
        self.poll = poll
        # CoAP timing of each pushed block (RFC 7252 defaults); a deployment on a known-fast link may shorten them.
        self.ack_timeout = ack_timeout
        self.max_retransmit = max_retransmit

    async def installed(self, endpoint, timeout=None):
        """One read of the TinyML object, kept as the device's capabilities too (the plan that follows and the
        listings see the figures of now)."""
        try:
            caps = await asyncio.wait_for(self.server.fetch_capabilities(endpoint), timeout)
        except LwM2MError as e:
            raise DeliveryError(str(e)) from None
        except asyncio.TimeoutError:
            raise DeliveryError("no answer from %s within %.0f s" % (endpoint, timeout)) from None
        if not caps.get("Model SHA256"):
            return {}
        return {"name": caps.get("Model Name"), "version": caps.get("Model Version"), "sha256": caps["Model SHA256"],
                "state": caps.get("Model State"), "self_test": caps.get("Self Test Result")}

    async def check(self, endpoint, timeout):
        return await self.installed(endpoint, timeout=timeout)

    def offline(self, endpoint):
        reg = self.server.find(endpoint)
        if reg is None:
            return "not registered"
        if "Q" in reg.binding and time.time() >= reg.updated_at + self.server.awake_time:
            return "queue mode, asleep"
        return None

    async def _state(self, endpoint):
        """(update state, update result) in one read of the object 5 instance."""
        values = await self.server.read(endpoint, FW_INSTANCE)
        try:
            return int(values[FW_STATE]), int(values[FW_RESULT])
        except (KeyError, TypeError, ValueError):
            raise DeliveryError("the device's /5/0 lacks its State or Update Result") from None

    async def _wait_state(self, endpoint, wanted, what):
        """Poll the update state until it is one of `wanted`: at `poll` seconds at first, then less often (an
        activation takes a fraction of a second to seconds), so many installs at once cost few reads."""
        deadline = time.monotonic() + self.timeout
        pause = self.poll
        while True:
            state, result = await self._state(endpoint)
            if state in wanted:
                return state, result
            if state == STATE_IDLE and result not in (0, 1):
                raise DeliveryError("%s: device reports update result %d (%s)"
                                    % (what, result, UPDATE_RESULTS.get(result, "unknown")), result)
            if time.monotonic() > deadline:
                raise DeliveryError("%s: timed out after %.0f s in state %d" % (what, self.timeout, state))
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    async def cancel_download(self, endpoint):
        """Write an empty Package URI (LwM2M: cancels a download and resets object 5 to Idle), so a device whose
        transfer a stopped service left half done frees what it holds for it before it is measured again."""
        try:
            await self.server.write(endpoint, FW_URI, "")
        except LwM2MError as e:
            raise DeliveryError(str(e)) from None

    async def install(self, endpoint, package, name, version, progress=None):
        try:
            if self.delivery == "pull":
                await self.server.deliver_by_uri(endpoint, package)
            else:
                await self.server.push_package(endpoint, package, progress=progress, ack_timeout=self.ack_timeout,
                                               max_retransmit=self.max_retransmit)
                # A device that checks the package before it answers the last block is Downloaded now: Execute at
                # once. One that is still checking answers 4.05 (Update is allowed only when Downloaded), then wait.
                try:
                    await self.server.execute(endpoint, FW_UPDATE)
                    executed = True
                except DeviceError as e:
                    if e.code != "4.05":
                        raise
                    executed = False
            if self.delivery == "pull" or not executed:
                await self._wait_state(endpoint, (STATE_DOWNLOADED,), "download")
                await self.server.execute(endpoint, FW_UPDATE)
            state, result = await self._wait_state(endpoint, (STATE_IDLE,), "update")
        except LwM2MError as e:
            raise DeliveryError(str(e)) from None
        except Exception as e:   # push.PushFailed and friends carry the reason in their message
            if isinstance(e, DeliveryError):
                raise
            raise DeliveryError("delivery failed: %s" % e) from None
        if result != 1:
            raise DeliveryError("update result %d (%s)" % (result, UPDATE_RESULTS.get(result, "unknown")), result)
        # what the device runs, its free flash and heap changed: listings and the next selection see it now
        return await self.installed(endpoint)
