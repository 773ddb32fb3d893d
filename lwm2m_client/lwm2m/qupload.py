# Receiving a streamed resource (the package /5/0/0) with Q-Block1 (RFC 9177): the server sends several blocks
# at once as NON PUTs; they may arrive out of order or not at all. Blocks wait in a coap.qblock.Window (fixed
# arena, `slots` blocks) until the sink can take them in order; a block beyond the window is dropped (the sender
# keeps within MAX_PAYLOADS, so only a sender with a larger window sees that, and sends it again).
#
# Answers, each on the token of the request that caused it (the sender needs nothing else):
# * 2.31 Continue, Q-Block1 = (highest block below which all have arrived, M=1): for block 0 (so the sender
#   knows Q-Block1 is understood), then each time that point passes a multiple of a quarter of the window (one
#   lost answer is made good by the next), and when a block fills the last hole (the sender may be waiting);
# * 4.08 with Content-Format 272 (missing-blocks+cbor-seq): a block arrived past holes, all of them listed each
#   time (a lost 4.08, or a lost resend, is reported again by the next arrival, not left to the sender's timer);
# * a block that is here already (the sender's probe after a quiet spell): 4.08 with the missing blocks below the
#   highest seen, or 2.31 when there is no hole;
# * the last missing block: the sink's finish() (the package check) and 2.04 with Q-Block1 = (last block, M=0);
#   repeated for a block of the finished transfer;
# * a block other than 0 of a transfer the device does not know (another Request-Tag, or it rebooted): plain
#   4.08, and the sender starts over.
# Other blocks get no answer when NON; a CON block always gets 2.31, so CON senders are not left retransmitting.
from coap import block, qblock
from coap import message as cm

from . import cbor
from .objects import WriteError


class QUpload:
    __slots__ = ("path", "addr", "tag", "sink", "window", "szx", "total", "final")

    def __init__(self, path, addr, tag, sink, slots, szx, size1):
        self.path = path
        self.addr = addr
        self.tag = tag
        self.sink = sink
        self.szx = szx
        self.window = qblock.Window(slots, block.size(szx))
        self.total = None if size1 is None else max(1, -(-size1 // block.size(szx)))
        self.final = None  # the answer of the finished transfer, for repeats



def _continue(num, szx):
    r = cm.response(cm.CONTINUE)
    r.add(qblock.Q_BLOCK1, block.encode(num, True, szx))
    return r


def _missing(nums):
    r = cm.response(cm.REQUEST_ENTITY_INCOMPLETE, b"".join(cbor.encode(n) for n in nums))
    r.add(cm.CONTENT_FORMAT, qblock.MISSING_BLOCKS)
    return r


def receive(client, req, addr, obj, ids):
    """Handle one Q-Block1 request to a streamed resource; returns the answer or None (no answer)."""
    payload = req.payload
    try:
        num, more, szx = block.decode_for(req.opt(qblock.Q_BLOCK1), len(payload))
    except block.BlockError as e:
        return cm.response(cm.BAD_REQUEST, str(e))
    size = block.size(szx)
    tag = req.opt(qblock.REQUEST_TAG)
    up = client.qupload
    same = up is not None and up.tag == tag and up.addr == addr and up.path == ids and up.szx == szx
    if not same:
        if num != 0:
            return cm.response(cm.REQUEST_ENTITY_INCOMPLETE, "no transfer in progress")
        try:
            sink = client.new_body(obj, ids, req.uint(cm.SIZE1))  # a new body replaces the one in progress
        except WriteError as e:
            return client._write_error(e)
        slots = getattr(client.ep, "q_window", 0) or qblock.MAX_PAYLOADS
        up = client.qupload = QUpload(ids, addr, tag, sink, slots, szx, req.uint(cm.SIZE1))
    if up.final is not None:
        return up.final
    w = up.window
    if not more:
        up.total = num + 1
    base0 = w.base
    try:
        new = w.put(num, payload, lambda k, chunk: up.sink.write(k * size, chunk))
    except WriteError as e:
        up.sink.abort()
        client.qupload = None
        return client._write_error(e)
    if up.total is not None and w.base >= up.total:
        # every block is in the sink: the arena goes back to the heap before the package check, which needs it
        # (the verifier's code and a loaded model beside it: esp32 profile); the answer stays for repeats
        up.window = w = None
        resp = client._finish_sink(up.sink, cm.CHANGED)
        resp.add(qblock.Q_BLOCK1, block.encode(up.total - 1, False, szx))
        up.final = resp
        return resp
    if not new:
        if num >= w.base + w.slots:
            return _state(w, szx) if req.type == cm.CON else None
        return _state(w, szx)
    step = max(1, w.slots // 4)
    if num == 0 or w.base // step != base0 // step or (w.base != base0 and w.base > w.highest):
        return _continue(w.base - 1, szx)
    if num == w.highest:
        holes = w.missing(num)
        if holes:
            return _missing(holes)
    return _continue(w.base - 1, szx) if req.type == cm.CON and w.base else None


def _state(w, szx):
    """Where the transfer stands: the holes below the highest block seen, or how far it is complete."""
    holes = w.missing(w.highest + 1)
    if holes:
        return _missing(holes)
    return _continue(w.base - 1, szx) if w.base else None
