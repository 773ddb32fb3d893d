"""The Service: model catalogue + LwM2M server + selection + deployments, on one database."""

import asyncio
import logging
from pathlib import Path

import numpy as np

from ..cli import UserError
from ..db import migration
from ..lwm2m.server import LwM2MServer
from ..registry import RegistryError
from ..registry.models import golden_bytes
from .anomaly import device_config
from .catalog import Catalog
from .channel import LwM2MChannel
from .deployments import DEFAULT_CONCURRENCY, DeploymentEngine, DeploymentError, DeploymentStore, check_stages
from .heads import DeploymentHeads, check_head, embedding_twins, is_embedding_variant, package_head
from .inference import Inference
from .privacy import ReportingChannel, ResultReporting
from .selection import choose
from .signing import PackageSigning, reported_trust
from .tasks import NodeChannel, RolloutQueue
from .telemetry import DEFAULT_RETENTION_DAYS, Telemetry

log = logging.getLogger("tinymlaas.service")

migration("fleet", 1, """CREATE TABLE device_tags (
    endpoint TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (endpoint, tag))""")

GOLDEN_VECTORS = 3
# Channel fractions the service prunes away, in order, when no variant of a Keras model fits a device.
PRUNE_STEPS = (0.5, 0.75)


def json_key(options):
    import json

    return json.dumps(options, sort_keys=True)


def normalize_capabilities(raw):
    """TinyML object values (keyed by resource name, docs/tinyml-object.md) -> the selection's vocabulary."""
    raw = raw or {}
    key = {k.lower().replace(" ", "_").replace("-", "_"): v for k, v in raw.items()}

    def first(*names, default=None):
        for n in names:
            if key.get(n) not in (None, ""):
                return key[n]
        return default

    ops = first("supported_ops", default="")
    if isinstance(ops, str):
        ops = [o for o in ops.split(",") if o]
    flavour = str(first("kernel_flavour", default="viper"))
    runtime_name = str(first("runtime_name", "runtime", default="tinyml"))
    if runtime_name.startswith("tflm"):
        runtime = "tflm"
    else:
        runtime = "tinyml-c" if flavour.startswith("c") else "tinyml-mpy"
    caps = {
        "runtime": runtime,
        "abi": 1,
        "ops": list(ops),
        "heap_free": int(first("free_heap", default=0) or 0),
        "largest_block": int(first("largest_free_block", "largest_block", default=0) or 0),
        "fs_free": int(first("flash_free", "filesystem_free", default=0) or 0),
        "arch": first("machine", "architecture", default=""),
        "mpy_abi": first("mpy_abi", default=None),
        "coprocessor": flavour == "c-coprocessor",
    }
    rate = first("mac_rate", default=None)
    if rate:
        caps["mac_rate"] = float(rate)
    if first("model_state", default="") == "active":
        # the model the device runs now and the arena it holds: an install unloads it first (selection.py)
        caps["model_sha256"] = str(first("model_sha256", default=""))
        caps["model_arena"] = int(first("arena_bytes", default=0) or 0)
    caps["trust"] = reported_trust(key)  # what signed packages it accepts (docs/tinyml-object.md 24-28)
    return caps


