"""Client-initiated Bootstrap (lwm2m_client/lwm2m/bootstrap.py, LwM2M 1.1 §5.2.7 / §6.1.7) with the real
`micropython` device: the test peer is the Bootstrap-Server (writes in TLV built with the host's codecs), a second
peer holding aiocoap's OSCORE context for the written keys is the LwM2M server the device then registers with."""

import json
import os
import socket
import subprocess

import cbor2
import pytest
from aiocoap import message as am
from aiocoap import numbers as an
from aiocoap import oscore as aiocoap_oscore

from coap_test_peer import ACK, CON, Peer, make
from test_oscore_client import OscorePeer
from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import trust_args
from tinymlaas.lwm2m import values as V
from tinymlaas.lwm2m.codecs.scalar import value_to_tlv_bytes
from tinymlaas.lwm2m.codecs.tlv import RESOURCE, encode_entry
from tinymlaas.paths import LWM2M_CLIENT

SECRET = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")  # the keys the Bootstrap-Server hands out
SALT = bytes.fromhex("1122334455667788")
DEVICE_ID = b"\x0b\x01"
SERVER_ID = b"\x5e"
SSID = 101


def tlv(*resources):
    """TLV of an instance's resources: (rid, type, value), ..."""
    return b"".join(encode_entry(RESOURCE, rid, value_to_tlv_bytes(v, t)) for rid, t, v in resources)


def security(uri, oscore_link=True):
    res = [(0, V.STRING, uri), (1, V.BOOLEAN, False), (2, V.INTEGER, 3), (10, V.INTEGER, SSID)]
    if oscore_link:
        res.append((17, V.OBJLNK, V.ObjLink(21, 0)))
    return tlv(*res)


OSCORE_INSTANCE = tlv((0, V.OPAQUE, SECRET), (1, V.OPAQUE, DEVICE_ID), (2, V.OPAQUE, SERVER_ID),
                      (3, V.INTEGER, 10), (4, V.INTEGER, -10), (5, V.OPAQUE, SALT))
SERVER_INSTANCE = tlv((0, V.INTEGER, SSID), (1, V.INTEGER, 120), (7, V.STRING, "U"))


def server_context(directory, secret=SECRET, salt=SALT, sender=SERVER_ID, recipient=DEVICE_ID):
    directory.mkdir()
    (directory / "settings.json").write_text(json.dumps({
        "sender-id_hex": sender.hex(), "recipient-id_hex": recipient.hex(),
        "secret_hex": secret.hex(), "salt_hex": salt.hex()}))
    return aiocoap_oscore.FilesystemSecurityContext(str(directory))


def start_device(peer, tmp_path, bs_port, extra=()):
    cmd = unixport.command(LWM2M_CLIENT / "tinyml_device.py", "512k", [
        "--bootstrap", "coap://127.0.0.1:%d" % bs_port, "--endpoint", "boot1", "--data-dir", tmp_path / "flash",
        "--ack-timeout-ms", 1000, *trust_args(), *extra])
    peer.proc = subprocess.Popen(cmd, env=unixport.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 cwd=tmp_path)


def put(peer, path, payload, fmt=11542):
    return peer.request(an.PUT, path, payload, content_format=fmt)


def discover(peer):
    r = peer.request(an.GET, "/", accept=40)
    assert r.code == an.CONTENT and r.opt.content_format == 40, r
    return r.payload.decode()


def accept_bootstrap_request(bs):
    try:
        req = bs.recv(10)
    except socket.timeout:
        raise AssertionError("no Bootstrap-Request; device output:\n" + bs.stop_device())
    assert req.code == an.POST and list(req.opt.uri_path) == ["bs"], req
    bs.send(make(ACK, an.CHANGED, req.mid, req.token))
    return req


@pytest.fixture
def peers(tmp_path):
    bs = Peer()
    srv = OscorePeer(server_context(tmp_path / "server-ctx"))
    yield bs, srv
    srv.close()
    bs.close()


