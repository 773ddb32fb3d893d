"""LwM2M device management on the MicroPython client over loopback UDP: Read in every content format,
Write (replace, partial update, TLV/SenML/text), Execute, Discover, Write-Attributes, Observe/Notify/Cancel."""

import json
import time

import cbor2
from aiocoap import numbers as an

from coap_test_peer import CON, NON, RST, make


def registered(peer, tmp_path, **kw):
    peer.start_device(tmp_path, **kw)
    peer.accept_register()


def tlv_items(buf):
    """Minimal independent TLV reader: [(kind, id, value)]."""
    out, pos = [], 0
    while pos < len(buf):
        t = buf[pos]
        pos += 1
        idlen = 2 if t & 0x20 else 1
        ident = int.from_bytes(buf[pos:pos + idlen], "big")
        pos += idlen
        ll = (t >> 3) & 3
        n = t & 7 if ll == 0 else int.from_bytes(buf[pos:pos + ll], "big")
        pos += ll
        out.append((t >> 6, ident, buf[pos:pos + n]))
        pos += n
    return out


def test_read_formats(peer, tmp_path):
    registered(peer, tmp_path)
    r = peer.request(an.GET, "/3/0", accept=11542)
    assert r.opt.content_format == 11542
    res = {i: v for k, i, v in tlv_items(r.payload)}
    assert res[0] == b"tinymlaas" and res[16] == b"U" and 0 < int.from_bytes(res[21], "big", signed=True)
    r = peer.request(an.GET, "/3", accept=11542)  # object level: wrapped in an object-instance TLV
    [(kind, iid, inner)] = tlv_items(r.payload)
    assert (kind, iid) == (0, 0) and tlv_items(inner)[0][2] == b"tinymlaas"
    r = peer.request(an.GET, "/3/0/0", accept=112)
    assert cbor2.loads(r.payload) == [{-2: "/3/0/0", 0: "", 3: "tinymlaas"}]
    r = peer.request(an.GET, "/1/0", accept=110)
    recs = json.loads(r.payload)
    assert recs[0]["bn"] == "/1/" and {x["n"]: x.get("v", x.get("vs")) for x in recs}["0/1"] == 300
    r = peer.request(an.GET, "/3/0/9", accept=11542)
    assert tlv_items(r.payload) == [(3, 9, b"d")]
    assert peer.request(an.GET, "/3/0/0", accept=50).code == an.NOT_ACCEPTABLE
    assert peer.request(an.GET, "/3/0", accept=0).code == an.NOT_ACCEPTABLE
    assert peer.request(an.GET, "/3/0/5").code == an.NOT_FOUND
    assert peer.request(an.GET, "/3/1").code == an.NOT_FOUND
    assert peer.request(an.GET, "/4").code == an.NOT_FOUND
    assert peer.request(an.GET, "/0/0").code == an.UNAUTHORIZED  # Security is not readable by the server
    assert peer.request(an.GET, "/3/0/4").code == an.METHOD_NOT_ALLOWED  # executable only


def test_large_read_is_served_with_block2_from_one_snapshot(peer, tmp_path):
    registered(peer, tmp_path)

    def read_all():
        whole, etags, num = b"", set(), 0
        while True:
            # 16-byte blocks of SenML-CBOR: Free Heap and Largest Block change between requests, so only blocks
            # of one snapshot decode as one CBOR item
            r = peer.request(an.GET, "/32770/0", accept=112, block2=(num, False, 0))
            assert r.code == an.CONTENT and r.opt.block2.block_number == num
            whole += r.payload
            etags.add(r.opt.etag)
            if not r.opt.block2.more:
                return whole, etags, num
            num += 1

    whole, etags, last = read_all()
    assert last > 20 and len(etags) == 1
    recs = cbor2.loads(whole)
    names = {x[0] for x in recs}
    assert {"0/0", "0/10", "0/23"} <= names and "0/19" not in names and "0/21" not in names
    whole2, etags2, _ = read_all()
    assert etags2 != etags  # a new read (block 0) is a new snapshot
    cbor2.loads(whole2)


