# The LwM2M 1.1 client: registration interface (Register, Update, De-register, re-register on 4.04 or when
# the lifetime lapses) and the device management interface (Read, Write, Execute, Discover, Write-Attributes,
# Observe/Cancel) on object, instance and resource paths, over one CoAP endpoint.
#
# Writes to opaque resources that have a sink (the firmware package /5/0/0, the TinyML input) are streamed
# block by block (Block1, RFC 7959) straight into the sink: the client never holds more than one block.
# Large read results are served with Block2.
import gc
import time

import hal
from coap import block
from coap import message as cm
from coap.endpoint import Reset, Timeout

from . import content
from . import objects as ob
from .objects import WriteError
from . import observe

MAX_PAYLOAD = 1024
RETRY_MIN_MS = 1000  # registration retry back-off
RETRY_MAX_MS = 60000


class RegistrationError(Exception):
    pass


def _resp(code, payload=b""):
    if isinstance(payload, str):
        payload = payload.encode()
    return cm.Message(code=code, payload=payload)


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


def _streamed_only(rid):
    # a streamed resource (package, model input) takes its bytes raw, on its own path, block by block
    return _resp(cm.UNSUPPORTED_CONTENT_FORMAT, "resource %d takes application/octet-stream on its own path" % rid)


def _bootstrap_only(rid):
    # trust anchors: a Bootstrap-Server writes them, during bootstrap only; a server changes them only by a
    # signed anchor update, under NoSec as under OSCORE (docs/manifest.md, "Key rotation")
    return _resp(cm.UNAUTHORIZED, "resource %d is written only by a Bootstrap-Server" % rid)


class Upload:
    """A Block1 transfer in progress: where the next block must start."""

    __slots__ = ("path", "addr", "sink", "offset", "last_len", "last_resp")

    def __init__(self, path, addr, sink):
        self.path = path
        self.addr = addr
        self.sink = sink
        self.offset = 0
        self.last_len = 0
        self.last_resp = None


# What the client imports only for a transfer (a Q-Block push or pull) and drops at a model swap
TRANSFER_MODULES = ("lwm2m.qupload", "lwm2m.qpull", "coap.qblock")


