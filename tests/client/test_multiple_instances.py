"""Multiple-instance resources on the MicroPython client (/3/0/11 Error Code, /5/0/8 Firmware Update Protocol
Support): TLV multiple-resource records, one SenML record per instance, resource-instance reads, text refused for
the whole resource, Discover dim. The encoders and the device both run in the micropython unix port.

Expected TLV bytes are derived by hand from the OMA TLV rules (type byte: bits 7-6 identifier kind, 10 = multiple
resource, 01 = resource instance; bits 2-0 the value length when it is below 8; then an 8-bit identifier):
one integer instance 0 with value 0 is `41 00 00`, so /3/0/11 = {0: 0} is `83 0B` + those 3 bytes."""

import json

import cbor2
from aiocoap import numbers as an

from test_content_formats import run
from test_management import notes, registered, tlv_items

ERR_TLV = bytes.fromhex("830b410000")  # /3/0/11, one instance 0 = 0 (no error)
PROTO_TLV = bytes.fromhex("8308410000")  # /5/0/8, one instance 0 = 0 (CoAP)


def test_encoders_exact_bytes(mpy_run):
    out = run(mpy_run, """
h = lambda b: binascii.hexlify(b).decode()
I = 'i'
print(h(content.encode_single(content.TLV, 3, 0, 11, I, (0,))))
# two instances (OMA's own Available Power Sources example: 1 and 5)
print(h(content.encode_single(content.TLV, 3, 0, 6, I, (1, 5))))
print(h(content.encode_single(content.TLV, 3, 0, 11, I, 0, 0)))
print(h(content.encode_single(content.TLV, 3, 0, 11, I, 300, 2)))
print(h(content.encode(content.TLV, 3, [(0, 9, I, 100), (0, 11, I, (0, 2))])))
print(h(content.encode(content.TLV, 5, [(0, 8, I, (0,))], object_level=True)))
print(h(content.encode_single(content.SENML_CBOR, 3, 0, 11, I, (0, 2))))
print(content.encode_single(content.SENML_JSON, 3, 0, 11, I, (0, 2)).decode())
print(h(content.encode_single(content.SENML_CBOR, 3, 0, 11, I, 2, 1)))
for fmt in (content.TEXT, content.OPAQUE):
    try:
        content.encode_single(fmt, 3, 0, 11, I, (0,))
        print('accepted')
    except content.ContentError:
        print('refused')
print(content.encode_single(content.TEXT, 3, 0, 11, I, 7, 0).decode())
""").splitlines()
    assert out[0] == "830b410000"
    assert out[1] == "8606410001410105"
    assert out[2] == "410000"  # resource instance record alone
    assert out[3] == "42020" + "12c"  # 300 needs 2 bytes: type 0x42, id 2, 01 2C
    # /3/0/9 = 100 as a resource record (C1 09 64), then the multiple resource of two instances (length 6)
    assert out[4] == "c10964" + "860b" + "410000" + "410102"
    # object level: object instance 0 (type 00, length 5) around the multiple resource
    assert out[5] == "0500" + "8308410000"
    assert cbor2.loads(bytes.fromhex(out[6])) == [{-2: "/3/0/11/", 0: "0", 2: 0}, {0: "1", 2: 2}]
    assert json.loads(out[7]) == [{"bn": "/3/0/11/", "n": "0", "v": 0}, {"n": "1", "v": 2}]
    assert cbor2.loads(bytes.fromhex(out[8])) == [{-2: "/3/0/11/1", 0: "", 2: 2}]
    assert out[9:11] == ["refused", "refused"]
    assert out[11] == "7"


