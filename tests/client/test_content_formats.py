"""The device's CBOR, SenML, TLV encoders and decoders (lwm2m_client/lwm2m/), run inside MicroPython, against
exact bytes (RFC 8949 Appendix A values, hand-derived TLV) and against CPython's cbor2 as an independent decoder."""

import binascii

import cbor2
import pytest


def run(mpy_run, body):
    return mpy_run("import binascii\nfrom lwm2m import cbor, tlv, senml, content\n" + body, heap="64k").strip()


@pytest.mark.parametrize("value, hexval", [
    ("0", "00"), ("23", "17"), ("24", "1818"), ("1000", "1903e8"), ("1000000", "1a000f4240"),
    ("1000000000000", "1b000000e8d4a51000"), ("-1", "20"), ("-1000", "3903e7"), ("'a'", "6161"),
    ("'\\u00fc'", "62c3bc"), ("b''", "40"), ("b'\\x01\\x02'", "420102"), ("[1, [2, 3]]", "8201820203"),
    ("{1: 2}", "a10102"), ("True", "f5"), ("False", "f4"), ("None", "f6"), ("1.5", "fb3ff8000000000000"),
])
def test_cbor_encode(mpy_run, value, hexval):
    assert run(mpy_run, "print(binascii.hexlify(cbor.encode(%s)).decode())" % value) == hexval


@pytest.mark.parametrize("hexval, expected", [
    ("f93c00", "1.0"), ("f97bff", "65504.0"), ("f9c400", "-4.0"), ("fa47c35000", "100000.0"),
    ("c11a514b67b0", "1363896240"), ("a26161016162820203", "{'a': 1, 'b': [2, 3]}"),
])
def test_cbor_decode(mpy_run, hexval, expected):
    assert run(mpy_run, "print(cbor.decode(binascii.unhexlify('%s')))" % hexval) == expected


@pytest.mark.parametrize("hexval", [
    "", "18", "1a0000", "62c3", "5a00010000", "9bffffffffffffffff", "9f01ff", "7f", "1c", "8181818181818101",
    "a1800102", "a1400102", "a1f50102", "0000", "62ff00",
])
def test_cbor_decode_rejects(mpy_run, hexval):
    out = run(mpy_run, """
try:
    print('accepted', cbor.decode(binascii.unhexlify('%s')))
except cbor.CBORError as e:
    print('rejected', e)
""" % hexval)
    assert out.startswith("rejected"), out


def test_senml_cbor_read_is_what_cbor2_decodes(mpy_run):
    out = run(mpy_run, """
print(binascii.hexlify(senml.encode_cbor('/3/0/', [('0', 'Acme'), ('9', 87), ('13', 1.5), ('x', True),
                                                   ('d', b'\\x00\\xff')])).decode())
""")
    assert cbor2.loads(binascii.unhexlify(out)) == [
        {-2: "/3/0/", 0: "0", 3: "Acme"}, {0: "9", 2: 87}, {0: "13", 2: 1.5}, {0: "x", 4: True},
        {0: "d", 8: b"\x00\xff"}]


def test_senml_decoders_accept_cbor2_and_json_writes(mpy_run):
    pack = cbor2.dumps([{-2: "/1/0/", 0: "1", 2: 120}, {0: "7", 3: "U"}, {0: "6", 4: False}])
    out = run(mpy_run, """
print(senml.decode_cbor(binascii.unhexlify('%s')))
print(senml.decode_json(b'[{"bn":"/5/0/","n":"1","vs":"coap://h/p"},{"n":"0","vd":"AP8"}]'))
""" % pack.hex())
    assert out.splitlines() == ["[('/1/0/1', 120), ('/1/0/7', 'U'), ('/1/0/6', False)]",
                                "[('/5/0/1', 'coap://h/p'), ('/5/0/0', b'\\x00\\xff')]"]


def test_tlv_exact_bytes(mpy_run):
    # resource 0 "Open Mobile Alliance" (20 bytes: 8-bit length), resource 9 int 100 (1 byte),
    # resource 300 int 1000 (16-bit id, 2-byte value), wrapped in object instance 0 (8-bit length 31)
    out = run(mpy_run, """
inner = bytearray()
tlv.encode(tlv.RESOURCE, 0, b'Open Mobile Alliance', inner)
tlv.encode(tlv.RESOURCE, 9, tlv.int_bytes(100), inner)
tlv.encode(tlv.RESOURCE, 300, tlv.int_bytes(1000), inner)
print(binascii.hexlify(tlv.encode(tlv.OBJECT_INSTANCE, 0, inner)).decode())
print([tlv.int_value(tlv.int_bytes(v)) for v in (0, -1, 127, -128, 128, 32767, -32769, 2**31, -2**63)])
print([(k, i, bytes(v)) for k, i, v in tlv.decode(inner)])
""")
    lines = out.splitlines()
    assert lines[0] == ("08" "00" "1f" "c8" "00" "14" + b"Open Mobile Alliance".hex() + "c1" "09" "64" "e2" "012c" "03e8")
    assert lines[1] == "[0, -1, 127, -128, 128, 32767, -32769, 2147483648, -9223372036854775808]"
    assert lines[2] == "[(3, 0, b'Open Mobile Alliance'), (3, 9, b'd'), (3, 300, b'\\x03\\xe8')]"


@pytest.mark.parametrize("hexval", ["c1", "c80a01", "e2ff", "d8010001", "c109", "c30001"])
def test_tlv_decode_rejects_truncated(mpy_run, hexval):
    out = run(mpy_run, """
try:
    print('accepted', tlv.decode(binascii.unhexlify('%s')))
except tlv.TLVError as e:
    print('rejected', e)
""" % hexval)
    assert out.startswith("rejected"), out


def test_content_decode_types_values(mpy_run):
    out = run(mpy_run, """
types = {1: 'i', 7: 's', 6: 'b', 2: 'f'}
print(content.decode(content.TEXT, [1, 0, 1], types, b'120'))
print(content.decode(content.TLV, [1, 0], types, binascii.unhexlify('c10178c10755')))
for fmt, p, pl in ((content.TEXT, [1, 0, 6], b'2'), (content.TLV, [1, 0], b'c20178'), (content.TEXT, [1, 0], b'1')):
    try:
        content.decode(fmt, p, types, binascii.unhexlify(pl) if fmt == content.TLV else pl); print('accepted')
    except (ValueError, tlv.TLVError) as e:
        print('rejected')
""")
    assert out.splitlines() == ["[(0, 1, 120)]", "[(0, 1, 120), (0, 7, 'U')]", "rejected", "rejected", "rejected"]
