"""LwM2M server on aiocoap: registrations, device management, observations and package delivery.

    server = await LwM2MServer("devices.db").start("127.0.0.1", 5683)
    server.devices()                                   # [Registration]
    await server.read("dev1", "/3/0")                  # {(3, 0, 0): "Acme", ...}
    await server.write("dev1", "/1/0/1", 300)
    await server.execute("dev1", "/5/0/2")
    obs = await server.observe("dev1", "/32770/0/10", callback)
    await server.push_package("dev1", blob, progress=print)
    uri = server.offer_package(blob)                   # pull delivery via /5/0/1
    queue = server.subscribe()                         # Event(kind, endpoint, registration)

All device-management calls raise `NotRegistered`, `DeviceUnreachable` or `DeviceError(code)`; what needs the
TinyML object raises `NoTinyMLObject` for a device that does not list it (an ordinary LwM2M device).

This module keeps the registrations (Register, Update, De-register, lifetime expiry), events and the server's
lifecycle; the operations on a device are dm.py's and package delivery is delivery.py's, both mixed into
LwM2MServer.
"""

import asyncio
import logging
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiocoap
from aiocoap.numbers.constants import TransportTuning

from . import guard
from . import oscore
from . import paths as P
from . import values as V
from .coap_site import Root
from .delivery import PackageDelivery
# the device-management errors are dm.py's; callers import them from here
from .dm import DeviceError, DeviceUnreachable  # noqa: F401
from .dm import DeviceManagement, LwM2MError, NoTinyMLObject, NotRegistered
from .objects import TINYML_OBJECT_ID, default_model
from .packages import PackageStore
from .qblock import QBlockPort
from .registration import Registration
from .send import Reports
from .store import Store, is_file_path
from .capability_reads import CapabilityReads

log = logging.getLogger("tinymlaas.lwm2m.server")


@dataclass
class Event:
    kind: str  # registered, updated, deregistered, expired, capabilities; alarm, report (a Send, send.py)
    endpoint: str
    registration: Registration
    data: dict = None  # alarm / report: the stored report (Reports.recent's rows)


EMPTY_ACK_DELAY = 1.0  # s, see start()


async def shutdown_context(context):
    """aiocoap's Context.shutdown, which can raise asyncio's InvalidStateError when an exchange completes while it
    tears the exchanges down (seen at the end of tests, rarely): a server that is stopping must still stop."""
    try:
        await context.shutdown()
    except asyncio.InvalidStateError as e:
        log.warning("CoAP context shutdown raced with a finishing exchange: %r", e)


