# Pull delivery: fetch the package named by /5/0/1 Package URI with CoAP GET + Block2 (RFC 7959), one block at a
# time, each block written to the sink before the next is requested. Only coap:// is supported (no DTLS).
import socket

from coap import block
from coap import message as cm

RESULT_CONNECTION_LOST = 4
RESULT_INVALID_URI = 7
RESULT_UNSUPPORTED_PROTOCOL = 9
# A block whose CON exchange timed out (every retransmission lost) is asked for again this many times before the
# download is given up as "connection lost": on a lossy link one dead exchange among hundreds of blocks is likely,
# and starting a 300 KB package over for it is not (about 8 % of 333 KB pulls at 10 % loss each way otherwise).
BLOCK_RETRIES = 2


class PullError(Exception):
    def __init__(self, result, msg):
        super().__init__(msg)
        self.result = result


def parse_uri(uri):
    """coap://host[:port]/path?query -> (host, port, [segments], [queries]); PullError(7 or 9) otherwise."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise PullError(RESULT_INVALID_URI, "no scheme in %s" % uri)
    if scheme != "coap":
        raise PullError(RESULT_UNSUPPORTED_PROTOCOL, "scheme %s not supported" % scheme)
    hostport, _, pathq = rest.partition("/")
    path, _, query = pathq.partition("?")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
    else:
        host, _, port = hostport.partition(":")
    if not host:
        raise PullError(RESULT_INVALID_URI, "no host in %s" % uri)
    try:
        port = int(port) if port else 5683
    except ValueError:
        raise PullError(RESULT_INVALID_URI, "bad port in %s" % uri)
    if not 0 < port < 65536:
        raise PullError(RESULT_INVALID_URI, "bad port in %s" % uri)
    segs = [s for s in path.split("/") if s]
    qs = [q for q in query.split("&") if q]
    return host, port, segs, qs


class Download:
    """A pull in progress, driven by the endpoint: each block's response (or its timeout) arrives in _on_done,
    which writes it to the sink and asks for the next. Nothing blocks, so the device keeps answering the server,
    notifying observers and renewing its registration while a large package comes in."""

    def __init__(self, endpoint, uri, sink, on_end, szx=6):
        host, port, self.segs, self.qs = parse_uri(uri)
        try:
            self.addr = socket.getaddrinfo(host, port)[0][-1]
        except OSError:
            raise PullError(RESULT_INVALID_URI, "cannot resolve %s" % host)
        self.ep = endpoint
        self.uri = uri
        self.sink = sink
        self.on_end = on_end  # on_end(None) when complete, on_end(exception) when it failed
        self.szx = szx
        self.offset = 0
        self.num = 0
        self.started = False
        self.cancelled = False
        self.retries = 0

    def start(self):
        req = cm.Message(cm.CON, cm.GET, token=self.ep.new_token())
        for s in self.segs:
            req.add(cm.URI_PATH, s)
        for q in self.qs:
            req.add(cm.URI_QUERY, q)
        req.add(cm.BLOCK2, block.encode(self.num, False, self.szx))
        self.ep.start(self.addr, req, self._on_done)

    def cancel(self):
        self.cancelled = True

    def _on_done(self, t):
        if self.cancelled:
            return
        if t.state == "timeout" and self.retries < BLOCK_RETRIES:
            self.retries += 1
            self.start()          # the same block again, with a fresh token and message ID
            return
        self.retries = 0
        try:
            more = self._accept(t)
        except Exception as e:  # PullError, or the sink's WriteError (it has set State and Update Result)
            self.on_end(e)
            return
        if more:
            self.start()
        else:
            self.on_end(None)

    def _accept(self, t):
        """Handle one block's outcome; True when more blocks are to be fetched."""
        if t.state != "done":
            raise PullError(RESULT_CONNECTION_LOST, "block %d: %s" % (self.num, t.state))
        resp = t.response
        if resp.code == cm.NOT_FOUND:
            raise PullError(RESULT_INVALID_URI, "%s: 4.04 Not Found" % self.uri)
        if resp.code != cm.CONTENT:
            raise PullError(RESULT_CONNECTION_LOST, "block %d answered %s" % (self.num, cm.code_str(resp.code)))
        if not self.started:
            self.sink.begin(resp.uint(cm.SIZE2))
            self.started = True
        raw = resp.opt(cm.BLOCK2)
        n = len(resp.payload)
        if raw is None:
            if self.offset:
                raise PullError(RESULT_CONNECTION_LOST, "server stopped sending blocks")
            if n:
                self.sink.write(0, resp.payload)
            self.offset = n
            self.sink.finish()
            return False
        try:
            rnum, more, rszx = block.decode(raw)
        except block.BlockError as e:
            raise PullError(RESULT_CONNECTION_LOST, str(e))
        rsize = block.size(rszx)
        # the server may answer with a smaller block size than asked; the byte offset must still match
        if rnum * rsize != self.offset or (more and n != rsize) or n > rsize:
            raise PullError(RESULT_CONNECTION_LOST, "unexpected block %d/%d of %d bytes" % (rnum, rsize, n))
        self.sink.write(self.offset, resp.payload)
        self.offset += n
        if not more:
            self.sink.finish()
            return False
        self.szx = rszx
        self.num = self.offset // rsize
        return True


def download(endpoint, uri, sink, szx=6):
    """Fetch uri into sink, polling the endpoint until done. Returns the byte count; raises PullError or the
    sink's error."""
    ended = []
    d = Download(endpoint, uri, sink, ended.append, szx)
    d.start()
    while not ended:
        endpoint.poll(100)
    if ended[0] is not None:
        raise ended[0]
    return d.offset
