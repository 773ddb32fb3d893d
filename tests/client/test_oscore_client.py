"""The device's LwM2M client with OSCORE configured (lwm2m_client/coap/endpoint.py `security`): every request and
response with the server is protected. The server side here is aiocoap's OSCORE security context on the test
peer's socket, protecting and unprotecting by hand (aiocoap's OscoreSiteWrapper cannot be imported here, see
test_oscore.py)."""

import json
import os
import socket
import time

import pytest
from aiocoap import message as am
from aiocoap import numbers as an

from coap_test_peer import ACK, CON, Peer, make, push
from packages import package
from test_oscore import DEVICE_ID, HOST_ID, SALT, SECRET, aiocoap_context

DEVICE_OSCORE = {"master_secret": SECRET.hex(), "master_salt": SALT.hex(), "sender_id": DEVICE_ID.hex(),
                 "recipient_id": HOST_ID.hex()}


def partial_iv(msg):
    """The Partial IV in a protected message's OSCORE option, or None."""
    value = msg.opt.oscore
    if not value:
        return None
    return int.from_bytes(value[1:1 + (value[0] & 7)], "big")


class OscorePeer(Peer):
    """The test peer as an OSCORE-protected LwM2M server: requests sent with `send` (so `request`, `push` and
    `put_block` too) are protected, and the responses `response_to` finds are returned unprotected, with the outer
    message in `.outer`. `send_plain` sends without protection. A 4.01 with an Echo value (the device's check
    of the first request after its boot) is answered as a client does (RFC 9175): the request again, with it."""

    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.request_ids = {}  # token -> aiocoap RequestIdentifiers
        self.outer = None
        self.sent = None  # the last protected datagram
        self.echo = None  # the device's Echo value; sent in every request once known
        self.echo_asked = []  # the outer messages of the 4.01 Echo responses

    def send(self, msg):
        if not msg.code.is_request():
            return self.send_plain(msg)
        if self.echo is not None:
            msg.opt.echo = self.echo
        protected, rid = self.ctx.protect(msg)
        protected.mtype, protected.mid, protected.token = msg.mtype, msg.mid, msg.token
        self.request_ids[msg.token] = rid
        self.sent = protected.encode()
        self.send_raw(self.sent)

    def send_plain(self, msg):
        self.send_raw(msg.encode())

    def response_to(self, msg, timeout=5.0):
        r = self._open(msg, super().response_to(msg, timeout))
        if r.code == an.UNAUTHORIZED and r.opt.echo is not None and self.outer.opt.oscore is not None:
            self.echo_asked.append(self.outer)
            self.echo = r.opt.echo
            msg.mid = self.next_mid()
            self.send(msg)
            r = self._open(msg, super().response_to(msg, timeout))
        return r

    def _open(self, msg, r):
        self.outer = r
        rid = self.request_ids.get(msg.token)
        if rid is None or r.opt.oscore is None:
            return r
        return self.ctx.unprotect(r, rid)[0]

    def accept_register(self, location=("rd", "7"), timeout=10.0):
        """Open the device's protected Register, answer it protected with 2.01; -> (plain request, outer)."""
        try:
            outer = self.recv(timeout)
        except socket.timeout:
            raise AssertionError("device did not register; its output:\n" + self.stop_device())
        plain, rid = self.ctx.unprotect(outer)
        assert outer.code == an.POST and plain.code == an.POST and list(plain.opt.uri_path) == ["rd"], plain
        protected, _ = self.ctx.protect(am.Message(code=an.CREATED, location_path=list(location)), rid)
        protected.mtype, protected.mid, protected.token = ACK, outer.mid, outer.token
        self.send_raw(protected.encode())
        return plain, outer

    def start_device(self, tmp_path, **kw):
        return super().start_device(tmp_path, extra=("--oscore", json.dumps(DEVICE_OSCORE)), **kw)


@pytest.fixture
def speer(tmp_path):
    p = OscorePeer(aiocoap_context(tmp_path / "host", HOST_ID, DEVICE_ID))
    yield p
    p.close()


