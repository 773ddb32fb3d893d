# Write and partial update for the Client (client.py). Writes to opaque resources that have a sink (the firmware
# package /5/0/0, the TinyML input) are streamed block by block (Block1, RFC 7959; Q-Block1 in qupload.py)
# straight into the sink: the client never holds more than one block.
from coap import block
from coap import message as cm

from . import content
from . import objects as ob
from .objects import WriteError


def _streamed_only(rid):
    # a streamed resource (package, model input) takes its bytes raw, on its own path, block by block
    return cm.response(cm.UNSUPPORTED_CONTENT_FORMAT,
                       "resource %d takes application/octet-stream on its own path" % rid)


def _bootstrap_only(rid):
    # trust anchors: a Bootstrap-Server writes them, during bootstrap only; a server changes them only by a
    # signed anchor update, under NoSec as under OSCORE (docs/manifest.md, "Key rotation")
    return cm.response(cm.UNAUTHORIZED, "resource %d is written only by a Bootstrap-Server" % rid)


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


class Writes:
    def _write(self, req, addr, obj, ids):
        """Write (PUT) and partial update (POST on an instance) both set exactly the resources in the payload."""
        fmt = req.uint(cm.CONTENT_FORMAT)
        if len(ids) == 3:
            if ids[2] in obj.bootstrap_only:
                return _bootstrap_only(ids[2])
            if "W" not in obj.resources[ids[2]][1]:
                return cm.response(cm.METHOD_NOT_ALLOWED, "resource is not writable")
            if obj.sink(ids[1], ids[2]) is not None:
                if fmt not in (content.OPAQUE, None):
                    return _streamed_only(ids[2])
                return self._write_stream(req, addr, obj, ids)
        if req.opt(cm.Q_BLOCK1) is not None:
            return cm.response(cm.BAD_OPTION, "Q-Block1 only for streamed resources")
        if req.opt(cm.BLOCK1) is not None:
            return cm.response(cm.REQUEST_ENTITY_TOO_LARGE, "block-wise write only for streamed resources")
        if fmt is None:
            return cm.response(cm.BAD_REQUEST, "write without Content-Format")
        if fmt not in content.SUPPORTED:
            return cm.response(cm.UNSUPPORTED_CONTENT_FORMAT)
        if len(ids) == 1:
            return cm.response(cm.METHOD_NOT_ALLOWED)
        types = {rid: obj.resources[rid][0] for rid in obj.resources}
        values = content.decode(fmt, ids, types, req.payload)
        # check every value before writing any, so a bad write changes nothing
        checked = []
        for iid, rid, value in values:
            if rid in obj.bootstrap_only:
                return _bootstrap_only(rid)
            if rid not in obj.resources or "W" not in obj.resources[rid][1]:
                return cm.response(cm.METHOD_NOT_ALLOWED, "resource %d is not writable" % rid)
            if obj.sink(iid, rid) is not None:
                return _streamed_only(rid)
            if len(ids) == 3 and rid != ids[2]:
                return cm.response(cm.BAD_REQUEST, "payload names another resource")
            checked.append((iid, rid, ob.convert(obj.resources[rid][0], value)))
        for iid, rid, value in checked:
            obj.write(iid, rid, value)
            self.changed(obj.oid, iid, rid)
        return cm.response(cm.CHANGED)

    def abort_transfers(self):
        """Abort a block-wise body still coming in (Block1 or Q-Block1) and let go of it; a finished Q-Block1
        push kept for repeats of its last block goes too."""
        if self.upload is not None:
            self.upload.sink.abort()
            self.upload = None
        if self.qupload is not None and self.qupload.final is None:
            self.qupload.sink.abort()
        self.qupload = None

    def new_body(self, obj, ids, size):
        """The begun sink of a block-wise body that starts now (Block1 or Q-Block1 block 0): it replaces any
        transfer in progress, which is aborted. Raises WriteError."""
        self.abort_transfers()
        sink = obj.sink(ids[1], ids[2])
        sink.begin(size)
        return sink

    def _write_stream(self, req, addr, obj, ids):
        if req.opt(cm.Q_BLOCK1) is not None:
            if not getattr(self.ep, "q_window", 0):
                return cm.response(cm.BAD_OPTION, "no Q-Block1 here")  # as from a client without it: use Block1
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
            return cm.response(cm.BAD_REQUEST, str(e))
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
            return cm.response(cm.REQUEST_ENTITY_INCOMPLETE, "no transfer in progress")
        elif offset != up.offset:
            if up.last_resp is not None and offset + n == up.offset and n == up.last_len:
                return up.last_resp  # the previous block again (a retry with a new message ID)
            return cm.response(cm.REQUEST_ENTITY_INCOMPLETE, "expected byte %d, got %d" % (up.offset, offset))
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
            resp = cm.response(cm.CONTINUE)
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
        return cm.response(code)

    @staticmethod
    def _write_error(e):
        resp = cm.response(e.code, str(e))
        if e.size1 is not None:
            resp.add(cm.SIZE1, e.size1)
        return resp
