"""The device's CoAP exchange layer and LwM2M registration over real UDP on loopback: a MicroPython device
process (lwm2m_client/tinyml_device.py) against a CPython peer that plays the server and sends edge cases."""

import time

import pytest
from aiocoap import message as am
from aiocoap import numbers as an

from coap_test_peer import ACK, CON, NON, RST, make


def registered(peer, tmp_path, **kw):
    peer.start_device(tmp_path, **kw)
    return peer.accept_register()


def test_register_query_and_object_links(peer, tmp_path):
    req = registered(peer, tmp_path, endpoint="node-7", lifetime=120)
    assert req.mtype == CON
    assert list(req.opt.uri_query) == ["ep=node-7", "lt=120", "lwm2m=1.1", "b=U"]
    assert req.opt.content_format == 40
    links = req.payload.decode().split(",")
    assert links[0] == '</>;rt="oma.lwm2m"'  # no ct=: the default format needs no announcing, and some servers refuse it
    for path in ("</1/0>", "</3/0>", "</5/0>", "</32770/0>"):
        assert path in links
    assert not any(link.startswith("</0") for link in links)  # Security is never announced


def test_piggybacked_response_and_non_request(peer, tmp_path):
    registered(peer, tmp_path)
    r = peer.request(an.GET, "/3/0/0")
    assert (r.mtype, r.code, r.payload) == (ACK, an.CONTENT, b"tinymlaas")
    r = peer.request(an.GET, "/3/0/17", mtype=NON)
    assert (r.mtype, r.code, r.payload) == (NON, an.CONTENT, b"tinyml-node")


def test_update_before_lifetime_then_reregister_on_404(peer, tmp_path):
    registered(peer, tmp_path, lifetime=2)
    t0 = time.monotonic()
    upd = peer.recv(timeout=5)
    assert upd.code == an.POST and list(upd.opt.uri_path) == ["rd", "7"]
    assert 1.2 < time.monotonic() - t0 < 2.0  # at 3/4 of the lifetime
    peer.send(make(ACK, an.NOT_FOUND, upd.mid, upd.token))
    again = peer.accept_register(location=("rd", "8"))
    assert list(again.opt.uri_path) == ["rd"]
    upd = peer.recv(timeout=5)
    assert list(upd.opt.uri_path) == ["rd", "8"]


def test_con_retransmission_backoff(peer, tmp_path):
    peer.start_device(tmp_path, ack_timeout_ms=200)
    times, mids = [], set()
    for _ in range(5):
        m = peer.recv(timeout=10)
        times.append(time.monotonic())
        mids.add(m.mid)
    assert len(mids) == 1  # a retransmission is the same message
    gaps = [b - a for a, b in zip(times, times[1:])]
    # initial timeout in [0.2, 0.3] s, doubled each time (ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4): the gaps are
    # t0 * 2^k, t0 estimated from all four (one datagram read late on a loaded machine moves two gaps, not t0)
    t0 = sum(gaps) / sum(2 ** k for k in range(len(gaps)))
    assert 0.17 < t0 < 0.36, gaps
    for k, g in enumerate(gaps):
        assert abs(g - t0 * 2 ** k) < 0.08 + 0.05 * k, gaps
    # after MAX_RETRANSMIT the exchange fails; the device backs off and registers afresh (new MID)
    m = peer.recv(timeout=10)
    assert m.mid not in mids and list(m.opt.uri_path) == ["rd"]


def test_duplicate_request_gets_cached_response(peer, tmp_path):
    registered(peer, tmp_path)
    msg = make(CON, an.GET, 0x4242, b"dd")
    msg.opt.uri_path = ["32770", "0", "0"]  # free heap: would differ if the handler ran twice
    raw = msg.encode()
    peer.send_raw(raw)
    first = peer.recv_raw()
    for _ in range(5):  # other exchanges in between (fewer than the 8-entry duplicate cache holds)
        assert peer.request(an.GET, "/3/0").code == an.CONTENT
    peer.send_raw(raw)
    assert peer.recv_raw() == first


def test_ping_gets_reset(peer, tmp_path):
    registered(peer, tmp_path)
    peer.send_raw(bytes.fromhex("40001234"))
    assert peer.recv_raw() == bytes.fromhex("70001234")


