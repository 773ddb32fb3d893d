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
"""

import asyncio
import hashlib
import logging
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiocoap
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.optiontypes import BlockOption

from ..errors import UserError
from . import codecs as C
from . import guard
from . import oscore
from . import paths as P
from . import values as V
from .coap_site import Root
from .objects import TINYML_OBJECT_ID, default_model
from .packages import PackageStore
from .qblock import QBlockPort, device_sockaddr
from .qpush import QBlock1Push, Unsupported
from .push import BlockAnswer, BlockTimeout, PushFailed, RttEstimator, push_blocks
from .registration import Registration
from .send import Reports
from .store import Store, is_file_path
from .capability_reads import CapabilityReads

log = logging.getLogger("tinymlaas.lwm2m.server")


class LwM2MError(Exception):
    pass


class NotRegistered(LwM2MError):
    pass


class DeviceUnreachable(LwM2MError):
    pass


class NoTinyMLObject(LwM2MError, UserError):
    """The device did not list the TinyML object (32770): it stays managed, but has no capabilities to read and
    cannot take a model. A UserError too: the CLI and the HTTP API refuse with this reason before doing anything."""


class DeviceError(LwM2MError):
    def __init__(self, code, message=""):
        super().__init__("device answered %s%s" % (code, (": " + message) if message else ""))
        self.code = code


@dataclass
class Event:
    kind: str  # registered, updated, deregistered, expired, capabilities; alarm, report (a Send, send.py)
    endpoint: str
    registration: Registration
    data: dict = None  # alarm / report: the stored report (Reports.recent's rows)


LEGACY_FORMATS = {1541: C.TEXT, 1542: C.TLV, 1544: C.OPAQUE}
EMPTY_ACK_DELAY = 1.0  # s, see start()


def dotted(code):
    return "%d.%02d" % (int(code) >> 5, int(code) & 0x1F)


class _Tuning(TransportTuning):
    """Per-request CoAP timing (RFC 7252 §4.8 allows other values when the path is known)."""

    def __init__(self, ack_timeout, max_retransmit):
        self.ACK_TIMEOUT = ack_timeout
        self.MAX_RETRANSMIT = max_retransmit

    def exchange_bound(self):
        """How long a CON exchange with this timing can last before aiocoap gives up (MAX_TRANSMIT_WAIT, RFC
        7252 §4.8.2), plus slack. Waiting less leaves it running: aiocoap sends nothing else to that device
        until it ends (NSTART 1), so a new request would only queue behind it."""
        return self.ACK_TIMEOUT * (2 ** (self.MAX_RETRANSMIT + 1) - 1) * self.ACK_RANDOM_FACTOR + 1.0


class Observation:
    """A running observation; `cancel()` stops it: the device's next notification, CON or NON, gets a Reset,
    which ends the observation on the device (RFC 7641 §3.6; see guard.py)."""

    def __init__(self, server, endpoint, path, request, token):
        self.server, self.endpoint, self.path = server, endpoint, path
        self._request = request
        self.token = token  # on the wire (the outer token under OSCORE)
        self.task = None
        self.notifications = 0

    def cancel(self):
        if not self._request.observation.cancelled:
            self._request.observation.cancel()
            if self.server.guard is not None:
                self.server.guard.forget(self.token)
        if self.task:
            self.task.cancel()
        self.server._observations.get(self.endpoint, set()).discard(self)

    @property
    def active(self):
        return not self._request.observation.cancelled and self.task is not None and not self.task.done()


async def shutdown_context(context):
    """aiocoap's Context.shutdown, which can raise asyncio's InvalidStateError when an exchange completes while it
    tears the exchanges down (seen at the end of tests, rarely): a server that is stopping must still stop."""
    try:
        await context.shutdown()
    except asyncio.InvalidStateError as e:
        log.warning("CoAP context shutdown raced with a finishing exchange: %r", e)


class LwM2MServer:
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

    def _message(self, reg, code, path, payload=b"", content_format=None, accept=None, query=()):
        msg = Message(code=code, payload=payload)
        root = [s for s in reg.root_path.split("/") if s]
        if reg.remote is not None:
            msg.remote = reg.remote
        else:
            msg.set_request_uri("coap://%s/" % reg.address)
        msg.opt.uri_path = tuple(root) + tuple(str(i) for i in path)
        if content_format is not None:
            msg.opt.content_format = content_format
        if accept is not None:
            msg.opt.accept = accept
        if query:
            msg.opt.uri_query = tuple(query)
        return msg

    async def _await_awake(self, reg):
        """Queue mode (binding with Q, LwM2M 1.1 §6.5): a sleeping device only listens for `awake_time` after
        it last sent a Register or Update. Requests made while it sleeps wait for its next Update (up to
        `queue_timeout`) instead of timing out against a closed radio (leshan#1286)."""
        if "Q" not in reg.binding or time.time() < reg.updated_at + self.awake_time:
            return
        event = self._wake.setdefault(reg.endpoint, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), self.queue_timeout)
        except asyncio.TimeoutError:
            raise DeviceUnreachable("queue-mode device %s did not wake within %.0f s" % (reg.endpoint, self.queue_timeout)) from None

    def _woke(self, endpoint):
        event = self._wake.pop(endpoint, None)
        if event is not None:
            event.set()

    def add_oscore_device(self, keys):
        """From now on `keys.endpoint` talks to this server only under OSCORE (lwm2m/oscore.py)."""
        self.oscore.add(keys)

    async def _exchange(self, reg, msg, timeout=None, handle_blockwise=True):
        await self._await_awake(reg)
        ctx = self.oscore.for_endpoint(reg.endpoint)
        try:
            if ctx is not None:
                return await asyncio.wait_for(self._secured(ctx, msg), timeout or self.request_timeout)
            return await asyncio.wait_for(self.context.request(msg, handle_blockwise=handle_blockwise).response,
                                          timeout or self.request_timeout)
        except (asyncio.TimeoutError, aiocoap.error.NetworkError, aiocoap.error.RequestTimedOut) as e:
            raise DeviceUnreachable("no answer from %s: %s" % (msg.remote.hostinfo, type(e).__name__)) from None

    async def _protected(self, ctx, msg, awaiting=None):
        """Send msg under OSCORE and open the answer. A device that has just booted answers its first request
        with 4.01 and an Echo value (RFC 8613 Appendix B.1.2, RFC 9175): the request goes again, with the Echo
        inside and a new Partial IV. `awaiting(outer) -> outer response` overrides how the answer is awaited (the
        push bounds each exchange by its own timeout)."""
        for attempt in (0, 1):
            outer, request_id = oscore.protect_request(ctx, msg)
            outer.transport_tuning = msg.transport_tuning
            request = self.context.request(outer, handle_blockwise=False)
            resp = oscore.unprotect_response(ctx, await (awaiting(request) if awaiting else request.response),
                                             request_id)
            if attempt or resp.code != Code.UNAUTHORIZED or resp.opt.echo is None:
                return resp
            msg = msg.copy(mid=None)
            msg.opt.echo = resp.opt.echo
        return resp

    async def _secured(self, ctx, msg):
        """One request under OSCORE. Block-wise transfer is inner (inside the ciphertext, RFC 8613 §4.1.3.4), so
        a long response is fetched here block by block, each request protected on its own."""
        resp = await self._protected(ctx, msg)
        payload = resp.payload
        while resp.code.is_successful() and resp.opt.block2 is not None and resp.opt.block2.more:
            b2 = resp.opt.block2
            nxt = msg.copy(mid=None)
            nxt.opt.block2 = BlockOption.BlockwiseTuple(b2.block_number + 1, False, b2.size_exponent)
            resp = await self._protected(ctx, nxt)
            payload += resp.payload
        if resp.code.is_successful():
            resp.payload = payload
            resp.opt.block2 = None
        return resp

    def _check(self, resp):
        if not resp.code.is_successful():
            raise DeviceError(dotted(resp.code), resp.payload[:120].decode("utf-8", "replace"))
        return resp

    def _decode(self, path, resp):
        fmt = resp.opt.content_format
        if fmt is None:
            fmt = C.TEXT if len(path) >= 3 else C.TLV
        # Pre-1.0 LwM2M drafts used 1541 (text), 1542 (TLV) and 1544 (opaque); old clients still send them.
        fmt = LEGACY_FORMATS.get(int(fmt), int(fmt))
        try:
            return C.decode(int(fmt), path, resp.payload, self.model)
        except C.CodecError as e:
            raise DeviceError(dotted(resp.code), "undecodable %s payload: %s" % (fmt, e)) from None

    async def read(self, endpoint, path, fmt=None, timeout=None):
        """Read -> {path tuple: value}. fmt (e.g. C.SENML_CBOR or "tlv") is sent as Accept; without it, the
        data format the device announced (`announced_format`), else no Accept (the device chooses)."""
        return (await self.read_answer(endpoint, path, fmt, timeout))[2]

    async def read_answer(self, endpoint, path, fmt=None, timeout=None, tuning=None):
        """Read -> (content format or None, payload bytes, {path tuple: value}): the answer as the device sent it
        and decoded (the HTTP API shows the bytes on request)."""
        reg = self.device(endpoint)
        path = P.check(path)
        accept = C.content_format(fmt) if fmt is not None else announced_format(reg)
        msg = self._message(reg, Code.GET, path, accept=accept)
        if tuning is not None:
            msg.transport_tuning = tuning
        resp = self._check(await self._exchange(reg, msg, timeout))
        return resp.opt.content_format, resp.payload, self._decode(path, resp)

    async def read_value(self, endpoint, path, fmt=None):
        """Read one resource and return its value."""
        path = P.check(path)
        values = await self.read(endpoint, path, fmt)
        if path not in values:
            raise DeviceError("2.05", "no value for %s in the answer" % P.fmt(path))
        return values[path]

    def _write_format(self, reg, path, values, fmt):
        if fmt is not None:
            return C.content_format(fmt)
        if len(values) == 1 and path in values and len(path) >= 3:
            return C.OPAQUE if isinstance(values[path], (bytes, bytearray)) else C.TEXT
        return values_format(reg)

    async def write(self, endpoint, path, values, fmt=None, replace=True, timeout=None):
        """Write. `values` is a value (for a single resource path) or {path: value}. replace=False sends a
        partial update (POST) instead of a replace (PUT)."""
        reg = self.device(endpoint)
        path = P.check(path)
        if not isinstance(values, dict):
            values = {path: values}
        values = {P.check(k): v for k, v in values.items()}
        fmt = self._write_format(reg, path, values, fmt)
        payload = C.encode(fmt, path, values, self.model)
        msg = self._message(reg, Code.PUT if replace else Code.POST, path, payload, content_format=fmt)
        return dotted(self._check(await self._exchange(reg, msg, timeout)).code)

    async def write_attributes(self, endpoint, path, timeout=None, **attrs):
        """Write-Attributes, e.g. pmin=5, pmax=60, gt=..., lt=..., st=...; None clears one."""
        reg = self.device(endpoint)
        path = P.check(path)
        allowed = {"pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge", "con", "hqmax"}
        bad = set(attrs) - allowed
        if bad:
            raise ValueError("unknown notification attributes %s" % sorted(bad))
        query = [k if v is None else "%s=%s" % (k, v) for k, v in attrs.items()]
        return dotted(self._check(await self._exchange(reg, self._message(reg, Code.PUT, path, query=query), timeout)).code)

    async def execute(self, endpoint, path, args=None, timeout=None):
        reg = self.device(endpoint)
        path = P.check(path)
        if len(path) != 3:
            raise ValueError("Execute needs a resource path /o/i/r")
        payload = args.encode("utf-8") if isinstance(args, str) else (args or b"")
        msg = self._message(reg, Code.POST, path, payload, content_format=C.TEXT if payload else None)
        return dotted(self._check(await self._exchange(reg, msg, timeout)).code)

    async def discover(self, endpoint, path, timeout=None):
        reg = self.device(endpoint)
        path = P.check(path)
        resp = self._check(await self._exchange(reg, self._message(reg, Code.GET, path, accept=C.LINK_FORMAT), timeout))
        try:
            return C.linkformat.decode(resp.payload)
        except C.CodecError as e:
            raise DeviceError(dotted(resp.code), "undecodable Discover answer: %s" % e) from None

    async def create(self, endpoint, path, values, fmt=None, timeout=None):
        reg = self.device(endpoint)
        path = P.check(path)
        fmt = C.content_format(fmt) if fmt is not None else values_format(reg)
        payload = C.encode(fmt, path, {P.check(k): v for k, v in values.items()}, self.model)
        resp = self._check(await self._exchange(reg, self._message(reg, Code.POST, path, payload, content_format=fmt), timeout))
        return resp.opt.location_path

    async def delete(self, endpoint, path, timeout=None):
        reg = self.device(endpoint)
        path = P.check(path)
        return dotted(self._check(await self._exchange(reg, self._message(reg, Code.DELETE, path), timeout)).code)

    async def observe(self, endpoint, path, callback, fmt=None):
        """Observe a path. callback(values, observation) runs for the first answer and every notification;
        callback(None, observation) once when the observation ends (device gone, cancelled by the device)."""
        reg = self.device(endpoint)
        path = P.check(path)
        msg = self._message(reg, Code.GET, path, accept=C.content_format(fmt) if fmt is not None else announced_format(reg))
        msg.opt.observe = 0
        await self._await_awake(reg)
        ctx = self.oscore.for_endpoint(endpoint)
        for attempt in (0, 1):
            sent, request_id = oscore.protect_request(ctx, msg) if ctx is not None else (msg, None)

            def opened(outer, request_id=request_id):
                # the request and every notification under OSCORE (RFC 8613 §4.1.3.5)
                return oscore.unprotect_response(ctx, outer, request_id) if ctx is not None else outer

            request = self.context.request(sent)
            try:
                outer_first = await asyncio.wait_for(request.response, self.request_timeout)
            except (asyncio.TimeoutError, aiocoap.error.NetworkError, aiocoap.error.RequestTimedOut) as e:
                request.observation.cancel()
                raise DeviceUnreachable("no answer to Observe from %s: %s" % (reg.address, type(e).__name__)) from None
            first = opened(outer_first)
            if attempt or first.code != Code.UNAUTHORIZED or first.opt.echo is None:
                break
            request.observation.cancel()  # a device that just booted asks for Echo first (see _protected)
            msg = msg.copy(mid=None)
            msg.opt.echo = first.opt.echo
        if not first.code.is_successful():
            if not request.observation.cancelled:   # aiocoap ends it itself on an error answer
                request.observation.cancel()
            raise DeviceError(dotted(first.code))
        obs = Observation(self, endpoint, path, request, outer_first.token)
        self._observations.setdefault(endpoint, set()).add(obs)
        callback(self._decode(path, first), obs)
        if outer_first.opt.observe is None:
            # The device answered but did not start an observation (RFC 7641 §3.1): nothing more will come.
            request.observation.cancel()
            callback(None, obs)
            return obs

        async def follow():
            try:
                async for note in request.observation:
                    obs.notifications += 1
                    try:
                        values = self._decode(path, self._check(opened(note)))
                    except LwM2MError as e:
                        log.warning("bad notification from %s for %s: %s", endpoint, P.fmt(path), e)
                        continue
                    try:
                        callback(values, obs)
                    except Exception:  # a broken callback must not end the observation
                        log.exception("observation callback for %s %s failed", endpoint, P.fmt(path))
            except Exception as e:  # aiocoap ends observations with an exception (e.g. NotObservable)
                log.info("observation %s %s ended: %s", endpoint, P.fmt(path), e)
            finally:
                self._observations.get(endpoint, set()).discard(obs)
                callback(None, obs)

        obs.task = self._spawn(follow())
        return obs

    def observations(self, endpoint):
        return list(self._observations.get(endpoint, ()))

    # ---- package delivery --------------------------------------------------------------------------------

    async def push_package(self, endpoint, data, progress=None, block_size=1024, resume=True, block_retries=4,
                           ack_timeout=2.0, max_retransmit=4, adaptive=True, min_rto=0.25, path="/5/0/0",
                           q_block=True):
        """Write `data` into /5/0/0 block-wise (Block1, CON). Returns push.PushResult; raises push.PushFailed
        (with .offset) after retries run out. With resume=True a push of the same bytes to the same device
        continues from where the last failed one stopped; a device that lost its state answers 4.08 and the
        transfer restarts from 0.

        Timing: the first block waits `ack_timeout` (RFC 7252's 2 s) before CoAP retransmits it; with
        adaptive=True later blocks use a timeout estimated from the measured round trips (push.RttEstimator,
        never below `min_rto`), so a lost datagram on a fast path costs ~min_rto instead of 2-3 s.

        With q_block=True (under OSCORE too) the push is tried with Q-Block1 first (qpush.py, RFC 9177: up to
        MAX_PAYLOADS blocks in flight); a device that answers 4.02 or nothing to the probe gets Block1 as above,
        and this server remembers that until the device registers again. A Q-Block1 push that failed is resumed
        too, from the device's acknowledged block with the same Request-Tag (qpush.py, 5.)."""
        self.device(endpoint)  # NotRegistered before any work
        path = P.check(path)
        if block_size not in (16, 32, 64, 128, 256, 512, 1024):
            raise ValueError("block size must be a power of two in 16..1024")
        szx = block_size.bit_length() - 5
        key = (endpoint, hashlib.sha256(data).hexdigest())
        offset = self._push_offsets.get(key, 0) if resume else 0
        if q_block and endpoint not in self._block1_only:
            reg = self.device(endpoint)
            await self._await_awake(reg)
            segments = tuple(s for s in reg.root_path.split("/") if s) + tuple(str(i) for i in path)
            qpush = QBlock1Push(self.qblock, device_sockaddr(reg, self.qblock.family), segments, data, szx,
                                ack_timeout=ack_timeout, min_rto=min_rto, progress=progress,
                                max_quiet=max_retransmit + 2, resume=resume,
                                oscore_context=self.oscore.for_endpoint(endpoint))
            try:
                return await qpush.run()
            except Unsupported as e:
                log.info("%s: no Q-Block1 (%s), pushing with Block1", endpoint, e)
                self._block1_only.add(endpoint)
        rtt = RttEstimator(ack_timeout, min_rto=min(min_rto, ack_timeout), max_rto=max(ack_timeout, 8.0))

        async def send_block(num, more, szx_, chunk):
            reg_now = self.device(endpoint)  # follows the device if it re-registers from another address
            msg = self._message(reg_now, Code.PUT, path, bytes(chunk), content_format=C.OPAQUE)
            rto = rtt.rto if adaptive else ack_timeout
            msg.transport_tuning = _Tuning(rto, max_retransmit)
            msg.opt.block1 = BlockOption.BlockwiseTuple(num, more, szx_)
            if num == 0:
                msg.opt.size1 = len(data)
            # Whole-exchange bound: CoAP's MAX_TRANSMIT_WAIT for this timeout (RFC 7252 §4.8.2) plus slack.
            exchange_timeout = rto * ((2 ** (max_retransmit + 1)) - 1) * 1.5 + 1.0
            await self._await_awake(reg_now)
            t0 = time.monotonic()
            ctx = self.oscore.for_endpoint(endpoint)
            try:
                if ctx is not None:  # each block its own protected request (inner Block1, RFC 8613 §4.1.3.4)
                    resp = await self._protected(
                        ctx, msg, awaiting=lambda request: asyncio.wait_for(request.response, exchange_timeout))
                else:
                    resp = await asyncio.wait_for(self.context.request(msg, handle_blockwise=False).response,
                                                  exchange_timeout)
            except (asyncio.TimeoutError, aiocoap.error.NetworkError, aiocoap.error.RequestTimedOut):
                rtt.backoff()
                raise BlockTimeout() from None
            rtt.sample(time.monotonic() - t0, rto)
            b1 = resp.opt.block1
            return BlockAnswer(dotted(resp.code), (b1.block_number, b1.more, b1.size_exponent) if b1 else None,
                               resp.opt.size1)

        def on_progress(done, total):
            self._push_offsets[key] = done
            if progress:
                progress(done, total)

        try:
            result = await push_blocks(send_block, data, szx, on_progress, offset, block_retries)
        except PushFailed as e:
            self._push_offsets[key] = e.offset
            raise
        self._push_offsets.pop(key, None)
        return result

    def offer_package(self, data):
        """Make `data` downloadable (Block2) and return its coap:// URI for /5/0/1 Package URI."""
        sha = self.packages.add(data)
        host = self.public_host or self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = "[%s]" % host
        return "coap://%s:%d/fw/%s" % (host, self.port, sha)

    async def deliver_by_uri(self, endpoint, data):
        """Pull delivery: offer the package and write its URI into /5/0/1; the device fetches it itself."""
        uri = self.offer_package(data)
        await self.write(endpoint, "/5/0/1", uri)
        return uri

    def _note_download(self, sha, served_to, total, who):
        d = self.downloads.setdefault(sha, {})
        d[who] = max(d.get(who, 0), served_to)


MULTI_VALUE_FORMATS = (C.TLV, C.SENML_JSON, C.SENML_CBOR)


def announced_format(reg):
    """The first data format for several values that the device listed in its root link's ct= and this server
    speaks, or None. Requests without an explicit format use it: a device that announced only SenML-JSON gets
    Accept 110, not a TLV or SenML-CBOR it may lack."""
    return next((f for f in reg.content_formats if f in MULTI_VALUE_FORMATS), None)


def values_format(reg):
    """The Content-Format of a Write or Create of several values: the announced format, else TLV for
    LwM2M 1.0 (its mandatory format) and SenML-CBOR for 1.1 and later."""
    return announced_format(reg) or (C.TLV if reg.lwm2m_version == "1.0" else C.SENML_CBOR)


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