def test_bootstrap_then_register_under_oscore_and_keep_the_account(peers, tmp_path):
    bs, srv = peers
    start_device(bs, tmp_path, bs.port)
    req = accept_bootstrap_request(bs)
    assert sorted(req.opt.uri_query) == ["ep=boot1", "pct=11542"]

    # Bootstrap-Delete from another port of the Bootstrap-Server's host: accepted
    other = Peer()
    try:
        other.addr = bs.addr
        assert other.request(an.DELETE, "/").code == an.DELETED
    finally:
        other.close()
    links = discover(bs)
    assert links.startswith("</>;lwm2m=1.1,</0>,</0/0>;uri=") and "</1>" in links and "</3/0>" in links

    # a malformed TLV (second entry runs past the end) gets 4.00 and writes nothing, not even the first entry
    bad = security("coap://127.0.0.1:%d" % srv.port) + b"\xc8\x0b\x10ab"
    assert put(bs, "/0/1", bad).code == an.BAD_REQUEST
    # a value of the wrong type too (Short Server ID as a string)
    assert put(bs, "/0/1", tlv((0, V.STRING, "coap://x"), (10, V.STRING, "abc"))).code == an.BAD_REQUEST
    assert "</0/1>" not in discover(bs)

    assert put(bs, "/0/1", security("coap://127.0.0.1:%d" % srv.port)).code == an.CHANGED
    assert put(bs, "/21/0", OSCORE_INSTANCE).code == an.CHANGED
    # nothing written is readable, not even by the Bootstrap-Server
    assert bs.request(an.GET, "/21/0/0").code == an.UNAUTHORIZED
    assert bs.request(an.GET, "/0/1").code == an.UNAUTHORIZED
    # Finish without a Server instance: 4.06 with the reason, and the device stays in bootstrap
    r = bs.request(an.POST, "/bs")
    assert r.code == an.NOT_ACCEPTABLE and b"Server instance" in r.payload, r
    assert put(bs, "/1/0", SERVER_INSTANCE).code == an.CHANGED
    assert ";ssid=101" in discover(bs)
    assert bs.request(an.POST, "/bs").code == an.CHANGED

    # the device registers with the written server, protected with the written keys
    plain, outer = srv.accept_register()
    assert "ep=boot1" in plain.opt.uri_query and "lt=120" in plain.opt.uri_query
    assert outer.opt.oscore[1 + (outer.opt.oscore[0] & 7):] == DEVICE_ID  # kid
    account = json.loads((tmp_path / "flash" / "lwm2m-account.json").read_text())
    assert account["server"] == "coap://127.0.0.1:%d" % srv.port and account["lifetime"] == 120
    assert account["binding"] == "U" and account["oscore"] == {
        "master_secret": SECRET.hex(), "master_salt": SALT.hex(), "sender_id": DEVICE_ID.hex(),
        "recipient_id": SERVER_ID.hex()}
    # the management server reads the device under OSCORE, but never Security or OSCORE
    r = srv.request(an.GET, "/1/0/1")
    assert r.code == an.CONTENT and r.payload == b"120"
    for path in ("/0/1", "/21/0/0", "/0"):
        assert srv.request(an.GET, path).code == an.UNAUTHORIZED, path

    # a restart uses the stored account: straight to the server, no Bootstrap-Request
    out = bs.stop_device()
    assert "bootstrapped: server coap://127.0.0.1:%d under OSCORE" % srv.port in out
    start_device(srv, tmp_path, bs.port)
    plain, _ = srv.accept_register()
    assert "ep=boot1" in plain.opt.uri_query
    bs.no_datagram(0.5)