def test_reads_of_multiple_resources(peer, tmp_path):
    registered(peer, tmp_path)
    for path, exact in (("/3/0/11", ERR_TLV), ("/5/0/8", PROTO_TLV)):
        r = peer.request(an.GET, path, accept=11542)
        assert r.code == an.CONTENT and r.opt.content_format == 11542 and r.payload == exact
        r = peer.request(an.GET, path)  # no Accept: TLV, since text cannot carry it
        assert r.code == an.CONTENT and r.opt.content_format == 11542 and r.payload == exact
        r = peer.request(an.GET, path, accept=112)
        assert cbor2.loads(r.payload) == [{-2: path + "/", 0: "0", 2: 0}]
        r = peer.request(an.GET, path, accept=110)
        assert json.loads(r.payload) == [{"bn": path + "/", "n": "0", "v": 0}]
        for fmt in (0, 42):
            assert peer.request(an.GET, path, accept=fmt).code == an.NOT_ACCEPTABLE

    # whole instances: the multiple resources sit among the single ones
    r = peer.request(an.GET, "/3/0", accept=11542)
    items = tlv_items(r.payload)
    assert (2, 11, b"\x41\x00\x00") in items and (3, 9, b"d") in items
    assert ERR_TLV in r.payload
    r = peer.request(an.GET, "/5/0", accept=11542)
    assert (2, 8, b"\x41\x00\x00") in tlv_items(r.payload) and (3, 9, b"\x02") in tlv_items(r.payload)
    r = peer.request(an.GET, "/3", accept=11542)  # object level: inside the object-instance record
    [(kind, iid, inner)] = tlv_items(r.payload)
    assert (kind, iid) == (0, 0) and (2, 11, b"\x41\x00\x00") in tlv_items(inner)
    for fmt in (112, 110):
        r = peer.request(an.GET, "/3/0", accept=fmt)
        vals = senml_values(r.payload, fmt)
        assert vals["/3/0/11/0"] == 0 and "/3/0/11" not in vals and vals["/3/0/9"] == 100
        vals = senml_values(peer.request(an.GET, "/5/0", accept=fmt).payload, fmt)
        assert vals["/5/0/8/0"] == 0 and "/5/0/8" not in vals and vals["/5/0/9"] == 2


def senml_values(payload, fmt):
    """{full name: numeric value} of a SenML-CBOR (112) or -JSON (110) pack; bn carries over to later records."""
    bn_key, n_key, v_key = (-2, 0, 2) if fmt == 112 else ("bn", "n", "v")
    recs = cbor2.loads(payload) if fmt == 112 else json.loads(payload)
    out, base = {}, ""
    for rec in recs:
        base = rec.get(bn_key, base)
        out[base + rec.get(n_key, "")] = rec.get(v_key)
    return out


def test_resource_instance_paths(peer, tmp_path):
    registered(peer, tmp_path)
    r = peer.request(an.GET, "/3/0/11/0")  # no Accept: text, one value
    assert r.code == an.CONTENT and r.opt.content_format == 0 and r.payload == b"0"
    r = peer.request(an.GET, "/5/0/8/0", accept=11542)
    assert r.payload == b"\x41\x00\x00"
    r = peer.request(an.GET, "/3/0/11/0", accept=112)
    assert cbor2.loads(r.payload) == [{-2: "/3/0/11/0", 0: "", 2: 0}]
    assert peer.request(an.GET, "/3/0/11/1").code == an.NOT_FOUND  # only instance 0 exists
    assert peer.request(an.GET, "/3/0/9/0").code == an.NOT_FOUND  # single resources have no instances
    assert peer.request(an.PUT, "/3/0/11/0", b"1", content_format=0).code == an.METHOD_NOT_ALLOWED
    assert peer.request(an.GET, "/3/0/9").payload == b"100"  # single resources read as before


def test_discover_dim(peer, tmp_path):
    registered(peer, tmp_path)
    links = peer.request(an.GET, "/3/0", accept=40).payload.decode().split(",")
    assert "</3/0/11>;dim=1" in links and "</3/0/9>" in links and "</3/0/11/0>" not in links
    assert "</5/0/8>;dim=1" in peer.request(an.GET, "/5/0", accept=40).payload.decode().split(",")
    # Discover on the resource also lists its instances
    assert peer.request(an.GET, "/3/0/11", accept=40).payload == b"</3/0/11>;dim=1,</3/0/11/0>"
    # attributes follow dim
    assert peer.request(an.PUT, "/3/0/11", uri_query=["pmin=5"]).code == an.CHANGED
    assert peer.request(an.GET, "/3/0/11", accept=40).payload == b"</3/0/11>;dim=1;pmin=5,</3/0/11/0>"


def test_observe_resource_instance(peer, tmp_path):
    registered(peer, tmp_path)
    assert peer.request(an.PUT, "/3/0/11", uri_query=["pmax=1"]).code == an.CHANGED  # applies to its instances
    first = peer.request(an.GET, "/3/0/11/0", observe=0, token=b"m1")
    assert first.code == an.CONTENT and first.opt.observe is not None and first.payload == b"0"
    [(_, note)] = notes(peer, b"m1", 1, timeout=4)
    assert note.code == an.CONTENT and note.opt.content_format == 0 and note.payload == b"0"
    assert note.opt.observe > first.opt.observe
    assert peer.request(an.GET, "/3/0/11/0", observe=1, token=b"m1").code == an.CONTENT
