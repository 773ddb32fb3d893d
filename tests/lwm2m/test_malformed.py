"""Hand-made datagrams against the running server: every malformed message gets the RFC 7252 reaction (Reset,
4.02, or silence) and changes nothing; the server keeps working afterwards (wakaama#530, the CVE classes in
ANCHORS.md)."""

import hashlib

import pytest

from tinymlaas.lwm2m import frame

from . import coap_bytes as B

# One link only, so no proper prefix of the payload is itself a valid object-link list.
VALID = B.register(0x1000, payload=b"</3/0>")


def assert_untouched(st):
    assert st.server.devices() == [] and st.server.store.devices() == [] and st.events == []


def assert_still_serves(st, udp):
    udp.send(B.register(0x7777, ep="after"), st.port)
    reply = udp.recv(2)
    assert reply is not None and B.parse_header(reply)["code"] == "2.01"
    assert [r.endpoint for r in st.server.devices()] == ["after"]


def test_every_truncation_of_a_registration(lwm2m_server, udp):
    st = lwm2m_server
    replies, sent = {}, {}
    for n in range(len(VALID)):
        data = bytearray(VALID[:n])
        if n >= 4:
            data[2:4] = (0x2000 + n).to_bytes(2, "big")  # one MID per prefix so replies can be matched
        sent[n] = bytes(data)
        udp.send(bytes(data), st.port)
    while True:
        r = udp.recv(0.5)
        if r is None:
            break
        replies[B.parse_header(r)["mid"]] = r
    for n in range(len(VALID)):
        r = replies.get(0x2000 + n)
        if n < 4:
            continue  # no header: nothing can be answered
        assert r is not None, "prefix of %d bytes got no answer" % n
        h = B.parse_header(r)
        assert h["type"] == B.RST or (h["type"] == B.ACK and h["code"].startswith("4.")), (n, h)
        if frame.check(sent[n]).action == "reset":
            assert h["type"] == B.RST
    assert_untouched(st)
    assert_still_serves(st, udp)


CASES = [
    # name, datagram, expected reaction: "rst", "drop", or a response code
    ("token length 9", bytes([0x49, 0x02, 0x30, 0x01]) + b"123456789", "rst"),
    ("token length 15", bytes([0x4F, 0x02, 0x30, 0x02]) + b"x" * 15, "rst"),
    ("token past end", bytes([0x48, 0x02, 0x30, 0x03]) + b"abc", "rst"),
    ("option delta nibble 15", bytes([0x40, 0x02, 0x30, 0x04, 0xF1, 0x00]), "rst"),
    ("option length nibble 15", bytes([0x40, 0x02, 0x30, 0x05, 0xBF]) + b"rd", "rst"),
    ("option value past end", bytes([0x40, 0x02, 0x30, 0x06, 0xB9]) + b"rd", "rst"),
    ("extended delta byte missing", bytes([0x40, 0x02, 0x30, 0x07, 0xD0]), "rst"),
    ("extended length bytes missing", bytes([0x40, 0x02, 0x30, 0x08, 0xBE, 0x01]), "rst"),
    ("option number wraps past 65535", bytes([0x40, 0x02, 0x30, 0x09, 0xE0, 0xFF, 0xFF, 0xE0, 0xFF, 0xFF]), "rst"),
    ("payload marker, no payload", B.message(B.POST, 0x300A, b"", [(11, b"rd")]) + b"\xff", "rst"),
    ("empty message with token", bytes([0x41, 0x00, 0x30, 0x0B, 0x55]), "rst"),
    ("reserved code class 7", bytes([0x40, 0xE1, 0x30, 0x0C]), "rst"),
    ("version 2", bytes([0x80, 0x02, 0x30, 0x0D]), "drop"),
    ("NON with format error", bytes([0x59, 0x02, 0x30, 0x0E]) + b"123456789", "drop"),
    ("three bytes", b"\x40\x02\x30", "drop"),
    ("unknown critical option 9999", B.message(B.POST, 0x300F, b"t", [(11, b"rd"), (9999, b"x")]), "4.02"),
    ("Block1 option of 4 bytes", B.message(B.POST, 0x3010, b"t", [(11, b"rd"), (27, b"\x01\x02\x03\x04")]), "4.02"),
    ("Accept (critical) of 3 bytes", B.message(B.POST, 0x3011, b"t", [(11, b"rd"), (17, b"\x00\x00\x28"),
                                                                      (15, b"ep=x")], b"</3/0>"), "4.02"),
    ("Uri-Path of 256 bytes", B.message(B.POST, 0x3015, b"t", [(11, b"r" * 256)]), "4.02"),
    ("Block1 NUM 2^20-1 on /rd", B.register(0x3012, extra=[(27, b"\xff\xff\xf6")]), "4.13"),
    ("Block1 NUM 1 (out of order) on /rd", B.register(0x3013, extra=[(27, b"\x1e")]), "4.13"),
    ("GET on /rd", B.message(B.GET, 0x3014, b"t", [(11, b"rd")]), "4.05"),
]