class Service:
    def __init__(self, data_dir, db_url=None, delivery="push", public_host=None, channel_options=None,
                 telemetry_retention_days=DEFAULT_RETENTION_DAYS, node=None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        db_path = db_url or str(self.data_dir / "tinymlaas.db")
        self.catalog = Catalog(db_path, self.data_dir)
        self.registry = self.catalog.registry
        self.db = self.catalog.db
        # One connection for everything: registrations, registry and deployments commit through the same
        # Database, so a deployment row and the registration it refers to are never out of step.
        # signs every package built for a device (docs/manifest.md); keys in DATA/keys (or $TINYMLAAS_KEYS)
        self.signing = PackageSigning(self.db, self.data_dir)
        self.keys = self.signing.keys
        # node: this process's name in a group of nodes on one PostgreSQL (docs/nodes.md); rollouts then run as
        # procrastinate jobs any node of the group claims
        self.node = node
        self.server = LwM2MServer(self.db, packages_dir=self.data_dir / "packages", public_host=public_host,
                                  node=node)
        self.queue = None
        if node is not None:
            if self.db.kind != "postgresql":
                raise UserError("a node group (--node) needs a postgresql:// database the nodes share")
            self.queue = RolloutQueue(self, db_path, node)
        self.deployments = DeploymentStore(self.db)
        self.heads = DeploymentHeads(self.db)     # a deployment's trainable head config (heads.py)
        # a sample of free heap, flash, inference count and latency each time a device's TinyML object is read
        self.telemetry = Telemetry(self.db, telemetry_retention_days)
        self.telemetry.attach(self.server, self._spawn)
        channel = LwM2MChannel(self.server, delivery=delivery, **(channel_options or {}))
        # channel.installed() reads the device's figures right before plan() decides (no separate refresh)
        # the deployment's result-reporting switch goes to each device right before its install (privacy.py)
        self.reporting = ResultReporting(self.db, self.server)
        channel = ReportingChannel(channel, self.reporting)
        if self.queue is not None:
            channel = NodeChannel(channel, self.server, self.queue, self._spawn)
        self.engine = DeploymentEngine(self.deployments, channel, self.plan, rollback_package=self._rollback_package)
        # a device that was offline at its turn in a rollout gets the update when it registers or sends an Update
        self.server.on_event(lambda ev: self._spawn(self.engine.registered(ev.endpoint))
                             if ev.kind in ("registered", "updated") else None)
        # a device that trusts only keys older than the signing key is sent the anchor updates of the rotations
        from .rotation import AnchorPush

        self.anchor_push = AnchorPush(self.server, self.keys, self._spawn).attach()
        self._packages = {}   # (model id, variant id) -> install package: one build per rollout, not per device
        self.inference = Inference(self)
        self._tasks = set()
        self.delivery_progress = {}

    async def start(self, host="127.0.0.1", port=5683):
        await self.server.start(host, port)
        if self.queue is None:
            self._spawn(self.engine.resume_all())
        else:
            # a running deployment whose job is gone (none queued) gets one; a killed node's is retried as stalled
            await self.queue.start()
            for row in self.db.query("SELECT id FROM deployments WHERE state='running' ORDER BY id"):
                await self.queue.defer_deployment(row["id"])
        return self

    async def stop(self):
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        # Let cancelled deliveries unwind before the CoAP context shuts down under them.
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.queue is not None:
            await self.queue.stop()
        await self.server.stop()

    def _spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # -- devices ------------------------------------------------------------------------------------------------
    def device_capabilities(self, endpoint):
        reg = self.server.tinyml_device(endpoint)
        if not reg.capabilities:
            raise UserError("device %s has not reported its TinyML capabilities (object 32770) yet" % endpoint)
        caps = normalize_capabilities(reg.capabilities)
        # before anything is sent: would the device refuse what this service signs (selection adds the reasons)
        caps["signing"] = self.signing.judge(caps)
        return caps

    def tag(self, endpoint, *tags):
        for t in tags:
            self.db.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?) ON CONFLICT DO NOTHING", (endpoint, t))

    def untag(self, endpoint, *tags):
        for t in tags:
            self.db.execute("DELETE FROM device_tags WHERE endpoint=? AND tag=?", (endpoint, t))

    def tags(self, endpoint):
        return [r["tag"] for r in self.db.query("SELECT tag FROM device_tags WHERE endpoint=? ORDER BY tag", (endpoint,))]

    def devices_with_tag(self, tag):
        return [r["endpoint"] for r in self.db.query("SELECT endpoint FROM device_tags WHERE tag=? ORDER BY endpoint", (tag,))]

    async def fresh_capabilities(self, endpoint):
        """The device's capabilities as it reports them now: free heap and flash change with every install and
        collection, and a selection must not decide on figures from the device's registration. A device that does
        not answer keeps the figures it reported last."""
        await self.server.refresh_capabilities(endpoint)
        return self.device_capabilities(endpoint)

    def installed_variant(self, sha256):
        """(model, variant) of the registry whose artifact has this SHA-256 (what a device reports it runs), or
        (None, None) for a blob this registry did not compile."""
        row = sha256 and self.db.query_one("SELECT id, model_id FROM variants WHERE artifact_sha256=? "
                                           "ORDER BY id DESC LIMIT 1", (sha256,))
        if not row:
            return None, None
        return self.registry.model(row["model_id"]), self.registry.variant(row["id"])

    # -- selection ----------------------------------------------------------------------------------------------
    async def explain_device(self, model_name, endpoint, latency_budget_ms=None):
        """explain() on the figures the device reports now."""
        caps = await self.fresh_capabilities(endpoint)
        return self.explain(model_name, endpoint, latency_budget_ms, caps=caps)

    def explain(self, model_name, endpoint, latency_budget_ms=None, caps=None):
        model = self.registry.model(model_name)
        caps = caps or self.device_capabilities(endpoint)
        variants = self.registry.variants(model)
        if not variants:
            raise UserError("model %s has no compiled variants" % model_name)
        best, verdicts = choose(variants, caps, latency_budget_ms)
        return model, caps, best, verdicts

    def plan(self, deployment, endpoint):
        self.reporting.planned(deployment["id"], endpoint)
        model = self.registry.model(deployment["model_id"])
        try:
            caps = self.device_capabilities(endpoint)
        except Exception as e:
            raise DeploymentError(str(e)) from None
        head = self.heads.get(deployment["id"])
        best = self.fitting_variant(model, caps, endpoint, trainable=head is not None)
        variant = best.variant
        key = (model["id"], variant["id"], repr(head))
        installed = (caps.get("trust") or {}).get("sequence", 0)
        if key not in self._packages or self._packages[key][1] <= installed:  # signed again above the device's
            self._packages = {key: self.signed_package(model, variant, installed, head)}   # the latest only
        return variant, self._packages[key][0], model["name"], model["version"]

    def fitting_variant(self, model, caps, endpoint, trainable=False):
        """The Verdict of the variant of `model` chosen for a device with these capabilities, compiling what it
        needs when nothing registered fits: a layer-by-layer twin for a runtime without PATCH, then pruned
        variants. trainable: among the variants with the embedding output (heads.py), compiling those twins of
        the int8 variants first. DeploymentError saying why nothing fits."""
        def variants():
            return [v for v in self.registry.variants(model) if is_embedding_variant(v) == trainable]

        best, verdicts = choose(variants(), caps)
        built, failed, candidates = [], [], []
        if best is None:
            # (what it is once built, what failed if it does not build, (backend, runtime, options))
            if trainable:
                candidates = [("an embedding-output variant", "the embedding-output variant", b)
                              for b in embedding_twins(self.registry.variants(model))]
            extra = {"embedding_output": True} if trainable else {}
            candidates += [("a layer-by-layer variant", "a layer-by-layer variant",
                            ("tmlb-int8", "tinyml-mpy", dict(o, **extra)))
                           for o in self.layerwise_variants(model, verdicts)]
            candidates += [("prune=%s" % o["prune"], "pruning %s" % o["prune"],
                            ("tmlb-int8", "tinyml-mpy", dict(o, **extra))) for o in self.smaller_variants(model)]
        for built_as, failing, build in candidates:
            errors = self.catalog.build(model, [build])
            if errors:
                failed.append("%s failed: %s" % (failing, "; ".join(errors.values())))
                continue
            built.append(built_as)
            best, verdicts = choose(variants(), caps)
            if best is not None:
                break
        if best is None:
            why = "; ".join("variant %s: %s" % (v.variant["id"], ", ".join(v.reasons)) for v in verdicts)
            tried = " (also compiled %s for it)" % ", ".join(built) if built else ""
            raise DeploymentError("no variant of %s fits %s%s: %s" % (model["name"], endpoint, tried,
                                                                   "; ".join([why or "none compiled"] + failed)))
        return best

    def layerwise_variants(self, model, verdicts):
        """Option sets for layer-by-layer twins of int8 variants a device refuses only for their patch-based
        stages (its runtime predates the PATCH op, docs/blob-format.md §12): what the service compiles for it,
        at the cost of the arena the stages saved."""
        have = {json_key(v["options"]) for v in self.registry.variants(model)}
        wanted = []
        for v in verdicts:
            variant = v.variant
            if variant.get("backend") != "tmlb-int8" or (variant.get("options") or {}).get("patches") is False:
                continue
            if v.reasons and all(r == "device runtime lacks op(s) PATCH" for r in v.reasons):
                options = dict(variant.get("options") or {}, patches=False)
                if json_key(options) not in have and options not in wanted:
                    wanted.append(options)
        return wanted

    def smaller_variants(self, model):
        """Option sets for pruned variants not compiled yet, smallest pruning first — what the service compiles
        when no variant of a Keras model (with training data for fine-tuning) fits a device."""
        if model["kind"] != "keras" or not model["metadata"].get("train"):
            return []
        have = {json_key(v["options"]) for v in self.registry.variants(model)}
        steps = [{"quantize": "int8", "prune": f} for f in PRUNE_STEPS]
        return [o for o in steps if json_key(o) not in have]

    def package(self, model, variant, floor=0, head=None):
        """The signed install package of a variant, its sequence number above `floor`."""
        return self.signed_package(model, variant, floor, head)[0]

    def signed_package(self, model, variant, floor=0, head=None):
        """(package bytes, sequence number): signed with the key store's current key (service/signing.py).
        head: a deployment's trainable head config (heads.py), for a variant with the embedding output."""
        blob = self.registry.artifact(variant)
        vectors = golden_bytes(variant) or reference_vectors(blob)
        return self.signing.build(blob, model["name"], model["version"], vectors, variant["runtime"], floor,
                                  anomaly=device_config(variant),
                                  head=package_head(head, variant) if head is not None else None)

    def _rollback_package(self, endpoint, previous):
        model, variant = self.installed_variant((previous or {}).get("sha256"))
        if variant is None:
            return None
        try:  # a rollback is a new signed install: above what the device has now
            floor = (self.device_capabilities(endpoint).get("trust") or {}).get("sequence", 0)
        except Exception:
            floor = 0
        # a head's variant goes back with the head config it was installed with
        head = self.heads.for_variant(variant["id"], endpoint) if is_embedding_variant(variant) else None
        return self.package(model, variant, floor, head), model["name"], model["version"]

    # -- deployments --------------------------------------------------------------------------------------------
    def create_deployment(self, model_name, endpoints=(), canary=(), stages=(100,), concurrency=DEFAULT_CONCURRENCY,
                          max_failed=0.0, soak=0.0, report_results=True, head=None):
        """A staged rollout (deployments.py): `stages` cumulative percentages of the devices, at most `concurrency`
        installs at once on this node, a gate after each stage allowing `max_failed` percent of its devices to
        fail after `soak` seconds. Devices known but offline now are accepted: they get the model when they next
        register. report_results=False: the devices stop sending inference results (privacy.py). head:
        {"kind": softmax|ncm, "lr", "save_every"}: a trainable head on each device (heads.py)."""
        head = check_head(head)
        try:
            model = self.registry.model(model_name)
        except RegistryError as e:
            raise UserError(str(e)) from None
        endpoints = list(dict.fromkeys(endpoints))
        if not endpoints:
            raise UserError("no target devices given")
        if not (isinstance(concurrency, int) and 1 <= concurrency <= 1024):
            raise UserError("concurrency must be a whole number from 1 to 1024")
        if not (0 <= max_failed <= 100) or not (0 <= soak <= 3600):
            raise UserError("max_failed is a percentage (0-100) and soak a number of seconds (0-3600)")
        try:
            stages = check_stages(stages)
        except DeploymentError as e:
            raise UserError(str(e)) from None
        registered = {r.endpoint for r in self.server.devices()}
        unknown = [e for e in endpoints + list(canary) if e not in registered and not self._known_device(e)]
        if unknown:
            raise UserError("unknown device(s): %s (registered: %s)" % (", ".join(unknown[:20]),
                                                                        ", ".join(sorted(registered)[:20]) or "none"))
        for e in endpoints + list(canary):
            if e in registered:   # a device without object 32770 is refused (a UserError) before anything is created
                self.server.tinyml_device(e)
        dep_id = self.deployments.create(model["id"], endpoints, [c for c in canary if c in endpoints], stages,
                                         concurrency, {"max_failed": float(max_failed), "soak": float(soak)})
        self.reporting.set(dep_id, report_results)
        self.heads.set(dep_id, head)
        return dep_id

    def _known_device(self, endpoint):
        """Registered once (its events are kept) or tagged: offline now, it gets the update at its next
        registration."""
        return bool(self.db.query_one("SELECT 1 FROM device_events WHERE endpoint=? LIMIT 1", (endpoint,))
                    or self.db.query_one("SELECT 1 FROM device_tags WHERE endpoint=? LIMIT 1", (endpoint,)))

    def start_deployment(self, dep_id, progress=None):
        def track(endpoint, done, total):
            # Bytes acknowledged per device, for progress displays; kept in memory (the states are in the database).
            self.delivery_progress[(dep_id, endpoint)] = (done, total)
            if progress:
                progress(endpoint, done, total)

        if self.queue is not None:     # a job: whichever node of the group claims it runs the rollout
            return self._spawn(self.queue.defer_deployment(dep_id))
        return self._spawn(self.engine.run(dep_id, track))

    def deployment_view(self, dep_id):
        """A deployment with its per-device state and, for devices being delivered to, bytes done / total."""
        dep = self.deployments.get(dep_id)
        dep["report_results"] = self.reporting.get(dep_id)
        dep["head"] = self.heads.get(dep_id)
        for d in dep["devices"]:
            done_total = self.delivery_progress.get((dep_id, d["endpoint"]))
            d["delivered"] = list(done_total) if done_total else None
        return dep


def reference_vectors(blob, count=GOLDEN_VECTORS, seed=1234):
    """Golden vectors from the NumPy reference executor (bit-exact with TFLite Micro, see docs/verification.md)."""
    from ..blob import format as F
    from ..blob import reference
    from ..blob.reader import parse

    model = parse(blob)
    rng = np.random.default_rng(seed)
    vectors = []
    for _ in range(count):
        ins = []
        for t in (model.tensors[i] for i in model.inputs):
            if t.dtype == F.DTYPE_FLOAT32:
                ins.append(rng.uniform(-1, 1, t.shape).astype(np.float32))
            else:
                ins.append(rng.integers(-128, 128, t.shape, dtype=np.int8))
        outs = reference.run(blob, ins)
        vectors.append(([a.tobytes() for a in ins], [np.asarray(o).tobytes() for o in outs]))
    return vectors