def test_bootstrap_request_is_retried_and_other_hosts_refused(peers, tmp_path):
    bs, srv = peers
    start_device(bs, tmp_path, bs.port, extra=("--bootstrap-timeout-ms", 1500))
    req = accept_bootstrap_request(bs)
    # a request from another host (127.0.0.2) is refused
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        stranger.bind(("127.0.0.2", 0))
        stranger.settimeout(5)
        msg = make(CON, an.DELETE, 0x77, b"st")
        stranger.sendto(msg.encode(), bs.addr)
        r = am.Message.decode(stranger.recvfrom(2048)[0])
        assert r.code == an.UNAUTHORIZED and r.payload == b"not the bootstrap server"
    finally:
        stranger.close()
    # a NoSec account (no OSCORE link) written in SenML-CBOR, Finish only later
    uri = "coap://127.0.0.1:%d" % srv.port
    senml = [{-2: "/0/1/", 0: "0", 3: uri}, {0: "1", 4: False}, {0: "10", 2: SSID}]
    assert put(bs, "/0/1", cbor2.dumps(senml), fmt=112).code == an.CHANGED
    # the attempt times out (1.5 s here) and the device asks again after its back-off
    again = bs.recv(10)
    assert again.code == an.POST and list(again.opt.uri_path) == ["bs"] and again.mid != req.mid
    bs.send(make(ACK, an.CHANGED, again.mid, again.token))
    assert put(bs, "/1/0", SERVER_INSTANCE).code == an.CHANGED
    assert bs.request(an.POST, "/bs").code == an.CHANGED
    req = Peer.accept_register(srv)  # NoSec now
    assert "ep=boot1" in req.opt.uri_query and req.opt.oscore is None


def test_bootstrap_under_oscore_hands_over_to_the_servers_keys(peers, tmp_path):
    """With "bootstrap_oscore" the whole bootstrap is protected with the bootstrap keys (the Finish's 2.04 too);
    afterwards the device talks to its server with the written keys only."""
    _, srv = peers
    bs_secret, bs_device, bs_server = os.urandom(16), b"\xb0", b"\xb5"
    bs = OscorePeer(server_context(tmp_path / "bs-ctx", bs_secret, b"", bs_server, bs_device))
    try:
        keys = {"master_secret": bs_secret.hex(), "master_salt": "", "sender_id": bs_device.hex(),
                "recipient_id": bs_server.hex()}
        start_device(bs, tmp_path, bs.port, extra=("--bootstrap-oscore", json.dumps(keys)))
        outer = bs.recv(10)
        plain, rid = bs.ctx.unprotect(outer)
        assert not outer.opt.uri_path and list(plain.opt.uri_path) == ["bs"] and "ep=boot1" in plain.opt.uri_query
        protected, _ = bs.ctx.protect(am.Message(code=an.CHANGED), rid)
        protected.mtype, protected.mid, protected.token = ACK, outer.mid, outer.token
        bs.send_raw(protected.encode())
        # an unprotected write is refused; protected ones (after the device's Echo check) are taken
        msg = make(CON, an.DELETE, bs.next_mid(), b"np")
        bs.send_plain(msg)
        assert Peer.response_to(bs, msg).code == an.UNAUTHORIZED
        assert bs.request(an.DELETE, "/").code == an.DELETED and len(bs.echo_asked) == 1
        assert put(bs, "/0/1", security("coap://127.0.0.1:%d" % srv.port)).code == an.CHANGED
        assert put(bs, "/21/0", OSCORE_INSTANCE).code == an.CHANGED
        assert put(bs, "/1/0", SERVER_INSTANCE).code == an.CHANGED
        r = bs.request(an.POST, "/bs")
        assert r.code == an.CHANGED and bs.outer.opt.oscore is not None  # opened with the bootstrap context
        plain, outer = srv.accept_register()
        assert outer.opt.oscore[1 + (outer.opt.oscore[0] & 7):] == DEVICE_ID
        assert srv.request(an.GET, "/3/0/0").payload == b"tinymlaas"
        # the bootstrap keys are no longer accepted
        r = bs.request(an.GET, "/3/0/0")
        assert r.code == an.UNAUTHORIZED and bs.outer.opt.oscore is None
    finally:
        bs.close()