MALFORMED = {
    "token length 9": "49011001" + "00" * 12,
    "token length 15": "4f011002" + "00" * 20,
    "delta nibble 15": "40011003f1",
    "length nibble 15": "400110041f",
    "option length past end": "40011005b87264",
    "extension past end": "40011006d1",
    "empty payload after marker": "40011007ff",
    "reserved class": "40e01008",
    "empty with token": "41001009aa",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_con_is_reset_and_device_stays_registered(peer, tmp_path, name):
    registered(peer, tmp_path)
    data = bytes.fromhex(MALFORMED[name])
    peer.send_raw(data)
    rst = am.Message.decode(peer.recv_raw())
    assert rst.mtype == RST and rst.mid == int.from_bytes(data[2:4], "big") and rst.code == an.EMPTY
    assert peer.request(an.GET, "/3/0/0").payload == b"tinymlaas"


def test_truncations_and_garbage_never_break_the_device(peer, tmp_path):
    registered(peer, tmp_path)
    good = make(NON, an.PUT, 0x5000, b"\x01\x02", b"12")
    good.opt.uri_path = ["1", "0", "1"]
    good.opt.content_format = 0
    raw = good.encode()
    for n in range(len(raw)):  # every truncation, as NON so no Reset is owed
        peer.send_raw(raw[:n])
    for junk in (b"\xff" * 64, bytes(range(256)), b"\x40\x01\x00\x01" + b"\xdd" * 40):
        peer.send_raw(junk)
    assert peer.request(an.GET, "/3/0/0").payload == b"tinymlaas"
    assert peer.request(an.GET, "/1/0/1").payload == b"300"  # the truncated writes changed nothing


def test_unknown_critical_option_gets_bad_option(peer, tmp_path):
    registered(peer, tmp_path)
    # built by hand: Uri-Path 3/0/0 then option 2049 (odd, unknown): delta 2038 -> nibble 14, ext 1769
    raw = bytes.fromhex("41016000") + b"x" + bytes.fromhex("b133" "0130" "0130") + bytes([0xE0]) + (
        2049 - 11 - 269).to_bytes(2, "big")
    peer.send_raw(raw)
    r = am.Message.decode(peer.recv_raw())
    assert (r.mtype, r.code, r.mid) == (ACK, an.BAD_OPTION, 0x6000)


def test_refused_registration_backs_off(peer, tmp_path):
    # first boot: the server refuses twice, then accepts
    peer.start_device(tmp_path, lifetime=2)
    times = []
    for _ in range(3):
        req = peer.recv(timeout=10)
        assert list(req.opt.uri_path) == ["rd"]
        times.append(time.monotonic())
        peer.send(make(ACK, an.FORBIDDEN, req.mid, req.token))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 0.9 < gaps[0] < 1.6 and 1.9 < gaps[1] < 2.8, gaps
    peer.accept_register()
    # later: the server forgets the device (4.04 to Update), then refuses the new registration
    upd = peer.recv(timeout=5)
    peer.send(make(ACK, an.NOT_FOUND, upd.mid, upd.token))
    times = []
    for _ in range(3):
        req = peer.recv(timeout=10)
        assert list(req.opt.uri_path) == ["rd"]
        times.append(time.monotonic())
        peer.send(make(ACK, an.FORBIDDEN, req.mid, req.token))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 0.9 < gaps[0] < 1.6 and 1.9 < gaps[1] < 2.8, gaps


def test_unanswered_update_does_not_block_the_device(peer, tmp_path):
    registered(peer, tmp_path, lifetime=2)
    peer.request(an.PUT, "/3/0/13", uri_query=["pmax=1"])
    assert peer.request(an.GET, "/3/0/13", observe=0, token=b"nb").opt.observe is not None
    updates, notes, answered = 0, 0, 0
    end = time.monotonic() + 6
    while time.monotonic() < end:
        try:
            m = peer.recv(timeout=0.2)
        except TimeoutError:
            continue
        if m.code == an.POST and list(m.opt.uri_path) == ["rd", "7"]:
            updates += 1  # never answered: the device keeps retransmitting it
            assert peer.request(an.GET, "/3/0/0", timeout=1).payload == b"tinymlaas"
            answered += 1
        elif m.token == b"nb":
            notes += 1
    assert updates >= 2 and answered == updates  # the Update was retransmitted; requests still answered
    assert notes >= 3  # pmax notifications kept coming while the Update was pending


def test_separate_response_to_register(peer, tmp_path):
    peer.start_device(tmp_path)
    req = peer.recv(timeout=10)
    peer.send(make(ACK, an.EMPTY, req.mid))  # "later": an empty ACK stops the retransmissions
    peer.no_datagram(2.5)  # nothing is retransmitted past the first ACK_TIMEOUT
    resp = make(CON, an.CREATED, 0x3333, req.token)
    resp.opt.location_path = ["rd", "sep"]
    peer.send(resp)
    ack = peer.recv(timeout=5)
    assert (ack.mtype, ack.code, ack.mid) == (ACK, an.EMPTY, 0x3333)
    assert peer.request(an.GET, "/3/0/0").payload == b"tinymlaas"
    # a CON response nobody asked for is rejected with Reset
    stray = make(CON, an.CONTENT, 0x3334, b"zz")
    peer.send(stray)
    rst = peer.recv(timeout=5)
    assert (rst.mtype, rst.mid) == (RST, 0x3334)
    assert "registered /rd/sep" in peer.stop_device()