def test_write_replace_partial_and_rejects(peer, tmp_path):
    registered(peer, tmp_path, lifetime=300)
    assert peer.request(an.PUT, "/1/0/2", payload=b"5", content_format=0).code == an.CHANGED
    assert peer.request(an.GET, "/1/0/2").payload == b"5"
    # partial update of the instance in TLV: pmax=60 (resource 3)
    assert peer.request(an.POST, "/1/0", payload=bytes.fromhex("c1033c"), content_format=11542).code == an.CHANGED
    assert peer.request(an.GET, "/1/0/3").payload == b"60"
    # SenML-CBOR write of two resources
    body = cbor2.dumps([{-2: "/1/0/", 0: "2", 2: 1}, {0: "3", 2: 30}])
    assert peer.request(an.POST, "/1/0", payload=body, content_format=112).code == an.CHANGED
    assert peer.request(an.GET, "/1/0/2").payload == b"1" and peer.request(an.GET, "/1/0/3").payload == b"30"
    # refused without changing anything: a read-only resource in the batch, a wrong type, no format
    body = cbor2.dumps([{-2: "/1/0/", 0: "2", 2: 9}, {0: "0", 2: 5}])
    assert peer.request(an.POST, "/1/0", payload=body, content_format=112).code == an.METHOD_NOT_ALLOWED
    assert peer.request(an.GET, "/1/0/2").payload == b"1"
    assert peer.request(an.PUT, "/1/0/2", payload=b"abc", content_format=0).code == an.BAD_REQUEST
    assert peer.request(an.PUT, "/1/0/2", payload=b"7").code == an.BAD_REQUEST
    assert peer.request(an.PUT, "/3/0/0", payload=b"x", content_format=0).code == an.METHOD_NOT_ALLOWED
    assert peer.request(an.PUT, "/1/0/2", payload=b"7", content_format=60).code == an.UNSUPPORTED_CONTENT_FORMAT
    assert peer.request(an.DELETE, "/3/0").code == an.METHOD_NOT_ALLOWED
    assert peer.request(an.POST, "/3").code == an.METHOD_NOT_ALLOWED


def test_current_time_is_writable_and_a_streamed_resource_takes_only_octet_stream(peer, tmp_path):
    """/3/0/13 Current Time is RW (OMA object 3): a server sets the device's clock in text or TLV. A streamed
    opaque resource (the TinyML input /32770/0/21) written in another format answers 4.15 and says which it takes,
    for a resource path as for an instance write that names it."""
    registered(peer, tmp_path)
    assert peer.request(an.PUT, "/3/0/13", payload=b"2000000000", content_format=0).code == an.CHANGED
    assert 2000000000 <= int(peer.request(an.GET, "/3/0/13").payload) <= 2000000005
    tlv_time = bytes([0xC4, 13]) + (1900000000).to_bytes(4, "big")
    assert peer.request(an.POST, "/3/0", payload=tlv_time, content_format=11542).code == an.CHANGED
    assert 1900000000 <= int(peer.request(an.GET, "/3/0/13").payload) <= 1900000005
    assert peer.request(an.PUT, "/3/0/13", payload=b"-5", content_format=0).code == an.BAD_REQUEST
    for req in (dict(code=an.PUT, path="/32770/0/21", payload=b"AAEC", content_format=0),
                dict(code=an.POST, path="/32770/0", payload=bytes([0xC3, 21, 0, 1, 2]), content_format=11542)):
        r = peer.request(**req)
        assert r.code == an.UNSUPPORTED_CONTENT_FORMAT and b"application/octet-stream" in r.payload, r


def test_lifetime_write_triggers_update(peer, tmp_path):
    registered(peer, tmp_path)
    assert peer.request(an.PUT, "/1/0/1", payload=b"77", content_format=0).code == an.CHANGED
    upd = peer.recv(timeout=5)
    assert upd.code == an.POST and list(upd.opt.uri_path) == ["rd", "7"] and "lt=77" in upd.opt.uri_query
    peer.send(make(2, an.CHANGED, upd.mid, upd.token))
    assert peer.request(an.POST, "/1/0/8").code == an.CHANGED  # Registration Update Trigger
    upd = peer.recv(timeout=5)
    assert upd.code == an.POST and list(upd.opt.uri_path) == ["rd", "7"]


