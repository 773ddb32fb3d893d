"""Exact-byte vectors for the LwM2M content-format codecs (hand-assembled from the layouts in LwM2M 1.1 §7.4)."""

import pytest

from tinymlaas.lwm2m import codecs as C
from tinymlaas.lwm2m.codecs import linkformat, tlv
from tinymlaas.lwm2m.objects import default_model
from tinymlaas.lwm2m.values import ObjLink

MODEL = default_model()

# Device object instance 0, the spec's running example: strings, a multiple resource, an int, a time.
DEVICE_VALUES = {
    (3, 0, 0): "Open Mobile Alliance",
    (3, 0, 1): "Lightweight M2M Client",
    (3, 0, 2): "345000123",
    (3, 0, 3): "1.0",
    (3, 0, 6, 0): 1,
    (3, 0, 6, 1): 5,
    (3, 0, 7, 0): 3800,
    (3, 0, 7, 1): 5000,
    (3, 0, 9): 100,
    (3, 0, 11, 0): 0,
    (3, 0, 13): 1367491215,
    (3, 0, 16): "U",
}
DEVICE_TLV = bytes.fromhex(
    ""
    "C800144F70656E204D6F62696C6520416C6C69616E6365"  # 0: resource, 8-bit length 0x14
    "C801164C69676874776569676874204D324D20436C69656E74"  # 1
    "C80209333435303030313233"  # 2
    "C303312E30"  # 3: 3-bit length
    "8606410001410105"  # 6: multiple resource, two 1-byte instances
    "88070842000ED842011388"  # 7: multiple resource, 8-bit length, two 2-byte instances
    "C10964"  # 9
    "830B410000"  # 11
    "C40D5182428F"  # 13: 4-byte time
    "C11055"  # 16
)


def test_tlv_device_instance_bytes():
    assert C.encode(C.TLV, (3, 0), DEVICE_VALUES, MODEL) == DEVICE_TLV
    assert C.decode(C.TLV, (3, 0), DEVICE_TLV, MODEL) == DEVICE_VALUES


def test_tlv_object_level_wraps_instances():
    payload = C.encode(C.TLV, (3,), DEVICE_VALUES, MODEL)
    assert payload[:3] == bytes([0x08, 0x00, len(DEVICE_TLV)])  # object instance 0, 8-bit length
    assert payload[3:] == DEVICE_TLV
    assert C.decode(C.TLV, (3,), payload, MODEL) == DEVICE_VALUES


@pytest.mark.parametrize(
    "path,value,hexbytes",
    [
        ((3, 0, 9), 100, "C10964"),
        ((3, 0, 9), -1, "C109FF"),
        ((3, 0, 9), 128, "C2090080"),  # needs 2 bytes signed
        ((3, 0, 9), 1 << 31, "C809080000000080000000"),  # 8 bytes, 8-bit length field
        ((1, 0, 6), True, "C10601"),
        ((5, 0, 1), "", "C001"),
        ((3, 0, 6, 1), 5, "410105"),
    ],
)
def test_tlv_single_values(path, value, hexbytes):
    assert C.encode(C.TLV, path, {path: value}, MODEL).hex().upper() == hexbytes
    assert C.decode(C.TLV, path, bytes.fromhex(hexbytes), MODEL) == {path: value}


def test_tlv_sixteen_bit_id_and_length():
    big = b"x" * 300
    raw = tlv.encode_entry(tlv.RESOURCE, 0x1234, big)
    assert raw[:5] == bytes([0xF0, 0x12, 0x34, 0x01, 0x2C])  # 16-bit id, 16-bit length
    raw = tlv.encode_entry(tlv.RESOURCE, 1, b"y" * 70000)
    assert raw[:5] == bytes([0xD8, 0x01, 0x01, 0x11, 0x70])  # 24-bit length


def test_tlv_float_uses_four_bytes_when_exact():
    assert C.encode(C.TLV, (1, 0, 1), {(1, 0, 1): 1}, MODEL) == bytes.fromhex("C10101")
    m = default_model()
    from tinymlaas.lwm2m.objects.model import ResourceDef
    m.object(3).resources[50] = ResourceDef(50, "f", "R", False, False, "Float")
    assert C.encode(C.TLV, (3, 0, 50), {(3, 0, 50): 1.5}, m) == bytes.fromhex("C4323FC00000")
    assert C.encode(C.TLV, (3, 0, 50), {(3, 0, 50): 0.1}, m) == bytes.fromhex("C832083FB999999999999A")


@pytest.mark.parametrize(
    "payload",
    ["C8", "C80014", "C8001441", "E0", "D8000100", "86064100014101", "C1096464", "C509FFFFFFFFFF"],
)
def test_tlv_rejects_truncated_and_bad_lengths(payload):
    with pytest.raises(C.CodecError):
        C.decode(C.TLV, (3, 0), bytes.fromhex(payload), MODEL)


def test_tlv_objlink_and_unknown_resource_raw():
    m = default_model()
    from tinymlaas.lwm2m.objects.model import ResourceDef
    m.object(3).resources[51] = ResourceDef(51, "l", "R", False, False, "Objlnk")
    assert C.encode(C.TLV, (3, 0, 51), {(3, 0, 51): ObjLink(5, 0)}, m) == bytes.fromhex("C43300050000")
    assert C.decode(C.TLV, (3, 0), bytes.fromhex("C26301FF"), m) == {(3, 0, 99): b"\x01\xff"}


def test_senml_json_exact():
    values = {(3, 0, 0): "Open Mobile Alliance", (3, 0, 6, 0): 1, (3, 0, 9): 100}
    expected = b'[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"6/0","v":1},{"n":"9","v":100}]'
    assert C.encode(C.SENML_JSON, (3, 0), values, MODEL) == expected
    assert C.decode(C.SENML_JSON, (3, 0), expected, MODEL) == values