class LwM2MServer(DeviceManagement, PackageDelivery):
    def __init__(self, db_path=":memory:", model=None, *, read_capabilities=True, sweep_interval=1.0,
                 request_timeout=30.0, public_host=None, packages_dir=None, awake_time=93.0, queue_timeout=3600.0,
                 oscore_dir=None, node=None):
        self.store = Store(db_path, node=node)
        # several nodes on one database (serve --node NAME): registrations another node wrote are looked up there
        self.node = node
        self.shared = node is not None
        self.model = model or default_model()
        self.read_capabilities = read_capabilities
        self.sweep_interval = sweep_interval
        self.request_timeout = request_timeout
        # Queue mode: how long a Q-binding device listens after Register/Update (LwM2M 1.1 suggests the CoAP
        # MAX_TRANSMIT_WAIT, 93 s), and how long a request waits for a sleeping device to wake.
        self.awake_time = awake_time
        self.queue_timeout = queue_timeout
        self._wake = {}  # endpoint -> asyncio.Event set at its next Register/Update
        self.public_host = public_host
        if packages_dir is None and is_file_path(db_path):
            packages_dir = Path(db_path).with_name(Path(db_path).name + ".packages")
        self.packages = PackageStore(packages_dir)
        # OSCORE contexts of the devices that have keys (add_oscore_device); their state (sequence numbers,
        # replay windows) lives beside the database, or in a temporary directory for an in-memory server
        if oscore_dir is None:
            oscore_dir = Path(db_path).with_name(Path(db_path).name + ".oscore") if is_file_path(db_path) \
                else Path(tempfile.mkdtemp(prefix="tinymlaas-oscore-"))
        self.oscore = oscore.Contexts(oscore_dir)
        self.context = None
        self.site = None
        self.host = None
        self.port = None
        self.guard = None
        self.guard_stats = None
        self.qblock = None
        self.downloads = {}  # sha -> {hostinfo: highest byte served}, for pull-delivery progress
        self._regs = {}  # endpoint -> Registration
        self._by_id = {}  # registration id -> endpoint
        self._observations = {}  # endpoint -> set(Observation)
        self._subscribers = []
        self._callbacks = []
        self._tasks = set()
        self._sweeper = None
        self._push_offsets = {}  # (endpoint, sha) -> acknowledged bytes, for resumable pushes
        self._block1_only = set()  # endpoints that refused Q-Block1 since they registered
        # the first read of each device's TinyML object: a bounded number at once, retried with backoff
        self.capability_reads = CapabilityReads(self)
        self.capability_jobs = []  # f(endpoint, caps) -> job(tx): written in the capabilities' transaction
        self.reports = Reports(self.store.db)  # what devices sent to /dp (LwM2M Send): alarms, reports
        for row in self.store.devices():
            self._adopt(row)

    def _adopt(self, row):
        """Take a registration from the database row (at start, or one another node of the group wrote)."""
        reg = Registration(
            endpoint=row["endpoint"], id=row["registration"], address=row["address"], lifetime=row["lifetime"],
            lwm2m_version=row["lwm2m_version"], binding=row["binding"], objects=row["objects"],
            registered_at=row["registered_at"], updated_at=row["updated_at"], capabilities=row["capabilities"],
            root_path=row["root_path"], content_formats=row["content_formats"])
        old = self._regs.get(reg.endpoint)
        if old is not None:
            self._by_id.pop(old.id, None)
        self._regs[reg.endpoint] = reg
        self._by_id[reg.id] = reg.endpoint
        return reg

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self, host="127.0.0.1", port=5683):
        # A Register is answered once the writer thread has committed it (with the storm's others): give that
        # up to 1 s before aiocoap sends an empty ACK and a separate response (3 datagrams instead of 1). Still
        # well before the device retransmits (ACK_TIMEOUT 2 s, RFC 7252 §4.8). Process-wide: aiocoap reads it
        # from the class for every request it receives.
        TransportTuning.EMPTY_ACK_DELAY = max(TransportTuning.EMPTY_ACK_DELAY, EMPTY_ACK_DELAY)
        self.site = Root(self)
        self.context = await aiocoap.Context.create_server_context(self.site, bind=(host, port), transports=["udp6"])
        self.guard = guard.install(self.context)
        self.guard_stats = self.guard.stats
        self.qblock = QBlockPort(self, guard.sender(self.context), guard.socket_family(self.context))
        self.guard.intercept = self.qblock.intercept
        guard.enlarge_receive_buffer(self.context)
        self.host, self.port = host, guard.bound_port(self.context) or port
        self._sweeper = asyncio.create_task(self._sweep_expired())
        log.info("LwM2M server on coap://%s:%d", host, self.port)
        return self

    async def stop(self):
        if self._sweeper:
            self._sweeper.cancel()
        for obs in [o for s in self._observations.values() for o in s]:
            obs.cancel()
        for t in list(self._tasks):
            t.cancel()
        if self.context:
            await shutdown_context(self.context)
            self.context = None
        self.store.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    # ---- registrations -----------------------------------------------------------------------------------

    def devices(self):
        return sorted(self._regs.values(), key=lambda r: r.endpoint)

    def find(self, endpoint):
        """The Registration of `endpoint`, or None. One this node has not seen may have registered through
        another node on the same database (docs/nodes.md): it is read from there."""
        reg = self._regs.get(endpoint)
        if reg is None and self.shared:
            row = self.store.device(endpoint=endpoint)
            reg = row and self._adopt(row)
        return reg

    def device(self, endpoint):
        reg = self.find(endpoint)
        if reg is None:
            raise NotRegistered("no registered device %r" % endpoint)
        return reg

    def subscribe(self, maxsize=1000):
        """An asyncio.Queue receiving every Event from now on."""
        q = asyncio.Queue(maxsize)
        self._subscribers.append(q)
        return q

    def on_event(self, callback):
        self._callbacks.append(callback)

    async def reported(self, reg, values):
        """A device's Send, checked by the site: stored (committed), then an `alarm` or `report` event."""
        row = await self.reports.save(reg.endpoint, values)
        log.info("%s from %s: %s", row["kind"], reg.endpoint, row["values"])
        self._emit(row["kind"], reg, row)

    def _emit(self, kind, reg, data=None):
        ev = Event(kind, reg.endpoint, reg, data)
        if kind not in ("capabilities", "alarm", "report") and self.site is not None:
            self.site.registrations_changed()
        for q in self._subscribers:
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                log.warning("event queue full, dropping %s %s", kind, reg.endpoint)
        for cb in self._callbacks:
            try:
                cb(ev)
            except Exception:
                log.exception("event callback failed")

    def _spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def _register(self, fields, remote):
        now = time.time()
        reg_id = secrets.token_hex(4)
        while reg_id in self._by_id:
            reg_id = secrets.token_hex(4)
        reg = Registration(id=reg_id, address=remote.hostinfo, registered_at=now, updated_at=now, remote=remote, **fields)
        self._block1_only.discard(reg.endpoint)  # new firmware may do Q-Block1: probe again
        # Persist first: if the database refuses, the request fails (5.00) and memory still matches the table.
        # The writer thread commits it (with the storm's other registrations) while the loop goes on.
        await self.store.saved(reg, "registered")
        old = self._regs.get(reg.endpoint)
        if old is not None:
            self._drop(old)
        self._regs[reg.endpoint] = reg
        self._by_id[reg.id] = reg.endpoint
        self._woke(reg.endpoint)
        self._emit("registered", reg)
        self._maybe_read_capabilities(reg)
        return reg

    def _registration_by_id(self, reg_id):
        ep = self._known_id(reg_id)
        return self._regs.get(ep) if ep is not None else None

    def _known_id(self, reg_id):
        """Endpoint of a registration id; in a node group also one registered through another node (the balancer
        moved the device here, or this node restarted): its Update is answered 2.04, not 4.04 (no re-registration
        storm when a node goes)."""
        ep = self._by_id.get(reg_id)
        if ep is None and self.shared:
            row = self.store.device(registration=reg_id)
            ep = row and self._adopt(row).endpoint
        return ep

    async def _update(self, reg_id, fields, remote):
        ep = self._known_id(reg_id)
        if ep is None:
            return False
        reg = self._regs[ep]
        objects_changed = "objects" in fields and fields["objects"] != reg.objects
        for k, v in fields.items():
            setattr(reg, k, v)
        reg.updated_at = time.time()
        reg.address, reg.remote = remote.hostinfo, remote  # NAT rebinding: answer where the device is now
        await self.store.saved(reg, "updated")
        self._woke(reg.endpoint)
        self._emit("updated", reg)
        if objects_changed or reg.capabilities is None:
            self._maybe_read_capabilities(reg)
        return True

    async def _deregister(self, reg_id):
        ep = self._known_id(reg_id)
        if ep is None:
            return False
        reg = self._regs[ep]
        self._drop(reg)
        await self.store.deleted(ep, "deregistered")
        self._emit("deregistered", reg)
        return True

    def _drop(self, reg):
        self._regs.pop(reg.endpoint, None)
        self._by_id.pop(reg.id, None)
        for obs in list(self._observations.pop(reg.endpoint, ())):
            obs.cancel()

    async def _sweep_expired(self):
        while True:
            await asyncio.sleep(self.sweep_interval)
            now = time.time()
            for reg in [r for r in self._regs.values() if r.expires_at() < now]:
                if self.shared and self._renewed_elsewhere(reg):
                    continue
                log.info("registration of %s expired", reg.endpoint)
                self._drop(reg)
                await self.store.deleted(reg.endpoint, "expired")
                self._emit("expired", reg)

    def owner_elsewhere(self, endpoint):
        """The other node a device's datagrams reach (so only that node can talk to it), or None. A device
        registered or updated here is ours; else the database says who last heard from it."""
        if not self.shared:
            return None
        row = self.store.device(endpoint=endpoint)
        owner = row and row.get("node")
        if row and owner != self.node and row["updated_at"] > getattr(self._regs.get(endpoint), "updated_at", 0):
            self._adopt(row)
        return owner if owner and owner != self.node else None

    def _renewed_elsewhere(self, reg):
        """In a node group the device may have sent its Updates to another node: the database decides."""
        row = self.store.device(endpoint=reg.endpoint)
        if row is None:
            self._drop(reg)
            return True
        if row["registration"] != reg.id or row["updated_at"] > reg.updated_at:
            self._adopt(row)
            return True
        return False

    def _maybe_read_capabilities(self, reg):
        if self.read_capabilities and reg.has_object(TINYML_OBJECT_ID):
            self.capability_reads.want(reg)

    def tinyml_device(self, endpoint):
        """The registration of a device that lists the TinyML object; NotRegistered or NoTinyMLObject."""
        reg = self.device(endpoint)
        if not reg.has_object(TINYML_OBJECT_ID):
            raise NoTinyMLObject("device %s does not implement the TinyML object (%d)" % (endpoint, TINYML_OBJECT_ID))
        return reg

    async def refresh_capabilities(self, endpoint):
        """fetch_capabilities for callers that go on with the figures they have: None (logged) when the device
        does not answer or has no TinyML object. NotRegistered still raises."""
        self.device(endpoint)
        try:
            return await self.fetch_capabilities(endpoint)
        except LwM2MError as e:
            log.warning("reading capabilities of %s failed: %s", endpoint, e)
            return None

    async def fetch_capabilities(self, endpoint, timeout=None, tuning=None):
        """Read the TinyML object and store it, by resource name, as the device's capabilities. Raises
        NotRegistered, NoTinyMLObject (before any request), DeviceError or DeviceUnreachable. tuning: the CoAP
        retransmission timing of the request (capability_reads.py)."""
        reg = self.tinyml_device(endpoint)
        path = P.check("/%d/0" % TINYML_OBJECT_ID)
        values = (await self.read_answer(endpoint, path, timeout=timeout, tuning=tuning))[2]
        caps = capabilities_from_values(self.model, values)
        if self._regs.get(endpoint) is reg:
            reg.capabilities = caps
            # in one transaction with what listeners store beside them (telemetry's sample): one commit per read
            await self.store.capabilities_saved(endpoint, caps, [j for j in (f(endpoint, caps) for f in self.capability_jobs) if j])
            self._emit("capabilities", reg)
        return caps

    # ---- device management -------------------------------------------------------------------------------


# TinyML resources a whole-instance read returns that are not capabilities (what the device can do, what it runs)
# but learned state: the trainable head (41: K x D floats, KWS 3,152 B) and its statistics (39, 40), which change
# with every sample; the learn routes read them from the device (docs/learning.md)
LEARNED_STATE = frozenset((39, 40, 41))


def capabilities_from_values(model, values):
    """TinyML object values -> {resource name: JSON-able value} (lists for multiple resources), without the
    learned state (LEARNED_STATE)."""
    caps = {}
    for path, value in sorted(values.items()):
        if path[0] == TINYML_OBJECT_ID and len(path) > 2 and path[2] in LEARNED_STATE:
            continue
        res = model.resource(path)
        name = res.name if res else str(path[2])
        if isinstance(value, (bytes, bytearray)):
            value = value.hex()
        elif isinstance(value, V.ObjLink):
            value = str(value)
        if len(path) == 4:
            caps.setdefault(name, []).append(value)
        else:
            caps[name] = value
    return caps