def test_discover_and_write_attributes(peer, tmp_path):
    registered(peer, tmp_path)
    assert peer.request(an.PUT, "/3/0/9", uri_query=["pmin=2", "pmax=30", "gt=50"]).code == an.CHANGED
    r = peer.request(an.GET, "/3/0", accept=40)
    assert r.opt.content_format == 40
    links = r.payload.decode().split(",")
    assert links[0] == "</3/0>" and "</3/0/9>;pmin=2;pmax=30;gt=50.0" in links and "</3/0/0>" in links
    assert peer.request(an.PUT, "/3/0/9", uri_query=["gt"]).code == an.CHANGED  # removes gt
    assert peer.request(an.GET, "/3/0/9", accept=40).payload == b"</3/0/9>;pmin=2;pmax=30"
    assert peer.request(an.PUT, "/3/0/9", uri_query=["bogus=1"]).code == an.BAD_REQUEST
    assert peer.request(an.PUT, "/3/0/9", uri_query=["pmin=9", "pmax=3"]).code == an.BAD_REQUEST
    assert peer.request(an.GET, "/32770", accept=40).payload.startswith(b"</32770>,</32770/0>,</32770/0/0>")


def notes(peer, token, n, timeout=10):
    out = []
    end = time.monotonic() + timeout
    while len(out) < n:
        m = peer.recv(timeout=max(0.05, end - time.monotonic()))
        if m.token == token:
            out.append((time.monotonic(), m))
    return out


def test_observe_pmax_sequence_and_cancel(peer, tmp_path):
    registered(peer, tmp_path)
    assert peer.request(an.PUT, "/3/0/13", uri_query=["pmax=1"]).code == an.CHANGED
    first = peer.request(an.GET, "/3/0/13", observe=0, token=b"t1")
    assert first.opt.observe is not None and int(first.payload) > 1_600_000_000
    got = notes(peer, b"t1", 3, timeout=8)
    seqs = [first.opt.observe] + [m.opt.observe for _, m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    gaps = [b[0] - a[0] for a, b in zip(got, got[1:])]
    assert all(0.8 < g < 1.6 for g in gaps), gaps
    assert all(m.mtype in (NON, CON) and m.code == an.CONTENT for _, m in got)
    # cancel with GET Observe=1
    r = peer.request(an.GET, "/3/0/13", observe=1, token=b"t1")
    assert r.code == an.CONTENT and r.opt.observe is None
    peer.no_datagram(1.6)


def test_reset_to_a_notification_cancels(peer, tmp_path):
    registered(peer, tmp_path)
    peer.request(an.PUT, "/3/0/13", uri_query=["pmax=1"])
    peer.request(an.GET, "/3/0/13", observe=0, token=b"t2")
    (_, m), = notes(peer, b"t2", 1, timeout=5)
    peer.send(make(RST, an.EMPTY, m.mid))
    peer.no_datagram(1.8)


def ack_update(peer):
    upd = peer.recv(timeout=5)
    assert upd.code == an.POST and list(upd.opt.uri_path) == ["rd", "7"]
    peer.send(make(2, an.CHANGED, upd.mid, upd.token))


def test_observe_step_attribute_filters_small_changes(peer, tmp_path):
    registered(peer, tmp_path)
    # pmin 0 pmax 0: notify on change only; st=1000 on the lifetime (never crossed by a change of 1)
    peer.request(an.PUT, "/1/0/1", uri_query=["st=1000"])
    first = peer.request(an.GET, "/1/0/1", observe=0, token=b"t3")
    assert first.payload == b"300"
    peer.request(an.PUT, "/1/0/1", payload=b"301", content_format=0)
    ack_update(peer)  # a lifetime write makes the device send a registration Update
    peer.no_datagram(0.6)  # a change below st: no notification
    peer.request(an.PUT, "/1/0/1", payload=b"2000", content_format=0)
    ack_update(peer)
    got = notes(peer, b"t3", 1, timeout=5)
    assert got[0][1].payload == b"2000"


def test_reboot_exits_for_the_supervisor(peer, tmp_path):
    registered(peer, tmp_path)
    assert peer.request(an.POST, "/3/0/4").code == an.CHANGED
    assert peer.proc.wait(timeout=5) == 75


def test_observe_instance_notifies_on_any_resource_change(peer, tmp_path):
    registered(peer, tmp_path)
    first = peer.request(an.GET, "/1/0", observe=0, token=b"t4", accept=112)
    assert first.opt.observe is not None
    assert {r[0]: r.get(2) for r in cbor2.loads(first.payload)}["0/2"] == 0
    assert peer.request(an.PUT, "/1/0/2", payload=b"4", content_format=0).code == an.CHANGED
    (_, note), = notes(peer, b"t4", 1, timeout=5)
    assert note.opt.content_format == 112 and note.opt.observe > first.opt.observe
    assert {r[0]: r.get(2) for r in cbor2.loads(note.payload)}["0/2"] == 4