def registered(speer, tmp_path):
    speer.start_device(tmp_path)
    return speer.accept_register()


def test_register_read_and_refusals(speer, tmp_path):
    plain, outer = registered(speer, tmp_path)
    # the Register is protected: the outer message shows nothing of the endpoint name or the path
    assert "ep=dev1" in plain.opt.uri_query and plain.payload.startswith(b'</>;rt="oma.lwm2m"')
    assert not outer.opt.uri_path and not outer.opt.uri_query and b"dev1" not in outer.payload
    assert outer.opt.oscore[1 + (outer.opt.oscore[0] & 7):] == DEVICE_ID  # kid
    # a protected Read of /3/0 gets a protected 2.05 (outer 2.04) the server opens, after the device checked
    # that the first request since its boot is fresh: a protected 4.01 with Echo and a Partial IV of its own
    r = speer.request(an.GET, "/3/0")
    assert len(speer.echo_asked) == 1 and partial_iv(speer.echo_asked[0]) is not None
    assert speer.outer.code == an.CHANGED and speer.outer.opt.oscore == b"" and not speer.outer.opt.content_format
    assert r.code == an.CONTENT and r.opt.content_format == 11542 and b"tinymlaas" in r.payload
    # unprotected requests are refused with an unprotected 4.01 and not executed: Reboot stays undone
    for code, path in ((an.GET, "/3/0"), (an.POST, "/3/0/4")):
        msg = make(CON, code, speer.next_mid(), os.urandom(2))
        msg.opt.uri_path = path.strip("/").split("/")
        speer.send_plain(msg)
        r = speer.response_to(msg)
        assert r.code == an.UNAUTHORIZED and r.opt.oscore is None and r.payload == b"OSCORE required"
    # the same protected datagram again (a retransmission: same MID) gets the cached protected answer; under a
    # new message ID it is a replay, refused unprotected
    r = speer.request(an.GET, "/3/0/0")
    assert r.payload == b"tinymlaas"
    first = speer.outer
    speer.send_raw(speer.sent)
    again = speer.recv()
    assert (again.mid, again.payload, again.opt.oscore) == (first.mid, first.payload, first.opt.oscore)
    replay = bytearray(speer.sent)
    replay[2:4] = speer.next_mid().to_bytes(2, "big")
    speer.send_raw(replay)
    r = speer.recv()
    assert r.code == an.UNAUTHORIZED and r.opt.oscore is None and r.payload == b"replayed request"
    # a request protected under another context is refused with the codec's reason
    stranger = aiocoap_context(tmp_path / "stranger", b"\x09", DEVICE_ID)
    msg = make(CON, an.GET, speer.next_mid(), b"\x55")
    msg.opt.uri_path = ["3", "0"]
    protected, _ = stranger.protect(msg)
    protected.mtype, protected.mid, protected.token = CON, msg.mid, msg.token
    speer.send_raw(protected.encode())
    r = speer.recv()
    assert r.code == an.UNAUTHORIZED and r.payload == b"unknown kid"
    assert speer.proc.poll() is None  # still running (not rebooted)
    assert len(speer.echo_asked) == 1  # once per boot
    out = speer.stop_device()
    assert "oscore: request refused: replayed request" in out and "unknown kid" in out


def test_observe_notifications_have_growing_partial_ivs(speer, tmp_path):
    registered(speer, tmp_path)
    assert speer.request(an.PUT, "/3/0/13", uri_query=["pmax=1"]).code == an.CHANGED
    r = speer.request(an.GET, "/3/0/13", token=b"\x0b\x5e", observe=0)
    rid = speer.request_ids[b"\x0b\x5e"]
    # FETCH outside (RFC 8613 §4.2), an Observe 2.05 with its own Partial IV inside and outside
    assert r.code == an.CONTENT and speer.outer.code == an.CONTENT and speer.outer.opt.observe is not None
    pivs = [partial_iv(speer.outer)]
    end = time.monotonic() + 10
    while len(pivs) < 4 and time.monotonic() < end:
        note = speer.recv()
        if note.token != b"\x0b\x5e":
            continue
        assert note.code == an.CONTENT and note.opt.observe is not None
        plain = speer.ctx.unprotect(note, rid)[0]
        assert plain.code == an.CONTENT and int(plain.payload) > 1_600_000_000
        pivs.append(partial_iv(note))
    assert len(pivs) == 4 and None not in pivs and pivs == sorted(set(pivs)), pivs


