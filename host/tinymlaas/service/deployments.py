"""Deployments: install a model on devices in a staged rollout — stages by percentage of the fleet, several
devices at once within each, a health gate after each stage that halts the rollout and rolls it back.

    canary ─► 1 % ─► 10 % ─► 50 % ─► 100 %        each stage: up to `concurrency` installs at once on this node,
              gate     gate    gate    gate         then its gate (failed self-tests, devices that do not come back,
                                                    inference errors) passes, or halts and rolls back

Every state change is written to the database (deployment_store.py) before the next step starts, so a service
killed mid-rollout resumes where it stopped (`resume_all`): the stage it was in, each device's state read back
from the device. Per-device states:

    queued ─► delivering ─► verifying ─► active ─► failed         (gone or inference errors at its stage's gate)
       │  ▲        │             └──────► failed        (device self-test failed; device kept its previous model)
       │  │        └────────────────────► failed        (delivery error, device gone)
       │  └─ waiting   (offline at its turn: not registered, or queue mode and asleep; installed when it next
       │               registers or sends an Update, even after the rollout completed)
       └─► skipped   (deployment halted before this device's turn)     active ─► rolled_back (halt after a failure)

The device's own golden-vector self-test decides success: "active" is only written once the device reports the
new model's SHA-256 as its active model.
"""

import asyncio
import collections
import logging
import math

from .deployment_store import (DEFAULT_GATES, DEPLOYMENT_STATES, DEVICE_STATES,  # noqa: F401  (re-exported)
                               FINAL_DEVICE_STATES, HEALTH_FAILURES, DeploymentError, DeploymentStore, check_stages)

log = logging.getLogger("tinymlaas.service.deployments")

# Installs at once per deployment on one node. 8 was the fastest of 1/8/32/64 for 1,000 emulated devices sharing
# the node's 2 cores (docs/benchmarks.md, "Rollouts"): more only adds retransmissions while the CPUs are busy.
# Real devices do their installs on their own CPUs and wait on their radios: raise it for them.
DEFAULT_CONCURRENCY = 8
# How long a gate waits for a device to answer "what do you run now?" before it counts it as gone: room for three
# CoAP transmissions (ACK_TIMEOUT 2-3 s, doubling): at 10 % loss each way a 5 s bound counted ~4 % of the healthy
# devices as gone and halted the rollout (docs/benchmarks.md, "Rollouts").
GATE_TIMEOUT = 30.0
# LwM2M object 5 Update Results that mean the device could not activate the model (docs/tinyml-object.md): out of
# RAM (3) or the installer's golden-vector self-test or load failed (8).
SELFTEST_RESULTS = (3, 8)


class DeliveryError(RuntimeError):
    """Raised by a DeviceChannel when a package cannot be delivered or installed; `result` is the LwM2M /5/0/5
    Update Result the device reported, if any."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


class DeviceChannel:
    """How the engine reaches devices (implemented on the LwM2M server by service.channel)."""

    async def install(self, endpoint, package, name, version, progress=None):
        """Deliver `package` and execute the update; return the device's installed-model report (dict with at
        least sha256) once it activated the model, or raise DeliveryError."""
        raise NotImplementedError

    async def installed(self, endpoint):
        """The device's currently active model ({"sha256": ..., "name": ..., "version": ...}) or None."""
        raise NotImplementedError

    async def check(self, endpoint, timeout):
        """installed(), answered within `timeout` seconds (a gate's question), else DeliveryError."""
        try:
            return await asyncio.wait_for(self.installed(endpoint), timeout)
        except asyncio.TimeoutError:
            raise DeliveryError("no answer within %.0f s" % timeout) from None

    def offline(self, endpoint):
        """Why the device cannot be reached now (it gets the update when it next registers), or None."""
        return None

    async def cancel_download(self, endpoint):
        """Cancel a download the device may still be in the middle of (after a restart cut it off)."""


