# The LwM2M 1.1 client: registration interface (Register, Update, De-register, re-register on 4.04 or when
# the lifetime lapses) and the device management interface (Read, Write, Execute, Discover, Write-Attributes,
# Observe/Cancel) on object, instance and resource paths, over one CoAP endpoint. Reads, observations and
# notifications are in reads.py, writes (Block1 streaming into sinks) in writes.py: the Client class has both.
import gc
import time

import hal
from coap import message as cm
from coap.endpoint import Reset, Timeout

from . import content
from . import objects as ob
from . import observe
from .reads import Reads
from .writes import Writes

RETRY_MIN_MS = 1000  # registration retry back-off
RETRY_MAX_MS = 60000


class RegistrationError(Exception):
    pass


def _copy(v):
    """A new object equal to v: a duplicate-cache field (a received address: bytes, or (host, port) on some
    ports; a message ID; an encoded response)."""
    if isinstance(v, tuple):
        return tuple(_copy(x) for x in v)
    if isinstance(v, str):
        return v.encode().decode()
    if v is None or isinstance(v, int):
        return v
    return bytes(memoryview(v))


# What the client imports only for a transfer (a Q-Block push or pull) and drops at a model swap
TRANSFER_MODULES = ("lwm2m.qupload", "lwm2m.qpull", "coap.qblock")


