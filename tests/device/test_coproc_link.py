"""tinyml/coproc.py's side of the firmware's UART protocol (docs/firmware.md), in the real `micropython`, over a
scripted byte stream standing in for the UART: the frames it writes are the host codec's, and what the co-processor
sends back damaged, out of turn or refused is handled as the protocol says."""

from tinymlaas.devices.uart_protocol import REPLY_BOOT, REPLY_NAK, REQ_CAPS, REQ_INPUT, encode_frame

STREAM = """
import sys
sys.path.insert(0, %r)
from tinyml import coproc


class Stream:
    # the UART: replies come from a script, everything written is kept
    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.written = b""

    def write(self, b):
        self.written += bytes(b)

    def read(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out or None


def link(data):
    return coproc.Link(Stream(data), timeout_ms=300)
"""


def run(mpy_script, body, replies):
    from tinymlaas.paths import INFERENCE_MODULE

    code = STREAM % str(INFERENCE_MODULE) + "data = bytes.fromhex(%r)\n" % replies.hex() + body
    return mpy_script(code).stdout.split("\n")


def test_requests_are_the_host_codecs_frames_and_replies_are_found_past_damage(mpy_script):
    caps = b"tinymlaas-fw board=stm32f4 abi=1 ops=1-16 arena=20480 model=none"
    good = encode_frame(REQ_CAPS | 0x80, 1, caps)
    damaged = bytearray(good)
    damaged[8] ^= 0xFF  # same frame, payload byte flipped: its CRC fails, it is skipped
    boot = encode_frame(REPLY_BOOT, 0, caps)
    garbage_report = encode_frame(REPLY_NAK, 0xFF, bytes([4, 0]) + b"skipped 3 bytes outside a frame")
    out = run(mpy_script, """
l = link(data)
c = l.caps()
print(l.s.written.hex())
print(c['board'], c['arena'], c['ops'], l.boot_caps['abi'])
""", b"\x00\x13\x37" + boot + garbage_report + bytes(damaged) + good)
    assert out[0] == encode_frame(REQ_CAPS, 1).hex()
    assert out[1] == "stm32f4 20480 1-16 1"


def test_a_refusal_carries_the_devices_reason_and_a_crc_nak_is_retransmitted(mpy_script):
    nak_crc = encode_frame(REPLY_NAK, 1, bytes([1, REQ_INPUT]) + b"frame CRC mismatch")
    nak_model = encode_frame(REPLY_NAK, 2, bytes([11, REQ_INPUT]) + b"no model installed")
    out = run(mpy_script, """
l = link(data)
try:
    l.request(0x06, b'\\0\\0\\0\\0abc')
except coproc.CoprocError as e:
    print(e.code, e.reason)
print(l.s.written.count(b'\\xa5\\x5a'))
""", nak_crc + nak_model)
    assert out[0] == "11 no model installed"
    assert out[1] == "2"  # sent twice: once more after the CRC NAK


def test_silence_is_a_timeout_not_a_hang(mpy_script):
    out = run(mpy_script, """
l = link(data)
try:
    l.caps()
except coproc.CoprocError as e:
    print(e.code, e.reason)
""", b"")
    assert out[0] == "0 co-processor did not answer within 300 ms"


def test_the_ops_range_becomes_op_names(mpy_script):
    out = run(mpy_script, """
print(','.join(coproc.opcode_names({'ops': '1-16'})))
print(coproc.opcode_names({'ops': 'x'}), coproc.opcode_names({}))
""", b"")
    names = out[0].split(",")
    assert len(names) == 16 and names[0] == "CONV_2D" and names[-1] == "TREE_ENSEMBLE"
    assert out[1] == "[] []"


def test_whatever_the_coprocessor_sends_is_a_reply_or_a_coproc_error(mpy_script, request, tmp_path):
    """Random and mutated replies (2,000; 100,000 with --fuzz-long): a request either returns or raises
    CoprocError with a reason; nothing else escapes (no IndexError, UnicodeError, struct error, hang)."""
    import random
    import struct

    count = 100_000 if request.config.getoption("--fuzz-long") else 2_000
    rng = random.Random(3)
    good = [encode_frame(REQ_CAPS | 0x80, 1, b"tinymlaas-fw board=x model=none"),
            encode_frame(REPLY_NAK, 1, bytes([9, REQ_CAPS]) + b"refused"),
            encode_frame(REPLY_BOOT, 0, b"tinymlaas-fw board=y")]
    cases = bytearray()
    for _ in range(count):
        if rng.random() < 0.3:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:
            b = bytearray(b"".join(rng.choice(good) for _ in range(rng.randint(1, 3))))
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(b))
                b[i] = rng.randrange(256) if rng.random() < 0.7 else b[i] ^ 0x80
            if rng.random() < 0.5:  # make the damage reach the parser: fix the CRC of the first frame
                n = struct.unpack_from("<H", b, 4)[0] if len(b) >= 6 else 0
                if b[:2] == b"\xa5\x5a" and len(b) >= 10 + n:
                    import zlib
                    struct.pack_into("<I", b, 6 + n, zlib.crc32(bytes(b[2:6 + n])))
            body = bytes(b)
        cases += struct.pack("<H", len(body)) + body
    path = tmp_path / "cases.bin"
    path.write_bytes(bytes(cases))
    out = run(mpy_script, """
import struct
f = open(%r, 'rb')
ok = err = 0
while True:
    h = f.read(2)
    if not h:
        break
    body = f.read(struct.unpack('<H', h)[0])
    l = coproc.Link(Stream(body), timeout_ms=1)
    try:
        l.caps()
        ok += 1
    except coproc.CoprocError as e:
        err += 1
print(ok, err)
""" % str(path), b"")
    ok, err = map(int, out[0].split())
    assert ok + err == count and ok > 0 and err > 0