class DeploymentEngine:
    """Drives deployments to completion. `plan(deployment, endpoint)` returns (variant, package bytes, name,
    version) for the device or raises DeploymentError with the reason it cannot get one (nothing fits); it runs
    after channel.installed(), which refreshes what the device reports. `refresh(endpoint)`, an optional
    coroutine, runs before that."""

    def __init__(self, store, channel, plan, rollback_package=None, log=None, refresh=None, gate_timeout=GATE_TIMEOUT):
        self.store = store
        self.channel = channel
        self.plan = plan
        self.rollback_package = rollback_package   # (endpoint, previous dict) -> (package, name, version) or None
        self.refresh = refresh
        self.log = log or (lambda msg: None)
        self.gate_timeout = gate_timeout
        self._limits = {}                           # deployment id -> Semaphore(its concurrency) on this node
        self.in_flight = collections.Counter()      # deployment id -> installs running now
        self.peak = collections.Counter()           # deployment id -> most at once in the current stage
        self._sha = {}                              # variant id -> artifact SHA-256

    def _limit(self, dep):
        sem = self._limits.get(dep["id"])
        if sem is None:
            sem = self._limits[dep["id"]] = asyncio.Semaphore(max(1, int(dep["concurrency"])))
        return sem

    async def run(self, dep_id, progress=None):
        """Run (or resume) a deployment: stage after stage until every device is in a final state (or waits for
        its next registration), or a gate halts it."""
        dep = self.store.header(dep_id)
        if dep["state"] != "running":
            return self.store.get(dep_id)
        for dev in self.store.devices(dep_id, states=("delivering", "verifying")):
            await self._resume_device(dep_id, dev)
        stages = self.store.stages(dep_id)
        for st in stages[dep["stage"]:]:
            k = st["stage"]
            if self.store.state(dep_id) != "running":
                return self.store.get(dep_id)
            self.store.set_stage(dep_id, k, "running")
            self.peak[dep_id] = 0
            devices = self.store.devices(dep_id, stage=k, states=("queued",))
            await asyncio.gather(*(self._worker(dep, d["endpoint"], progress) for d in devices))
            if self.store.state(dep_id) != "running":     # halted by a user while the stage ran
                self.store.set_stage(dep_id, k, "halted", "halted while the stage ran")
                return self.store.get(dep_id)
            last = k == stages[-1]["stage"]
            passed, gate, counts = await self._gate(dep, st, last)
            if not passed:
                self.store.set_stage(dep_id, k, "halted", gate, counts)
                await self._halt(dep, "stage %d (%s) gate: %s" % (k, st["label"], gate))
                return self.store.get(dep_id)
            self.store.set_stage(dep_id, k, "done" if last else "passed", gate, counts)
            self.store.db.execute("UPDATE deployments SET stage=? WHERE id=?", (k + 1, dep_id))
        self._finish(dep_id)
        return self.store.get(dep_id)

    def _finish(self, dep_id, states=("running",)):
        dep = self.store.header(dep_id)
        if dep["state"] not in states:
            return
        devs = self.store.devices(dep_id)
        failed = sum(d["state"] == "failed" for d in devs)
        waiting = sum(d["state"] == "waiting" for d in devs)
        if failed and failed == len(devs):
            self.store.set_deployment(dep_id, "failed", "every device failed")
            return
        why = ["%d failed" % failed] if failed else []
        why += ["%d waiting for their next registration" % waiting] if waiting else []
        self.store.set_deployment(dep_id, "completed", "; ".join(why))

    async def _worker(self, dep, endpoint, progress, expect=("queued",)):
        async with self._limit(dep):
            if self.store.state(dep["id"]) != "running":
                return None
            self.in_flight[dep["id"]] += 1
            self.peak[dep["id"]] = max(self.peak[dep["id"]], self.in_flight[dep["id"]])
            try:
                return await self._deploy_device(dep, endpoint, progress, expect)
            except Exception as e:      # a bug must cost one device, not the rollout (the others run on)
                log.exception("deployment %s: %s", dep["id"], endpoint)
                self.store.set_device(dep["id"], endpoint, "failed", "internal error: %r" % (e,), failure="delivery")
                return False
            finally:
                self.in_flight[dep["id"]] -= 1

    async def _deploy_device(self, dep, endpoint, progress, expect=("queued",)):
        """-> True (active), False (failed) or None (waiting, or another worker took it)."""
        dep_id = dep["id"]
        why = self.channel.offline(endpoint)
        if why:
            self.store.set_device(dep_id, endpoint, "waiting", "%s: it gets the update when it next registers" % why,
                                  expect=("queued", "waiting"))
            return None
        if self.refresh:
            await self.refresh(endpoint)
        try:
            previous = await self.channel.installed(endpoint) or {}
        except DeliveryError as e:
            self.store.set_device(dep_id, endpoint, "failed", "device unreachable: %s" % e, failure="unreachable")
            return False
        try:
            # In a thread: planning may compile a new variant (seconds of TensorFlow) while the LwM2M server keeps
            # answering devices on the event loop.
            variant, package, name, version = await asyncio.to_thread(self.plan, dep, endpoint)
        except DeploymentError as e:
            self.store.set_device(dep_id, endpoint, "failed", str(e), failure="unfit")
            return False
        if not self.store.set_device(dep_id, endpoint, "delivering", "%d bytes" % len(package), expect=expect,
                                     variant_id=variant["id"], previous=previous):
            return None
        self._sha[variant["id"]] = variant["artifact_sha256"]
        try:
            report = await self.channel.install(endpoint, package, name, version,
                                                progress=(lambda done, total: progress(endpoint, done, total)) if progress else None)
        except DeliveryError as e:
            if asyncio.current_task().cancelling():
                # The service is shutting down: the transfer broke because of us, not the device. Leave the
                # state as it is so the next start resumes it.
                raise asyncio.CancelledError() from None
            failure = "selftest" if e.result in SELFTEST_RESULTS else "delivery"
            self.store.set_device(dep_id, endpoint, "failed", str(e), failure=failure)
            return False
        reported = (report or {}).get("sha256", "?")
        self.store.set_device(dep_id, endpoint, "verifying", "device reports %s" % reported[:12])
        expected = variant["artifact_sha256"]
        if (report or {}).get("sha256") != expected:
            self.store.set_device(dep_id, endpoint, "failed",
                                  "device's active model is %s, expected %s: its self-test kept the previous model"
                                  % ((report or {}).get("sha256", "none")[:12], expected[:12]), failure="selftest")
            return False
        self.store.set_device(dep_id, endpoint, "active", "self-test passed on device")
        return True

    def _variant_sha(self, variant_id):
        if variant_id not in self._sha and variant_id is not None:
            row = self.store.db.query_one("SELECT artifact_sha256 FROM variants WHERE id=?", (variant_id,))
            self._sha[variant_id] = row and row["artifact_sha256"]
        return self._sha.get(variant_id)

    async def _resume_device(self, dep_id, dev):
        """After a restart: ask the device what it runs now instead of trusting our last write."""
        endpoint = dev["endpoint"]
        try:
            now = await self.channel.installed(endpoint) or {}
        except DeliveryError as e:
            self.store.set_device(dep_id, endpoint, "queued", "resumed after restart; device unreachable (%s)" % e)
            return
        variant_sha = self._variant_sha(dev["variant_id"])
        if variant_sha and now.get("sha256") == variant_sha:
            self.store.set_device(dep_id, endpoint, "active", "resumed after restart: device already runs the model")
        else:
            if dev["state"] == "delivering":
                # the transfer we left half done still holds the device's receive state, which splits its
                # heap: the fit check before the new delivery would measure that, not the device
                try:
                    await self.channel.cancel_download(endpoint)
                except DeliveryError:
                    pass  # a device that refuses keeps its state; the new transfer replaces it anyway
            self.store.set_device(dep_id, endpoint, "queued", "resumed after restart: delivery restarts")

    # ---- gates ---------------------------------------------------------------------------------------------

    async def _gate(self, dep, st, last):
        """After a stage: let it soak, ask each device the stage made active whether it still runs the model and
        runs it well, then count. -> (passed, what the gate found, counts). The last stage's gate is recorded
        but halts nothing: no stage is left to protect."""
        dep_id, k = dep["id"], st["stage"]
        soak = float(dep["gates"].get("soak") or 0)
        if soak > 0:
            await asyncio.sleep(soak)
        active = self.store.devices(dep_id, stage=k, states=("active",))
        await asyncio.gather(*(self._health(dep, d) for d in active))
        devs = self.store.devices(dep_id, stage=k)
        counts = dict(collections.Counter(d["state"] for d in devs))
        failures = collections.Counter(d["failure"] for d in devs if d["state"] == "failed")
        counts.update({"failed_" + f: n for f, n in failures.items()})
        counts["peak_in_flight"] = self.peak[dep_id]
        tried = sum(1 for d in devs if d["state"] not in ("waiting", "skipped", "queued") and d["failure"] != "unfit")
        bad = sum(n for f, n in failures.items() if f in HEALTH_FAILURES)
        limit = 0.0 if st["label"] == "canary" else float(dep["gates"].get("max_failed") or 0)
        allowed = math.floor(tried * limit / 100 + 1e-9)
        detail = ", ".join("%d %s" % (n, f) for f, n in sorted(failures.items()) if f in HEALTH_FAILURES)
        names = [d["endpoint"] for d in devs if d["state"] == "failed" and d["failure"] in HEALTH_FAILURES]
        if names:
            detail += ": " + ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        gate = "%d of %d failed%s, %d allowed (%g %%)" % (bad, tried, " (%s)" % detail if detail else "", allowed,
                                                           limit)
        if bad <= allowed:
            return True, "passed: " + gate, counts
        if last:
            return True, "over the limit, nothing left to halt: " + gate, counts
        return False, gate, counts

    async def _health(self, dep, dev):
        """A device the stage made active: still there, still running the new model, its model loaded and its
        self-test not failing. A failed check marks it failed (it counts at the gate, and is rolled back with the
        rest if the rollout halts)."""
        endpoint = dev["endpoint"]
        if self.channel.offline(endpoint):   # a queue-mode device gone to sleep: asleep is not gone
            return
        try:
            now = await self.channel.check(endpoint, self.gate_timeout) or {}
        except DeliveryError as e:
            self.store.set_device(dep["id"], endpoint, "failed", "did not come back after the update: %s" % e,
                                  failure="gone")
            return
        expected = self._variant_sha(dev["variant_id"])
        if now.get("sha256") != expected:
            self.store.set_device(dep["id"], endpoint, "failed", "after the update it runs %s, not %s"
                                  % ((now.get("sha256") or "no model")[:12], (expected or "?")[:12]), failure="gone")
        elif now.get("state") not in (None, "active") or str(now.get("self_test") or "").startswith("fail"):
            self.store.set_device(dep["id"], endpoint, "failed", "model state %s, self-test %s"
                                  % (now.get("state"), now.get("self_test") or "-"), failure="inference")

    # ---- halting and rolling back ----------------------------------------------------------------------------

    async def _halt(self, dep, reason):
        dep_id = dep["id"]
        self._skip_pending(dep_id, reason)
        # "halted" once the rollback is over: whoever waits for the end sees the devices back on their model
        self.store.set_deployment(dep_id, "running", "halting, rolling back: " + reason)
        await self._roll_back(dep, reason)
        self.store.set_deployment(dep_id, "halted", reason)

    def _skip_pending(self, dep_id, reason):
        for dev in self.store.devices(dep_id, states=("queued", "waiting")):
            self.store.set_device(dep_id, dev["endpoint"], "skipped", "deployment halted: " + reason,
                                  expect=("queued", "waiting"))

    async def _roll_back(self, dep, reason, devices=None):
        """Reinstall the previous model on `devices` (default: every device the deployment made active),
        `concurrency` at once. -> {endpoint: outcome}."""
        if devices is None:
            # and those whose model misbehaved at a gate; not those gone (nothing to reach)
            devices = [d for d in self.store.devices(dep["id"], states=("active", "failed"))
                       if d["state"] == "active" or d["failure"] == "inference"]
        sem = self._limit(dep)
        done = {}

        async def one(dev):
            async with sem:
                done[dev["endpoint"]] = await self._reinstall_previous(dep["id"], dev, reason)

        await asyncio.gather(*(one(d) for d in devices))
        return done

    async def _reinstall_previous(self, dep_id, dev, reason):
        """Put back the model `dev` ran before this deployment: -> its new state, or None when it ran no model
        this registry has (it keeps the new one)."""
        back = self.rollback_package(dev["endpoint"], dev["previous"]) if self.rollback_package else None
        if back is None:
            return None
        package, name, version = back
        try:
            await self.channel.install(dev["endpoint"], package, name, version)
            self.store.set_device(dep_id, dev["endpoint"], "rolled_back",
                                  "reinstalled %s %s after: %s" % (name, version, reason))
            return "rolled_back"
        except DeliveryError as e:
            self.store.set_device(dep_id, dev["endpoint"], "failed", "rollback failed: %s" % e, failure="rollback")
            return "failed"

    def halt(self, dep_id, reason):
        """Stop a running deployment (a user's decision): devices not started yet are skipped; those being
        installed finish first (each worker looks at the deployment's state before it starts a device)."""
        if self.store.state(dep_id) != "running":
            raise DeploymentError("deployment %s is %s, not running" % (dep_id, self.store.state(dep_id)))
        self._skip_pending(dep_id, reason)
        self.store.set_deployment(dep_id, "halted", reason)
        return self.store.get(dep_id)

    async def rollback(self, dep_id, reason):
        """Reinstall the previous model on every device this (finished or halted) deployment made active;
        {endpoint: what happened}."""
        dep = self.store.header(dep_id)
        if dep["state"] == "running":
            raise DeploymentError("deployment %s is still running: halt it first" % dep_id)
        active = self.store.devices(dep_id, states=("active",))
        if not active:
            raise DeploymentError("deployment %s made no device active: nothing to roll back" % dep_id)
        done = await self._roll_back(dep, reason, active)
        self.store.set_deployment(dep_id, dep["state"], "rolled back: " + reason)
        return {ep: state or "kept: it ran no model this registry has before" for ep, state in done.items()}

    # ---- devices that come back --------------------------------------------------------------------------

    async def registered(self, endpoint):
        """The device registered or sent an Update: install what it waits for (oldest deployment first)."""
        for dep_id in self.store.waiting_for(endpoint):
            dep = self.store.header(dep_id)
            if dep["state"] == "completed":    # its stages are over: install it, then count again
                async with self._limit(dep):
                    await self._deploy_device(dep, endpoint, None, expect=("waiting",))
                self._finish(dep_id, states=("completed",))
            else:
                await self._worker(dep, endpoint, None, expect=("waiting",))

    async def resume_all(self):
        for row in self.store.db.query("SELECT id FROM deployments WHERE state='running' ORDER BY id"):
            await self.run(row["id"])
