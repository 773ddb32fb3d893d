# Client-initiated Bootstrap (OMA LwM2M 1.1 Core §5.2.7, §6.1.7): the device asks its Bootstrap-Server for an
# account (POST /bs?ep=NAME&pct=11542), serves the server's Bootstrap-Delete / -Write / -Discover on the same
# endpoint, and on Bootstrap-Finish checks what it was given and hands back the LwM2M server account:
#   {"server": uri, "lifetime": s, "binding": "U", "oscore": {hex master_secret, master_salt, sender_id,
#    recipient_id, id_context?} (when the Security instance links an OSCORE instance)}
#
# Only objects 0 Security, 1 Server and 21 OSCORE, and the TinyML object's Trust Anchor Keys (/32770/0/32: the
# keys whose signed packages the device installs, kept in the account as "trust_anchors") are writable here, as
# plain resource values held in dicts (the bootstrap is short-lived; afterwards only the account remains).
# Instance 0 of Security is the bootstrap account from the config, which Bootstrap-Delete keeps. Nothing written
# here is ever readable: a Bootstrap-Read of /0 or /21 gets 4.01, and the management client refuses both objects.
import time

from coap import message as cm
from coap.endpoint import Reset, Timeout

from . import content
from . import objects as ob

B, I, L, O, S = ob.BOOLEAN, ob.INTEGER, ob.OBJLNK, ob.OPAQUE, ob.STRING
# the single-instance resources of each object that a Bootstrap-Server may send (the rest are refused: 4.00)
TYPES = {
    0: {0: S, 1: B, 2: I, 3: O, 4: O, 5: O, 6: I, 7: O, 8: O, 9: S, 10: I, 11: I, 12: I, 13: I, 14: S, 15: I,
        17: L},
    1: {0: I, 1: I, 2: I, 3: I, 5: I, 6: B, 7: S, 10: L, 12: ob.TIME, 13: I, 14: I, 15: B, 16: B, 17: I, 18: I,
        19: I, 20: I, 21: B, 22: S, 23: B},
    21: {0: O, 1: O, 2: O, 3: I, 4: I, 5: O, 6: O},
    32770: {32: O},  # TinyML Trust Anchor Keys: 65-byte points, concatenated (the package-signing trust anchors)
}
ANCHOR_KEYS = 32
MAX_ANCHORS = 8
MAX_ID_BYTES = 7  # OSCORE sender/recipient IDs (coap.oscore.MAX_ID_BYTES for AES-CCM-16-64-128)



def _host(addr):
    """The IP part of a socket address: a (host, port) tuple on some ports, a raw sockaddr_in on the unix port."""
    return addr[0] if isinstance(addr, tuple) else bytes(addr[4:8])


