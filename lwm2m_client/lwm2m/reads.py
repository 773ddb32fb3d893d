# Read and Observe for the Client (client.py): values of a path encoded in the asked format, large results served
# with Block2 from a snapshot (a reader never joins blocks of two encodings), observations and their
# notifications (RFC 7641) with the Write-Attributes conditions of observe.py.
import time

from coap import block
from coap import message as cm

from . import content
from . import objects as ob
from . import observe

MAX_PAYLOAD = 1024


class Reads:
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
            return cm.response(cm.BAD_REQUEST, str(e))
        snap = self.snapshot
        if num and snap is not None and snap[0] == addr and snap[1] == ids and accept in (None, snap[2]):
            # a later block of the representation whose first block this reader already has
            resp = cm.response(cm.CONTENT)
            resp.add(cm.CONTENT_FORMAT, snap[2])
            resp.add(cm.ETAG, snap[4])
            return self._blocks(req, resp, snap[3])
        fmt, payload = self.encode_read(obj, ids, accept)
        resp = cm.response(cm.CONTENT)
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
            return cm.response(cm.BAD_REQUEST, str(e))
        size = block.size(szx)
        start = num * size
        if start >= len(payload) and start > 0:
            return cm.response(cm.BAD_OPTION, "block beyond end")
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