@pytest.mark.parametrize("name,data,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_datagram(lwm2m_server, udp, name, data, expected):
    st = lwm2m_server
    udp.send(data, st.port)
    assert_reaction(udp.recv(0.4 if expected == "drop" else 2), data, expected)
    assert_untouched(st)
    assert_still_serves(st, udp)


def assert_reaction(reply, data, expected):
    """`reply` (None if nothing came) is the reaction `expected` ("drop", "rst" or a code) to datagram `data`."""
    if expected == "drop":
        assert reply is None
    elif expected == "rst":
        assert reply is not None and len(reply) == 4
        h = B.parse_header(reply)
        assert h["type"] == B.RST and h["code"] == "0.00" and h["mid"] == (data[2] << 8 | data[3])
    else:
        assert reply is not None
        h = B.parse_header(reply)
        assert h["type"] == B.ACK and h["code"] == expected and h["mid"] == (data[2] << 8 | data[3])
        assert reply[4 : 4 + h["tkl"]] == data[4 : 4 + (data[0] & 15)]  # token echoed


def test_elective_option_with_bad_length_is_ignored(lwm2m_server, udp):
    """Observe (elective) of 4 bytes is treated as unrecognised and removed; the registration goes through."""
    st = lwm2m_server
    udp.send(B.register(0x3100, extra=[(6, b"\x00\x00\x00\x01")]), st.port)
    r = udp.recv(2)
    assert B.parse_header(r)["code"] == "2.01"
    assert st.server.guard_stats.stripped == 1


def test_duplicate_con_registration_is_answered_once(lwm2m_server, udp):
    """A retransmitted CON (same MID) is deduplicated: same answer, one registration, one event."""
    st = lwm2m_server
    msg = B.register(0x3200, ep="dup")
    udp.send(msg, st.port)
    first = udp.recv(2)
    udp.send(msg, st.port)
    second = udp.recv(2)
    assert first == second and B.parse_header(first)["code"] == "2.01"
    assert len(st.server.devices()) == 1 and [e.kind for e in st.events] == ["registered"]


def test_block2_download_edges(lwm2m_server, udp):
    st = lwm2m_server
    data = bytes(range(256)) * 10  # 2560 bytes: blocks 0, 1 (1024) and 2 (512)
    uri = st.sync(st.server.offer_package, data)
    sha = uri.rsplit("/", 1)[1]
    assert sha == hashlib.sha256(data).hexdigest()

    def get(mid, block2):
        opts = [(11, b"fw"), (11, sha.encode())] + ([(23, block2)] if block2 is not None else [])
        udp.send(B.message(B.GET, mid, b"k", opts), st.port)
        return udp.recv(2)

    r = get(0x4000, b"\x2e")  # NUM 2, M 0, SZX 6: the last, short block
    assert B.parse_header(r)["code"] == "2.05" and r.endswith(data[2048:])
    again = get(0x4001, b"\x2e")  # duplicate request for the same block: same bytes
    assert again[4:] == r[4:]
    assert B.parse_header(get(0x4002, b"\x3e"))["code"] == "4.02"  # NUM 3: past the end
    assert B.parse_header(get(0x4003, b"\xff\xff\xf6"))["code"] == "4.02"  # NUM 2^20-1
    r = get(0x4004, b"\x0a")  # NUM 0 with SZX 2 (64 bytes): the server follows the smaller size
    assert r.endswith(b"\xff" + data[:64])
    assert B.parse_header(get(0x4005, b"\x1f"))["code"] == "4.02"  # SZX 7 is reserved over UDP
    udp.send(B.message(B.GET, 0x4006, b"k", [(11, b"fw"), (11, b"0" * 64)]), st.port)
    assert B.parse_header(udp.recv(2))["code"] == "4.04"
    assert_untouched(st)