class Client:
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
        if self.upload is not None:
            self.upload.sink.abort()
            self.upload = None
        if self.qupload is not None and self.qupload.final is None:
            self.qupload.sink.abort()
        self.qupload = None
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
            return _resp(cm.BAD_REQUEST, "Uri-Path is not UTF-8")
        if path and path[-1] == "":
            path = path[:-1]
        try:
            ids = tuple(int(p) for p in path)
        except ValueError:
            return _resp(cm.NOT_FOUND, "bad path")
        if not ids or len(ids) > 4 or any(i < 0 or i > 0xFFFF for i in ids):
            return _resp(cm.NOT_FOUND, "unsupported path")
        if ids[0] in (0, 21):  # Security and OSCORE: only a Bootstrap-Server writes them, nobody reads them
            return _resp(cm.UNAUTHORIZED)
        obj = self.objects.get(ids[0])
        if obj is None:
            return _resp(cm.NOT_FOUND)
        if len(ids) > 1 and ids[1] not in obj.instances():
            return _resp(cm.NOT_FOUND, "no such instance")
        if len(ids) > 2 and ids[2] not in obj.resources:
            return _resp(cm.NOT_FOUND, "no such resource")
        if len(ids) == 4:
            # a resource instance: only multiple resources have them, and this client only reads (and observes)
            # them; writes, executes and discovers address the resource
            if "M" not in obj.resources[ids[2]][1]:
                return _resp(cm.NOT_FOUND, "not a multiple resource")
            if req.code != cm.GET or req.uint(cm.ACCEPT) == content.LINK:
                return _resp(cm.METHOD_NOT_ALLOWED, "resource instances are read only")
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
                return _resp(cm.METHOD_NOT_ALLOWED, "create is not supported")
            return _resp(cm.METHOD_NOT_ALLOWED)
        except ob.ResourceError as e:
            return _resp(e.code, str(e))
        except (content.ContentError, ValueError, UnicodeError) as e:
            return _resp(cm.BAD_REQUEST, str(e))

    # Read / Observe

    def read_values(self, obj, ids):
        """-> [(iid, rid, rtype, value)] for the readable resources under ids (value a tuple for a multiple
        resource, the one instance's value for a resource-instance path)."""
        if len(ids) == 4:
            v = self.read_values(obj, ids[:3])
            if not v or not 0 <= ids[3] < len(v[0][3]):
                raise ob.ResourceError(cm.NOT_FOUND, "no such resource instance")
            iid, rid, rtype, v = v[0]
            return [(iid, rid, rtype, v[ids[3]])]
        out = []
        iids = obj.instances() if len(ids) == 1 else (ids[1],)
        for iid in iids:
            if len(ids) == 3:
                rids = (ids[2],)
            else:
                rids = sorted(r for r in obj.resources if "R" in obj.resources[r][1])
            for rid in rids:
                rtype, ops = obj.resources[rid]
                if "R" not in ops:
                    raise ob.ResourceError(cm.METHOD_NOT_ALLOWED, "resource is not readable")
                try:
                    v = obj.read(iid, rid)
                except ob.ResourceError as e:
                    if len(ids) == 3 or e.code != cm.FORBIDDEN:
                        raise
                    continue  # withheld (e.g. results with reporting off): left out of a whole-object read
                if v is not None:
                    out.append((iid, rid, rtype, v))
        return out

    def encode_read(self, obj, ids, fmt):
        values = self.read_values(obj, ids)
        if fmt is None:
            rtype, ops = obj.resources[ids[2]] if len(ids) > 2 else (None, "")
            if len(ids) == 4 or len(ids) == 3 and "M" not in ops:
                fmt = content.OPAQUE if rtype == ob.OPAQUE else content.TEXT
            else:
                fmt = content.TLV
        if fmt not in content.SUPPORTED:
            raise ob.ResourceError(cm.NOT_ACCEPTABLE, "format %d not supported" % fmt)
        if len(ids) >= 3:
            if not values:
                return fmt, b""
            iid, rid, rtype, v = values[0]
            try:
                return fmt, content.encode_single(fmt, obj.oid, iid, rid, rtype, v, ids[3] if len(ids) == 4 else None)
            except content.ContentError as e:
                raise ob.ResourceError(cm.NOT_ACCEPTABLE, str(e))
        if fmt in (content.TEXT, content.OPAQUE):
            raise ob.ResourceError(cm.NOT_ACCEPTABLE, "text/opaque need a resource path")
        try:
            return fmt, content.encode(fmt, obj.oid, values, object_level=len(ids) == 1)
        except content.ContentError as e:  # e.g. a non-finite Float in SenML-JSON: 4.06 with the reason
            raise ob.ResourceError(cm.NOT_ACCEPTABLE, str(e))

    def _read(self, req, addr, obj, ids):
        accept = req.uint(cm.ACCEPT)
        raw = req.opt(cm.BLOCK2)
        try:
            num = block.decode(raw)[0] if raw is not None else 0
        except block.BlockError as e:
            return _resp(cm.BAD_REQUEST, str(e))
        snap = self.snapshot
        if num and snap is not None and snap[0] == addr and snap[1] == ids and accept in (None, snap[2]):
            # a later block of the representation whose first block this reader already has
            resp = _resp(cm.CONTENT)
            resp.add(cm.CONTENT_FORMAT, snap[2])
            resp.add(cm.ETAG, snap[4])
            return self._blocks(req, resp, snap[3])
        fmt, payload = self.encode_read(obj, ids, accept)
        resp = _resp(cm.CONTENT)
        obs = req.uint(cm.OBSERVE)
        if obs == 0 and req.opt(cm.BLOCK2) is None:
            o = self._observe(addr, req.token, ids, fmt)
            if o is not None:
                resp.add(cm.OBSERVE, o.next_seq())
                if len(ids) == 3:
                    o.last_value = obj.read(ids[1], ids[2])
        elif obs == 1:
            self.cancel(addr, req.token)
        resp.add(cm.CONTENT_FORMAT, fmt)
        if raw is not None or len(payload) > MAX_PAYLOAD:
            self._snapshot(addr, ids, fmt, payload, resp)
        return self._blocks(req, resp, payload)

    def _snapshot(self, addr, ids, fmt, payload, resp):
        self._etag = (self._etag + 1) & 0xFFFFFFFF
        etag = cm.uint_bytes(self._etag) or b"\0"
        self.snapshot = (addr, ids, fmt, payload, etag)
        resp.add(cm.ETAG, etag)

    def _blocks(self, req, resp, payload):
        """Serve payload whole or, when large or asked for, one Block2 block of it."""
        raw = req.opt(cm.BLOCK2) if req else None
        if raw is None and len(payload) <= MAX_PAYLOAD:
            resp.payload = payload
            return resp
        try:
            num, _, szx = block.decode(raw) if raw is not None else (0, False, block.szx_for(MAX_PAYLOAD))
        except block.BlockError as e:
            return _resp(cm.BAD_REQUEST, str(e))
        size = block.size(szx)
        start = num * size
        if start >= len(payload) and start > 0:
            return _resp(cm.BAD_OPTION, "block beyond end")
        resp.add(cm.BLOCK2, block.encode(num, start + size < len(payload), szx))
        if num == 0:
            resp.add(cm.SIZE2, len(payload))
        resp.payload = payload[start:start + size]
        return resp

    def _observe(self, addr, token, ids, fmt):
        for o in self.observations:
            if o.token == token and o.addr == addr:
                o.path = ids  # re-registration replaces (RFC 7641 §4.1)
                o.fmt = fmt
                o.request_id = self.ep.request_id
                return o
        if len(self.observations) >= observe.MAX_OBSERVATIONS:
            return None  # served as a plain read, which RFC 7641 allows
        o = observe.Observation(addr, token, ids, fmt, time.ticks_ms(), self.ep.request_id)
        self.observations.append(o)
        return o

    def cancel(self, addr, token):
        self.observations = [o for o in self.observations if not (o.token == token and o.addr == addr)]

    def _notification_done(self, t):
        if t.state == "timeout":
            self.cancel(t.addr, t.token)  # the observer stopped acknowledging (RFC 7641 §4.5)

    def _rejected(self, addr, token):
        self.cancel(addr, token)  # a Reset to a notification cancels the observation

    def changed(self, oid, iid, rid):
        path = (oid, iid, rid)
        for o in self.observations:
            # o.path[:3]: an observed resource instance changes with its resource
            if o.covers(path) or o.path[:3] == path:
                o.dirty = True

    def notify_due(self):
        now = time.ticks_ms()
        srv = self.objects.get(1)
        dmin = srv.default_pmin if srv else 0
        dmax = srv.default_pmax if srv else 0
        for o in list(self.observations):
            attrs = self.attributes.effective(o.path, dmin, dmax)
            age = time.ticks_diff(now, o.last_ms)
            due = attrs["pmax"] and age >= attrs["pmax"] * 1000
            if o.dirty and age >= attrs["pmin"] * 1000:
                if len(o.path) == 3:
                    obj = self.objects[o.path[0]]
                    value = obj.read(o.path[1], o.path[2])
                    if observe.passes_thresholds(attrs, o.last_value, value):
                        due = True
                    else:
                        o.dirty = False
                else:
                    due = True
            if due:
                self.notify(o)

    def notify(self, o):
        obj = self.objects.get(o.path[0])
        if obj is None:
            return
        try:
            fmt, payload = self.encode_read(obj, o.path, o.fmt)
        except ob.ResourceError:
            return
        o.dirty = False
        o.last_ms = time.ticks_ms()
        if len(o.path) == 3:
            o.last_value = obj.read(o.path[1], o.path[2])
        o.sent += 1
        con = self.confirmable_every and o.sent % self.confirmable_every == 0
        msg = cm.Message(cm.CON if con else cm.NON, cm.CONTENT, token=o.token)
        msg.add(cm.OBSERVE, o.next_seq())
        msg.add(cm.CONTENT_FORMAT, fmt)
        if len(payload) > MAX_PAYLOAD:
            self._snapshot(o.addr, o.path, fmt, payload, msg)
        msg = self._blocks(None, msg, payload)  # a large notification carries its first block (RFC 7959 §3.4)
        if con:
            self.ep.start(o.addr, msg, self._notification_done, o.request_id)
        else:
            self.ep.send(o.addr, msg, o.request_id)

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
        resp = _resp(cm.CONTENT, ",".join(parts))
        resp.add(cm.CONTENT_FORMAT, content.LINK)
        return resp

    def _write_attributes(self, req, ids):
        try:
            attrs = observe.parse_attributes(req.queries())
        except (observe.AttributesError, UnicodeError) as e:
            return _resp(cm.BAD_REQUEST, str(e))
        self.attributes.set(ids, attrs)
        return _resp(cm.CHANGED)

    # Write

    def _write(self, req, addr, obj, ids):
        """Write (PUT) and partial update (POST on an instance) both set exactly the resources in the payload."""
        fmt = req.uint(cm.CONTENT_FORMAT)
        if len(ids) == 3:
            if ids[2] in obj.bootstrap_only:
                return _bootstrap_only(ids[2])
            if "W" not in obj.resources[ids[2]][1]:
                return _resp(cm.METHOD_NOT_ALLOWED, "resource is not writable")
            if obj.sink(ids[1], ids[2]) is not None:
                if fmt not in (content.OPAQUE, None):
                    return _streamed_only(ids[2])
                return self._write_stream(req, addr, obj, ids)
        if req.opt(cm.Q_BLOCK1) is not None:
            return _resp(cm.BAD_OPTION, "Q-Block1 only for streamed resources")
        if req.opt(cm.BLOCK1) is not None:
            return _resp(cm.REQUEST_ENTITY_TOO_LARGE, "block-wise write only for streamed resources")
        if fmt is None:
            return _resp(cm.BAD_REQUEST, "write without Content-Format")
        if fmt not in content.SUPPORTED:
            return _resp(cm.UNSUPPORTED_CONTENT_FORMAT)
        if len(ids) == 1:
            return _resp(cm.METHOD_NOT_ALLOWED)
        types = {rid: obj.resources[rid][0] for rid in obj.resources}
        values = content.decode(fmt, ids, types, req.payload)
        # check every value before writing any, so a bad write changes nothing
        checked = []
        for iid, rid, value in values:
            if rid in obj.bootstrap_only:
                return _bootstrap_only(rid)
            if rid not in obj.resources or "W" not in obj.resources[rid][1]:
                return _resp(cm.METHOD_NOT_ALLOWED, "resource %d is not writable" % rid)
            if obj.sink(iid, rid) is not None:
                return _streamed_only(rid)
            if len(ids) == 3 and rid != ids[2]:
                return _resp(cm.BAD_REQUEST, "payload names another resource")
            checked.append((iid, rid, ob.convert(obj.resources[rid][0], value)))
        for iid, rid, value in checked:
            obj.write(iid, rid, value)
            self.changed(obj.oid, iid, rid)
        return _resp(cm.CHANGED)

    def new_body(self, obj, ids, size):
        """The begun sink of a block-wise body that starts now (Block1 or Q-Block1 block 0): it replaces any
        transfer in progress, which is aborted. Raises WriteError."""
        if self.upload is not None:
            self.upload.sink.abort()
            self.upload = None
        if self.qupload is not None and self.qupload.final is None:
            self.qupload.sink.abort()
        self.qupload = None
        sink = obj.sink(ids[1], ids[2])
        sink.begin(size)
        return sink

    def _write_stream(self, req, addr, obj, ids):
        if req.opt(cm.Q_BLOCK1) is not None:
            if not getattr(self.ep, "q_window", 0):
                return _resp(cm.BAD_OPTION, "no Q-Block1 here")  # as from a client without it: use Block1
            from .qupload import receive

            return receive(self, req, addr, obj, ids)
        raw = req.opt(cm.BLOCK1)
        if raw is None:
            # the whole value in one message; it replaces any block-wise transfer in progress
            if self.upload is not None:
                self.upload.sink.abort()
                self.upload = None
            sink = obj.sink(ids[1], ids[2])
            try:
                sink.begin(len(req.payload))
                if req.payload:
                    sink.write(0, req.payload)
                return self._finish_sink(sink, cm.CHANGED)
            except WriteError as e:
                return self._write_error(e)
        payload = req.payload
        n = len(payload)
        try:
            num, more, szx = block.decode_for(raw, n)
        except block.BlockError as e:
            return _resp(cm.BAD_REQUEST, str(e))
        size = block.size(szx)
        offset = num * size
        up = self.upload
        if num == 0:
            try:
                sink = self.new_body(obj, ids, req.uint(cm.SIZE1))
            except WriteError as e:
                return self._write_error(e)
            up = self.upload = Upload(ids, addr, sink)
        elif up is None or up.path != ids or up.addr != addr:
            return _resp(cm.REQUEST_ENTITY_INCOMPLETE, "no transfer in progress")
        elif offset != up.offset:
            if up.last_resp is not None and offset + n == up.offset and n == up.last_len:
                return up.last_resp  # the previous block again (a retry with a new message ID)
            return _resp(cm.REQUEST_ENTITY_INCOMPLETE, "expected byte %d, got %d" % (up.offset, offset))
        try:
            if n:
                up.sink.write(offset, payload)
        except WriteError as e:
            up.sink.abort()
            self.upload = None
            return self._write_error(e)
        up.offset += n
        up.last_len = n
        if more:
            resp = _resp(cm.CONTINUE)
            resp.add(cm.BLOCK1, block.encode(num, True, szx))
            up.last_resp = resp
            return resp
        self.upload = None
        resp = self._finish_sink(up.sink, cm.CHANGED)
        resp.add(cm.BLOCK1, block.encode(num, False, szx))
        return resp

    def _finish_sink(self, sink, code):
        try:
            sink.finish()
        except WriteError as e:
            return self._write_error(e)
        return _resp(code)

    @staticmethod
    def _write_error(e):
        resp = _resp(e.code, str(e))
        if e.size1 is not None:
            resp.add(cm.SIZE1, e.size1)
        return resp

    # Execute

    def _execute(self, req, obj, ids):
        rtype, ops = obj.resources[ids[2]]
        if "E" not in ops:
            return _resp(cm.METHOD_NOT_ALLOWED, "resource is not executable")
        arg = bytes(req.payload).decode() if req.payload else ""
        obj.execute(ids[1], ids[2], arg)
        return _resp(cm.CHANGED)