def test_senml_json_single_resource_and_opaque():
    assert C.encode(C.SENML_JSON, (3, 0, 9), {(3, 0, 9): 95}, MODEL) == b'[{"bn":"/3/0/9","v":95}]'
    payload = b'[{"bn":"/5/0/0","vd":"AQL_"}]'
    assert C.decode(C.SENML_JSON, (5, 0, 0), payload, MODEL) == {(5, 0, 0): b"\x01\x02\xff"}
    assert C.encode(C.SENML_JSON, (5, 0, 0), {(5, 0, 0): b"\x01\x02\xff"}, MODEL) == payload


@pytest.mark.parametrize(
    "payload",
    [
        b"{}",
        b'[{"bn":"/3/0/","n":"9"}]',  # no value
        b'[{"bn":"/3/0/","n":"9","v":1,"vs":"x"}]',  # two values
        b'[{"bn":"/3/0/","n":"0","v":1}]',  # number for a String resource
        b'[{"bn":"/3/0/","n":"9","v":1.5}]',  # fraction for an Integer resource
        b'[{"bn":"/4/0/","n":"9","v":1}]',  # outside the request path
        b'[{"bn":"/3/0/","n":"x","v":1}]',
        b'[{"bn":"/3/0/","n":"9","v":NaN}]',
        b'[{"bn":"/3/0/","n":"9","v":1},{"n":"9","v":2}]',  # repeated name
        b"[",
    ],
)
def test_senml_json_rejects(payload):
    with pytest.raises(C.CodecError):
        C.decode(C.SENML_JSON, (3, 0), payload, MODEL)


def test_senml_cbor_exact():
    values = {(3, 0, 9): 100, (3, 0, 0): "ab"}
    # [ {-2:"/3/0/", 0:"0", 3:"ab"}, {0:"9", 2:100} ]
    expected = bytes.fromhex("82" "A3" "21" "65" + b"/3/0/".hex() + "00" "61" "30" "03" "62" "6162" "A2" "00" "61" "39" "02" "1864")
    assert C.encode(C.SENML_CBOR, (3, 0), values, MODEL) == expected
    assert C.decode(C.SENML_CBOR, (3, 0), expected, MODEL) == values


@pytest.mark.parametrize("junk", [b"\x00", b"\xa0", b"\xff\xff"])
def test_senml_cbor_refuses_bytes_after_the_pack(junk):
    """One CBOR data item is the whole payload; what follows it is not silently dropped (found by the device's
    SenML fuzz, 2026-12-03: cbor2.loads stops after the first item)."""
    pack = C.encode(C.SENML_CBOR, (3, 0), {(3, 0, 9): 100}, MODEL)
    with pytest.raises(C.CodecError, match="after its pack"):
        C.decode(C.SENML_CBOR, (3, 0), pack + junk, MODEL)


def test_senml_cbor_opaque_is_byte_string():
    payload = C.encode(C.SENML_CBOR, (5, 0, 0), {(5, 0, 0): b"\x00\x01"}, MODEL)
    assert payload == bytes.fromhex("81A2216" "6" + b"/5/0/0".hex() + "08420001")
    with pytest.raises(C.CodecError):
        C.decode(C.SENML_CBOR, (5, 0, 0), bytes.fromhex("81A2216" "6" + b"/5/0/0".hex() + "08620001"), MODEL)


def test_text_and_opaque():
    assert C.encode(C.TEXT, (3, 0, 9), {(3, 0, 9): 42}, MODEL) == b"42"
    assert C.decode(C.TEXT, (3, 0, 13), b"-5", MODEL) == {(3, 0, 13): -5}
    assert C.decode(C.TEXT, (1, 0, 6), b"1", MODEL) == {(1, 0, 6): True}
    assert C.decode(C.OPAQUE, (5, 0, 0), b"\x00\xff", MODEL) == {(5, 0, 0): b"\x00\xff"}
    for bad in (b"4 2", b"", b"0x10", b"\xff"):
        with pytest.raises(C.CodecError):
            C.decode(C.TEXT, (3, 0, 9), bad, MODEL)
    with pytest.raises(C.CodecError):
        C.decode(C.TEXT, (3, 0), b"1", MODEL)  # text/plain is for a single resource only


def test_link_format_registration_payload():
    payload = b'</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>;ver=1.1,</5/0>,</32770/0>;ver="1.0"'
    links = linkformat.decode(payload)
    assert [l.uri for l in links] == ["/", "/1/0", "/3/0", "/5/0", "/32770/0"]
    assert links[0].params == {"rt": "oma.lwm2m", "ct": "11543"}
    assert links[2].params == {"ver": "1.1"}
    assert links[4].params == {"ver": "1.0"}
    assert linkformat.encode(links) == b'</>;rt=oma.lwm2m;ct=11543,</1/0>,</3/0>;ver=1.1,</5/0>,</32770/0>;ver=1.0'


def test_link_format_quoted_separators_and_flags():
    links = linkformat.decode(b'</3/0/1>;title="a,b;c\\"d";obs,</3/0/2>')
    assert links[0].params == {"title": 'a,b;c"d', "obs": None}
    assert links[1].uri == "/3/0/2"


@pytest.mark.parametrize("payload", [b"<", b"</3/0", b"/3/0", b"</3/0>;", b"</3/0>;a=", b'</3/0>;a="x', b"</3/0>x",
                                     b"</3/0>,", b"</3/0>;a=1;a=2", b"\xff"])
def test_link_format_rejects(payload):
    with pytest.raises(C.CodecError):
        linkformat.decode(payload)
