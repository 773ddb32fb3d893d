"""The strict datagram check (frame.check) as a pure function: vectors for each RFC 7252 rule, and a fuzz
target (arbitrary and mutated datagrams never raise, verdicts are well-formed; --fuzz-long: 100,000 inputs)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinymlaas.lwm2m import frame

from . import coap_bytes as B


def test_valid_request_accepted_unchanged():
    msg = B.register(0x1234)
    v = frame.check(msg)
    assert v.action == "accept" and v.data == msg


def test_empty_ping_accepted_and_empty_with_content_rejected():
    assert frame.check(bytes([0x40, 0, 0, 9])).action == "accept"
    assert frame.check(bytes([0x40, 0, 0, 9, 0xFF, 1])).data == bytes([0x70, 0, 0, 9])


def test_extended_option_encodings_parse():
    # Uri-Query of 300 bytes (length nibble 14) is too long for Uri-Query (max 255), critical -> 4.02.
    msg = B.message(B.POST, 5, b"", [(11, b"rd"), (15, b"q" * 300)])
    v = frame.check(msg)
    assert v.action == "reply" and v.data[1] == 0x82
    # Option 2048 (delta nibble 14) elective, unknown -> stripped, request delivered.
    msg = B.message(B.GET, 6, b"", [(11, b"fw"), (2048, b"x")])
    v = frame.check(msg)
    assert v.action == "accept" and v.data == B.message(B.GET, 6, b"", [(11, b"fw")])


def test_unknown_critical_option_in_response_is_rejected():
    resp = B.message(0x45, 7, b"t", [(9999, b"x")], mtype=B.CON)
    assert frame.check(resp).action == "reset"
    assert frame.check(B.message(0x45, 7, b"t", [(9999, b"x")], mtype=B.ACK)).action == "drop"


def test_non_request_bad_option_gets_non_response():
    v = frame.check(B.message(B.GET, 8, b"ab", [(9999, b"x")], mtype=B.NON))
    assert v.action == "reply" and v.data == bytes([0x52, 0x82, 0, 8]) + b"ab"


@st.composite
def datagrams(draw):
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    b = bytearray(B.register(draw(st.integers(0, 0xFFFF))))
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(b) - 1))
        op = draw(st.integers(0, 2))
        if op == 0:
            b[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del b[pos : pos + draw(st.integers(1, 6))]
        else:
            b[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        if not b:
            break
    return bytes(b)


def test_fuzz_frame_check(request):
    n = 100_000 if request.config.getoption("--fuzz-long") else 300
    seen = {"n": 0}

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=datagrams())
    def run(data):
        seen["n"] += 1
        v = frame.check(data)
        assert v.action in ("accept", "drop", "reset", "reply")
        if v.action == "reset":
            assert v.data == bytes([0x70, 0, data[2], data[3]])
        if v.action == "accept":
            # What goes on to aiocoap re-parses cleanly and has no token length above 8.
            assert v.data[0] & 0x0F <= 8 and frame.check(v.data).action == "accept"
        assert len(v.data) <= len(data) + 1

    run()
    print("fuzzed frame.check with %d datagrams" % seen["n"])