def test_block1_package_write_is_protected_block_by_block(speer, tmp_path):
    registered(speer, tmp_path)
    pkg, _, _ = package("fc_no_bias_softmax", name="secret-model", version="2")
    assert len(pkg) > 1024
    assert push(speer, "/5/0/0", pkg).code == an.CHANGED
    assert speer.outer.code == an.CHANGED and speer.outer.opt.block1 is None  # Block1 is inner (Class E)
    assert speer.request(an.GET, "/5/0/3").payload == b"2"  # State: Downloaded


def test_reboot_keeps_sequence_numbers_and_refuses_old_requests(speer, tmp_path):
    """Two runs on the same data directory: the second run's Partial IVs are all above the first's, and a
    request of the first run replayed to the second is not executed (its replay window starts empty: Echo)."""
    _, outer = registered(speer, tmp_path)
    first = [partial_iv(outer)]
    speer.request(an.PUT, "/3/0/13", uri_query=["pmax=1"])
    speer.request(an.GET, "/3/0/13", token=b"\x0b\x5f", observe=0)
    first.append(partial_iv(speer.outer))
    first.append(partial_iv(speer.recv()))  # a notification
    assert speer.request(an.POST, "/3/0/4").code == an.CHANGED  # Reboot: the process exits
    reboot = speer.sent
    assert speer.proc.wait(10) == 75
    assert (tmp_path / "flash" / "oscore-seq").is_file()
    try:
        while True:
            speer.recv(0.2)  # drop what the first run sent last
    except socket.timeout:
        pass
    _, outer = registered(speer, tmp_path)
    second = partial_iv(outer)
    assert second > max(first), (first, second)
    speer.send_raw(reboot)  # the old Reboot again: answered with an Echo request, not executed
    r = speer.recv()
    assert r.opt.oscore and speer.ctx.unprotect(r, speer.request_ids[r.token])[0].code == an.UNAUTHORIZED
    assert speer.request(an.GET, "/3/0/0").payload == b"tinymlaas"  # with the new Echo value
    assert speer.proc.poll() is None


def test_device_repeats_its_request_with_the_servers_echo(speer, tmp_path):
    """A server whose replay window is not initialised (aiocoap after its restart) answers 4.01 with Echo; the
    device repeats the request with that Echo inside, and registers."""
    speer.start_device(tmp_path)
    outer = speer.recv(10)
    plain, rid = speer.ctx.unprotect(outer)
    assert plain.opt.echo is None
    protected, _ = speer.ctx.protect(am.Message(code=an.UNAUTHORIZED, echo=b"fresh?42"), rid)
    protected.mtype, protected.mid, protected.token = ACK, outer.mid, outer.token
    speer.send_raw(protected.encode())
    plain, again = speer.accept_register()
    assert plain.opt.echo == b"fresh?42" and again.token == outer.token and again.mid != outer.mid
    assert partial_iv(again) > partial_iv(outer)


def test_unprotected_answer_fails_the_registration(speer, tmp_path):
    """A server that answers the protected Register unprotected (what a server without the context does) fails
    that exchange like a timeout: the device logs why and registers again later."""
    speer.start_device(tmp_path, ack_timeout_ms=500)
    outer = speer.recv(10)
    resp = make(ACK, an.CREATED, outer.mid, outer.token)
    resp.opt.location_path = ["rd", "7"]
    speer.send_plain(resp)
    again = speer.recv(10)  # the next attempt, with a new Partial IV
    assert again.opt.oscore and partial_iv(again) > partial_iv(outer)
    assert "no OSCORE option" in speer.stop_device()
