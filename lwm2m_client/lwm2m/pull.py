# Pull delivery: fetch the package named by /5/0/1 Package URI with CoAP GET + Block2 (RFC 7959), one block at a
# time, each block written to the sink before the next is requested. Only coap:// is supported (no DTLS).
import socket

from coap import block
from coap import message as cm

RESULT_CONNECTION_LOST = 4
RESULT_INVALID_URI = 7
RESULT_UNSUPPORTED_PROTOCOL = 9


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


def download(endpoint, uri, sink, szx=6, timeout_ms=None):
    """Fetch uri block by block into sink (begin/write/finish). Raises PullError, or the sink's errors."""
    host, port, segs, qs = parse_uri(uri)
    try:
        addr = socket.getaddrinfo(host, port)[0][-1]
    except OSError:
        raise PullError(RESULT_INVALID_URI, "cannot resolve %s" % host)
    offset = 0
    num = 0
    started = False
    while True:
        req = cm.Message(cm.CON, cm.GET)
        for s in segs:
            req.add(cm.URI_PATH, s)
        for q in qs:
            req.add(cm.URI_QUERY, q)
        req.add(cm.BLOCK2, block.encode(num, False, szx))
        try:
            resp = endpoint.request(addr, req, timeout_ms)
        except Exception as e:  # Timeout, Reset or a socket error: the connection is gone
            raise PullError(RESULT_CONNECTION_LOST, "block %d: %s" % (num, e))
        if resp.code == cm.NOT_FOUND:
            raise PullError(RESULT_INVALID_URI, "%s: 4.04 Not Found" % uri)
        if resp.code != cm.CONTENT:
            raise PullError(RESULT_CONNECTION_LOST, "block %d answered %s" % (num, cm.code_str(resp.code)))
        raw = resp.opt(cm.BLOCK2)
        if not started:
            sink.begin(resp.uint(cm.SIZE2))
            started = True
        if raw is None:
            if offset:
                raise PullError(RESULT_CONNECTION_LOST, "server stopped sending blocks")
            if resp.payload:
                sink.write(0, resp.payload)
            sink.finish()
            return len(resp.payload)
        try:
            rnum, more, rszx = block.decode(raw)
        except block.BlockError as e:
            raise PullError(RESULT_CONNECTION_LOST, str(e))
        rsize = block.size(rszx)
        n = len(resp.payload)
        # the server may answer with a smaller block size than asked; the byte offset must still match
        if rnum * rsize != offset or (more and n != rsize) or n > rsize:
            raise PullError(RESULT_CONNECTION_LOST, "unexpected block %d/%d of %d bytes" % (rnum, rsize, n))
        sink.write(offset, resp.payload)
        offset += n
        if not more:
            sink.finish()
            return offset
        szx = rszx
        num = offset // rsize