class Client(Reads, Writes):
    def __init__(self, endpoint, server_addr, endpoint_name, lifetime=300, binding="U", queue=False):
        self.ep = endpoint
        endpoint.handler = self.handle
        endpoint.on_reject = self._rejected
        endpoint.accept = self.peer_ok
        self.server = server_addr
        self.name = endpoint_name
        self.lifetime = lifetime
        self.binding = binding
        self.objects = {}
        self.location = None  # Location-Path segments from the 2.01 Created of Register
        self.registered_ms = 0
        self.observations = []
        self.attributes = observe.Attributes()
        self.upload = None
        self.qupload = None  # a Q-Block1 transfer (lwm2m/qupload.py)
        self.jobs = []  # work deferred until after the response has been sent (Execute, pull download)
        self.update_due = False
        self.after_update = None  # run once the next Register/Update is answered (lwm2m/send.py after a 4.01)
        self.retry_at = time.ticks_ms()
        self.retry_ms = RETRY_MIN_MS
        self.reg_inflight = False
        self.confirmable_every = 10  # every n-th notification is CON, so a vanished observer is detected
        # The representation being read block-wise: later blocks come from this snapshot, so that a reader
        # never joins blocks of two different encodings (values such as Free Heap change between requests).
        self.snapshot = None  # (addr, path, fmt, payload, etag)
        self._etag = 0

    # --- objects

    def add(self, obj):
        obj.client = self
        self.objects[obj.oid] = obj
        return obj

    def defer(self, fn):
        self.jobs.append(fn)

    # --- heap, around a model swap

    def shed(self):
        """Drop the caches a swap of models needs the heap of: the block-wise read snapshot, all duplicate cache
        entries but the newest (the Execute that started the swap may still be retransmitted), a finished Q-Block1
        push (kept for repeats of its last block) and the Q-Block receivers' code, imported again by the next
        transfer. Imported during a transfer, their code sits wherever the transfer left the allocator, often
        inside the free block the next model needs (esp32 profile, measured: 82.5 KB largest free block after
        updates with it kept, 84.9 KB dropped, as after boot)."""
        self.snapshot = None
        if self.qupload is not None and self.qupload.final is not None:
            self.qupload = None
        if self.qupload is None:
            hal.unload(*TRANSFER_MODULES)
        self.ep.recent = self.ep.recent[-1:]

    def drop_transfers(self):
        """A cancelled download (empty Package URI): abort a block-wise body still coming in and let go of what
        it holds, as after an update."""
        self.abort_transfers()
        self.shed()

    def settle(self):
        """After the new model is in place: move what is left of the caches down beside it, then collect. They
        were allocated wherever the allocator stood while the package streamed in, often inside the free block
        the next model needs; copies made right after a collection take the lowest free holes instead, and the
        originals become garbage."""
        gc.collect()
        self.ep.recent = [[_copy(x) for x in e] for e in self.ep.recent]
        gc.collect()

    def links(self):
        # no ct=: TLV is what a server assumes anyway, and servers that take ct= there take only some formats
        # (one widely used C server answers 4.00 to ct=11542, forever); a reader who wants another asks with Accept
        parts = ['</>;rt="oma.lwm2m"']
        for oid in sorted(self.objects):
            if oid == 0:
                continue  # the Security object is never reported to a server
            obj = self.objects[oid]
            if obj.version:
                parts.append("</%d>;ver=%s" % (oid, obj.version))
            for iid in obj.instances():
                parts.append("</%d/%d>" % (oid, iid))
        return ",".join(parts)

    # --- registration interface

    def _register_msg(self):
        msg = cm.Message(cm.CON, cm.POST, token=self.ep.new_token())
        msg.add(cm.URI_PATH, "rd")
        for q in ("ep=" + self.name, "lt=%d" % self.lifetime, "lwm2m=1.1", "b=" + self.binding):
            msg.add(cm.URI_QUERY, q)
        msg.add(cm.CONTENT_FORMAT, content.LINK)
        msg.payload = self.links().encode()
        return msg

    def _update_msg(self, send_objects=False):
        msg = cm.Message(cm.CON, cm.POST, token=self.ep.new_token())
        for seg in self.location:
            msg.add(cm.URI_PATH, seg)
        msg.add(cm.URI_QUERY, "lt=%d" % self.lifetime)
        if send_objects:
            msg.add(cm.CONTENT_FORMAT, content.LINK)
            msg.payload = self.links().encode()
        return msg

    def _registered(self, resp):
        """Apply a Register answer; raise RegistrationError unless it is 2.01 with a Location-Path."""
        if resp.code != cm.CREATED:
            raise RegistrationError("register answered %s" % cm.code_str(resp.code))
        loc = resp.opts(cm.LOCATION_PATH)
        if not loc:
            raise RegistrationError("register answer has no Location-Path")
        self.location = [bytes(s).decode() for s in loc]
        self.registered_ms = time.ticks_ms()
        self.update_due = False
        self.observations = []  # a new registration ends the previous session's observations

    def _updated(self, resp):
        """Apply an Update answer: True when done, False when the server forgot us (4.04: register again)."""
        if resp.code == cm.NOT_FOUND:
            self.location = None
            return False
        if resp.code != cm.CHANGED:
            raise RegistrationError("update answered %s" % cm.code_str(resp.code))
        self.registered_ms = time.ticks_ms()
        self.update_due = False
        return True

    def register(self, timeout_ms=None):
        """Blocking Register (boot)."""
        self._registered(self.ep.request(self.server, self._register_msg(), timeout_ms))
        return self.location

    def update(self, send_objects=False, timeout_ms=None):
        """Blocking Registration Update; re-registers when the server forgot us (4.04)."""
        if not self.location:
            return self.register(timeout_ms)
        if not self._updated(self.ep.request(self.server, self._update_msg(send_objects), timeout_ms)):
            return self.register(timeout_ms)
        return self.location

    def _start_registration(self):
        """Non-blocking Register or Update from the main loop; the answer arrives in _registration_done."""
        self.reg_inflight = True
        msg = self._update_msg() if self.location else self._register_msg()
        self.ep.start(self.server, msg, self._registration_done)

    def _registration_done(self, t):
        self.reg_inflight = False
        try:
            if t.state != "done":
                raise RegistrationError("no answer from the server (%s)" % t.state)
            if t.response.code == cm.CREATED or not self.location:
                self._registered(t.response)
            elif not self._updated(t.response):
                self.retry_at = time.ticks_ms()  # forgotten: register again at once
                return
            self.retry_ms = RETRY_MIN_MS
            if self.after_update is not None:
                self.defer(self.after_update)
                self.after_update = None
        except RegistrationError as e:
            # a server that refuses or is gone: try again later, backing off so it is not hammered
            print("registration failed:", e)
            self.location = None
            self.retry_at = time.ticks_add(time.ticks_ms(), self.retry_ms)
            self.retry_ms = min(self.retry_ms * 2, RETRY_MAX_MS)

    def deregister(self, timeout_ms=None):
        if not self.location:
            return
        msg = cm.Message(cm.CON, cm.DELETE)
        for seg in self.location:
            msg.add(cm.URI_PATH, seg)
        self.location = None
        self.observations = []
        try:
            self.ep.request(self.server, msg, timeout_ms)
        except (Timeout, Reset):
            pass

    def registration_due(self):
        """An Update is due at 3/4 of the lifetime (the server drops us at the full lifetime)."""
        if self.update_due:
            return True
        age = time.ticks_diff(time.ticks_ms(), self.registered_ms)
        return age >= self.lifetime * 750

    # --- main loop

    def step(self, wait_ms=100):
        """One pass of the device loop: handle a datagram, run deferred work, keep registration, notify."""
        self.ep.poll(wait_ms)
        self._run_jobs()
        if (self.location is None or self.registration_due()) and not self.reg_inflight and \
                time.ticks_diff(time.ticks_ms(), self.retry_at) >= 0:
            self._start_registration()  # the loop keeps serving requests and notifying meanwhile
        self.notify_due()

    def _run_jobs(self):
        # a frame of its own: a job kept in a local of step() would stay alive through notify_due(), inside the
        # free block that the heap figures observers are told about (measured: 71 KB reported instead of 94 KB
        # right after a model swap)
        while self.jobs:
            job = self.jobs.pop(0)
            try:
                job()
            except Exception as e:  # deferred work failing must not stop the device; the object reports state
                print("deferred job failed:", repr(e))

    # --- device management interface

    def peer_ok(self, addr):
        """Who may manage this device. Under OSCORE, whoever holds the security context: the endpoint opens
        every request with it and refuses the rest, from any address (a NAT may change the server's). In NoSec,
        only the address (host and port) of the server this client registers with, LwM2M's peer identity without
        security: anyone else is no LwM2M Server here, and gets no answer at all (not 4.01: that is for a known
        server without the access right, and any answer tells a scanner that a device listens and reflects
        traffic to a forged source)."""
        return self.ep.security is not None or (self.server is not None and addr == self.server)

    def handle(self, req, addr):
        try:
            path = req.path()
        except UnicodeError:  # not a ValueError in MicroPython
            return cm.response(cm.BAD_REQUEST, "Uri-Path is not UTF-8")
        if path and path[-1] == "":
            path = path[:-1]
        try:
            ids = tuple(int(p) for p in path)
        except ValueError:
            return cm.response(cm.NOT_FOUND, "bad path")
        if not ids or len(ids) > 4 or any(i < 0 or i > 0xFFFF for i in ids):
            return cm.response(cm.NOT_FOUND, "unsupported path")
        if ids[0] in (0, 21):  # Security and OSCORE: only a Bootstrap-Server writes them, nobody reads them
            return cm.response(cm.UNAUTHORIZED)
        obj = self.objects.get(ids[0])
        if obj is None:
            return cm.response(cm.NOT_FOUND)
        if len(ids) > 1 and ids[1] not in obj.instances():
            return cm.response(cm.NOT_FOUND, "no such instance")
        if len(ids) > 2 and ids[2] not in obj.resources:
            return cm.response(cm.NOT_FOUND, "no such resource")
        if len(ids) == 4:
            # a resource instance: only multiple resources have them, and this client only reads (and observes)
            # them; writes, executes and discovers address the resource
            if "M" not in obj.resources[ids[2]][1]:
                return cm.response(cm.NOT_FOUND, "not a multiple resource")
            if req.code != cm.GET or req.uint(cm.ACCEPT) == content.LINK:
                return cm.response(cm.METHOD_NOT_ALLOWED, "resource instances are read only")
        try:
            if req.code == cm.GET:
                if req.uint(cm.ACCEPT) == content.LINK:
                    return self._discover(obj, ids)
                return self._read(req, addr, obj, ids)
            if req.code == cm.PUT:
                if not req.payload and req.opt(cm.CONTENT_FORMAT) is None and req.opts(cm.URI_QUERY):
                    return self._write_attributes(req, ids)
                return self._write(req, addr, obj, ids)
            if req.code == cm.POST:
                if len(ids) == 3:
                    return self._execute(req, obj, ids)
                if len(ids) == 2:
                    return self._write(req, addr, obj, ids)
                return cm.response(cm.METHOD_NOT_ALLOWED, "create is not supported")
            return cm.response(cm.METHOD_NOT_ALLOWED)
        except ob.ResourceError as e:
            return cm.response(e.code, str(e))
        except (content.ContentError, ValueError, UnicodeError) as e:
            return cm.response(cm.BAD_REQUEST, str(e))

    # Discover / Write-Attributes

    def _discover(self, obj, ids):
        parts = []
        a = self.attributes

        def link(p, dim=""):
            parts.append("<" + "".join("/%d" % i for i in p) + ">" + dim + a.link_attrs(p))

        if len(ids) == 1:
            link(ids)
        iids = obj.instances() if len(ids) == 1 else (ids[1],)
        for iid in iids:
            if len(ids) <= 2:
                link((obj.oid, iid))
            rids = sorted(obj.resources) if len(ids) < 3 else (ids[2],)
            for rid in rids:
                rtype, ops = obj.resources[rid]
                if "M" not in ops or "R" not in ops:
                    link((obj.oid, iid, rid))
                    continue
                # LwM2M Discover: a multiple resource carries dim (its number of instances); Discover on
                # the resource itself also lists each instance
                n = len(obj.read(iid, rid))
                link((obj.oid, iid, rid), ";dim=%d" % n)
                if len(ids) == 3:
                    for riid in range(n):
                        link((obj.oid, iid, rid, riid))
        resp = cm.response(cm.CONTENT, ",".join(parts))
        resp.add(cm.CONTENT_FORMAT, content.LINK)
        return resp

    def _write_attributes(self, req, ids):
        try:
            attrs = observe.parse_attributes(req.queries())
        except (observe.AttributesError, UnicodeError) as e:
            return cm.response(cm.BAD_REQUEST, str(e))
        self.attributes.set(ids, attrs)
        return cm.response(cm.CHANGED)

    # Execute

    def _execute(self, req, obj, ids):
        rtype, ops = obj.resources[ids[2]]
        if "E" not in ops:
            return cm.response(cm.METHOD_NOT_ALLOWED, "resource is not executable")
        arg = bytes(req.payload).decode() if req.payload else ""
        obj.execute(ids[1], ids[2], arg)
        return cm.response(cm.CHANGED)