class Refused(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code


class Session:
    """The client's side of one bootstrap: `handle` is the endpoint's handler while it runs; `account` is set by
    a successful Bootstrap-Finish, after `store(account)` has kept it."""

    def __init__(self, bs_uri, bs_addr, store, links=()):
        self.host = _host(bs_addr)
        self.store = store
        self.links = links  # "</3/0>", ... the device's other objects, for Bootstrap-Discover
        self.inst = {0: {0: {0: bs_uri, 1: True}}, 1: {}, 21: {}, 32770: {}}
        self.account = None

    # --- requests from the Bootstrap-Server

    def handle(self, req, addr):
        if _host(addr) != self.host:
            return cm.response(cm.UNAUTHORIZED, "not the bootstrap server")
        try:
            path = [p for p in req.path() if p]
        except UnicodeError:
            return cm.response(cm.BAD_REQUEST, "Uri-Path is not UTF-8")
        if path == ["bs"]:
            if req.code != cm.POST:
                return cm.response(cm.METHOD_NOT_ALLOWED)
            return self.finish()
        try:
            ids = tuple(int(p) for p in path)
        except ValueError:
            return cm.response(cm.NOT_FOUND, "bad path")
        if len(ids) > 3 or any(i < 0 or i > 0xFFFF for i in ids):
            return cm.response(cm.NOT_FOUND, "unsupported path")
        try:
            if req.code == cm.DELETE:
                return self.delete(ids)
            if req.code == cm.PUT:
                return self.write(req, ids)
            if req.code == cm.GET:
                if req.uint(cm.ACCEPT) == content.LINK:
                    return self.discover(ids)
                if ids and ids[0] in (0, 21):
                    return cm.response(cm.UNAUTHORIZED, "never readable")
            return cm.response(cm.METHOD_NOT_ALLOWED, "not a bootstrap operation")
        except Refused as e:
            return cm.response(e.code, str(e))
        except (ValueError, UnicodeError) as e:  # ContentError, TLVError, SenMLError, a value of the wrong type
            return cm.response(cm.BAD_REQUEST, str(e))

    def delete(self, ids):
        if len(ids) > 2:
            raise Refused(cm.BAD_REQUEST, "delete a resource")
        for oid in (ids[:1] or (0, 1, 21, 32770)):
            if oid not in self.inst:
                raise Refused(cm.BAD_REQUEST, "object %d cannot be deleted" % oid)
            objs = self.inst[oid]
            for iid in list(objs):
                if len(ids) == 2 and iid != ids[1]:
                    continue
                if oid == 0 and objs[iid].get(1):
                    if len(ids) == 2:
                        raise Refused(cm.BAD_REQUEST, "the bootstrap account stays")
                    continue
                del objs[iid]
        return cm.response(cm.DELETED)

    def write(self, req, ids):
        if not ids or ids[0] not in self.inst:
            raise Refused(cm.NOT_FOUND, "object not writable in bootstrap")
        oid = ids[0]
        fmt = req.uint(cm.CONTENT_FORMAT)
        if fmt is None:
            raise Refused(cm.BAD_REQUEST, "write without Content-Format")
        if fmt not in content.SUPPORTED:
            raise Refused(cm.UNSUPPORTED_CONTENT_FORMAT, "")
        types = TYPES[oid]
        if len(ids) == 1:  # several instances in one TLV
            if fmt != content.TLV:
                raise Refused(cm.BAD_REQUEST, "object-level write needs TLV")
            from . import tlv

            values = []
            for kind, iid, raw in tlv.decode(req.payload):
                if kind != tlv.OBJECT_INSTANCE:
                    raise Refused(cm.BAD_REQUEST, "object-level TLV holds instances")
                values += content.decode(fmt, (oid, iid), types, raw)
        else:
            values = content.decode(fmt, ids, types, req.payload)
        checked = []  # every value checked before any is kept: a bad write changes nothing
        for iid, rid, value in values:
            if rid not in types or len(ids) == 3 and rid != ids[2]:
                raise Refused(cm.BAD_REQUEST, "resource %d not writable here" % rid)
            checked.append((iid, rid, ob.convert(types[rid], value)))
        for iid, rid, value in checked:
            self.inst[oid].setdefault(iid, {})[rid] = value
        return cm.response(cm.CHANGED)

    def discover(self, ids):
        parts = ["</>;lwm2m=1.1"] if not ids else []
        for oid in (0, 1, 21):  # the TinyML object is in self.links
            if ids and ids[0] != oid:
                continue
            parts.append("</%d>" % oid)
            for iid in sorted(self.inst[oid]):
                r = self.inst[oid][iid]
                link = "</%d/%d>" % (oid, iid)
                if oid < 2 and 10 * (1 - oid) in r:  # the Short Server ID: /0/x/10, /1/x/0
                    link += ";ssid=%d" % r[10 * (1 - oid)]
                if oid == 0 and 0 in r:
                    link += ';uri="%s"' % r[0]
                parts.append(link)
        if not ids:
            parts += self.links
        resp = cm.response(cm.CONTENT, ",".join(parts))
        resp.add(cm.CONTENT_FORMAT, content.LINK)
        return resp

    # --- Bootstrap-Finish

    def finish(self):
        try:
            account = self.check()
        except Refused as e:
            print("bootstrap finish refused:", e)
            return cm.response(e.code, str(e))
        try:
            self.store(account)
        except OSError as e:
            return cm.response(cm.INTERNAL_SERVER_ERROR, "cannot store the account: %s" % e)
        self.account = account
        return cm.response(cm.CHANGED)

    def check(self):
        """The LwM2M server account, or Refused(4.06) saying what is missing."""
        def no(msg):
            return Refused(cm.NOT_ACCEPTABLE, msg)

        secs = [r for r in self.inst[0].values() if not r.get(1)]
        if len(secs) != 1:
            raise no("%d LwM2M server accounts, need 1" % len(secs))
        sec = secs[0]
        uri = sec.get(0)
        if not uri or not uri.startswith("coap://"):
            raise no("server URI %r is not coap://" % uri)
        if sec.get(2, 3) != 3:
            raise no("security mode %d not supported (3 NoSec, with OSCORE)" % sec[2])
        ssid = sec.get(10)
        srvs = [r for r in self.inst[1].values() if r.get(0) == ssid]
        if ssid is None or len(srvs) != 1:
            raise no("no Server instance for short server id %s" % ssid)
        srv = srvs[0]
        if srv.get(7, "U") != "U":
            raise no("binding %s not supported" % srv[7])
        lifetime = srv.get(1, 300)
        if lifetime < 1:
            raise no("lifetime %d" % lifetime)
        account = {"server": uri, "lifetime": lifetime, "binding": "U", "ssid": ssid}
        link = sec.get(17)
        if link is not None and link != (0xFFFF, 0xFFFF):  # the null link: no OSCORE
            o = self.inst[21].get(link[1]) if link[0] == 21 else None
            if o is None:
                raise no("OSCORE link %d:%d names no OSCORE instance" % link)
            for rid in (0, 1, 2):
                if rid not in o:
                    raise no("OSCORE instance lacks resource %d" % rid)
            if o.get(3, 10) != 10 or o.get(4, -10) != -10:
                raise no("OSCORE algorithms must be AES-CCM-16-64-128 (10) and HMAC-SHA256 (-10)")
            if not o[0] or len(o[1]) > MAX_ID_BYTES or len(o[2]) > MAX_ID_BYTES or o[1] == o[2]:
                raise no("OSCORE secret or IDs unusable")
            from binascii import hexlify

            keys = {"master_secret": o[0], "sender_id": o[1], "recipient_id": o[2], "master_salt": o.get(5, b"")}
            if 6 in o:
                keys["id_context"] = o[6]
            account["oscore"] = {k: hexlify(v).decode() for k, v in keys.items()}
        points = self.inst[32770].get(0, {}).get(ANCHOR_KEYS)
        if points is not None:
            account["trust_anchors"] = trust_anchors(points, no)
        return account


def trust_anchors(points, no):
    """{kid hex: point hex} (the device config's "trust_anchors") of concatenated 65-byte points; the points are
    checked on the curve when the installer reads them (tinyml.cose.anchors)."""
    import hashlib
    from binascii import hexlify

    n = len(points) // 65
    if len(points) % 65 or not 0 < n <= MAX_ANCHORS:
        raise no("trust anchor keys must be 1 to %d points of 65 bytes" % MAX_ANCHORS)
    out = {}
    for i in range(n):
        p = bytes(points[65 * i:65 * (i + 1)])
        if p[0] != 4:
            raise no("trust anchor %d is not an uncompressed point" % i)
        out[hexlify(hashlib.sha256(p).digest()[:8]).decode()] = hexlify(p).decode()
    return out


def request_msg(ep, name):
    msg = cm.Message(cm.CON, cm.POST, token=ep.new_token())
    msg.add(cm.URI_PATH, "bs")
    msg.add(cm.URI_QUERY, "ep=" + name)
    msg.add(cm.URI_QUERY, "pct=%d" % content.TLV)
    return msg


def _serve(ep, session, ms):
    end = time.ticks_add(time.ticks_ms(), ms)
    while session.account is None and time.ticks_diff(end, time.ticks_ms()) > 0:
        ep.poll(200)


def run(ep, bs_addr, name, session, attempt_ms=60000, backoff_max_ms=60000):
    """Bootstrap until a Bootstrap-Finish is accepted; -> the account. Each attempt sends a Bootstrap-Request
    and serves the server for attempt_ms; one that fails waits (still serving) 1 s, 2 s, ... up to
    backoff_max_ms before the next. The endpoint's handler is the session's meanwhile."""
    handler = ep.handler
    ep.handler = session.handle
    backoff = 1000
    try:
        while True:
            try:
                resp = ep.request(bs_addr, request_msg(ep, name))
                if resp.code == cm.CHANGED:
                    print("bootstrap requested")
                    _serve(ep, session, attempt_ms)
                    if session.account is None:
                        print("bootstrap did not finish")
                else:
                    print("bootstrap request answered", cm.code_str(resp.code))
            except (Timeout, Reset) as e:
                print("bootstrap request failed:", e)
            _serve(ep, session, backoff)  # the back-off; a late Finish still counts
            if session.account is not None:
                return session.account
            backoff = min(backoff * 2, backoff_max_ms)
    finally:
        ep.handler = handler
