"""Host side of the firmware's UART install-and-infer protocol (specified in docs/firmware.md).

One code path for every transport pyserial offers: a real board on /dev/ttyUSB0 or an emulator's serial port on a
TCP socket (`serial.serial_for_url("socket://127.0.0.1:P")`).

Frame: A5 5A | type u8 | seq u8 | len u16 LE | payload | crc32 LE (zlib.crc32 over type..payload).
"""

import struct
import time
import zlib

import serial

SYNC = b"\xa5\x5a"
MAX_PAYLOAD = 1040
CHUNK = 1024
HEADER_BYTES = 64

REQ_CAPS, REQ_BEGIN, REQ_CHUNK, REQ_COMMIT, REQ_ERASE = 0x01, 0x02, 0x03, 0x04, 0x05
REQ_INPUT, REQ_INVOKE, REQ_OUTPUT, REQ_CALIBRATE, REQ_PROFILE = 0x06, 0x07, 0x08, 0x09, 0x0A
REQ_ANCHORS = 0x0B
REPLY_OK, REPLY_BOOT, REPLY_NAK = 0x80, 0xC0, 0x7F

NAK_NAMES = {1: "CRC", 2: "TOO_LONG", 3: "TRUNCATED", 4: "GARBAGE", 5: "UNKNOWN", 6: "STATE", 7: "LENGTH",
             8: "NO_ROOM", 9: "REJECTED", 10: "OFFSET", 11: "NO_MODEL",
             12: "STORAGE"}
RETRYABLE = {1, 3}  # the frame was damaged on the way: send it again


class ProtocolError(RuntimeError):
    """The device did not answer as the protocol says (timeout, malformed reply)."""


class Nak(ProtocolError):
    """The device refused a request. `code` is a NAK_NAMES key, `reason` the device's own text."""

    def __init__(self, code, request, reason):
        super().__init__("device refused request 0x%02x: %s (%s)" % (request, reason, NAK_NAMES.get(code, code)))
        self.code = code
        self.request = request
        self.reason = reason

    @property
    def name(self):
        return NAK_NAMES.get(self.code, str(self.code))


def encode_frame(ftype, seq, payload=b""):
    if len(payload) > 0xFFFF:
        raise ValueError("payload of %d bytes does not fit a frame" % len(payload))
    body = struct.pack("<BBH", ftype, seq, len(payload)) + bytes(payload)
    return SYNC + body + struct.pack("<I", zlib.crc32(body))


def parse_caps(payload):
    """b"tinymlaas-fw k=v k=v ..." -> dict (numbers as int)."""
    words = payload.decode("ascii", errors="replace").split()
    if not words or words[0] != "tinymlaas-fw":
        raise ProtocolError("capabilities reply does not start with 'tinymlaas-fw': %r" % payload[:40])
    caps = {}
    for w in words[1:]:
        k, _, v = w.partition("=")
        caps[k] = int(v) if v.isdigit() else v
    return caps


class DeviceLink:
    """A device running tinymlaas firmware behind a pyserial port."""

    def __init__(self, port, timeout=10.0, signer=None):
        """signer: what makes the signed manifest COMMIT carries when install() is given none (envelope(blob) ->
        bytes; firmware_trust.DevSigner for a development build); without one, install() needs the envelope."""
        self.port = port
        self.timeout = timeout
        self.signer = signer
        self.seq = 0
        self.unsolicited = []  # NAKs not tied to a request (garbage reports) and boot frames seen late
        self._buf = bytearray()

    @classmethod
    def open(cls, url, baudrate=115200, timeout=10.0):
        """`url` is a device path (/dev/ttyUSB0) or any pyserial URL (socket://127.0.0.1:P)."""
        return cls(serial.serial_for_url(url, baudrate=baudrate, timeout=0.05), timeout=timeout)

    def close(self):
        self.port.close()

    # ---- frames ----

    def write_raw(self, data):
        self.port.write(bytes(data))
        self.port.flush()

    def _fill(self, deadline):
        while time.monotonic() < deadline:
            data = self.port.read(max(1, self.port.in_waiting or 1))
            if data:
                self._buf += data
                return True
        return False

    def read_frame(self, timeout=None):
        """Next well-formed frame -> (type, seq, payload). Bytes that do not form one are skipped."""
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            i = self._buf.find(SYNC)
            if i < 0:
                del self._buf[: max(0, len(self._buf) - 1)]
            elif i > 0:
                del self._buf[:i]
            if len(self._buf) >= 6 and self._buf[:2] == SYNC:
                ftype, seq, n = struct.unpack_from("<BBH", self._buf, 2)
                if n > MAX_PAYLOAD:
                    del self._buf[:2]
                    continue
                if len(self._buf) >= 10 + n:
                    body = bytes(self._buf[2: 6 + n])
                    (crc,) = struct.unpack_from("<I", self._buf, 6 + n)
                    if crc != zlib.crc32(body):
                        del self._buf[:2]
                        continue
                    del self._buf[: 10 + n]
                    return ftype, seq, body[4:]
            if not self._fill(deadline):
                raise ProtocolError("no frame from the device within %.1f s" % wait)

    def request(self, ftype, payload=b"", timeout=None, retries=3):
        """Send one request and return the payload of its reply; raise Nak on a refusal."""
        for attempt in range(retries + 1):
            self.seq = (self.seq + 1) % 0xFF  # 0xFF is the device's "no request" seq
            seq = self.seq
            self.write_raw(encode_frame(ftype, seq, payload))
            while True:
                rtype, rseq, body = self.read_frame(timeout)
                if rtype == REPLY_NAK and rseq == 0xFF:
                    self.unsolicited.append(Nak(body[0], body[1], body[2:].decode(errors="replace")))
                    continue
                if rseq != seq:
                    self.unsolicited.append((rtype, rseq, body))
                    continue
                if rtype == REPLY_NAK:
                    if len(body) < 2:
                        raise ProtocolError("malformed NAK")
                    nak = Nak(body[0], body[1], body[2:].decode(errors="replace"))
                    if nak.code in RETRYABLE and attempt < retries:
                        break
                    raise nak
                if rtype != ftype | REPLY_OK:
                    raise ProtocolError("reply type 0x%02x to request 0x%02x" % (rtype, ftype))
                return body
        raise ProtocolError("unreachable")

    # ---- operations ----

    def wait_boot(self, timeout=None):
        """Read the unsolicited boot frame -> capabilities dict."""
        while True:
            rtype, _, body = self.read_frame(timeout)
            if rtype == REPLY_BOOT:
                return parse_caps(body)
            self.unsolicited.append((rtype, _, body))

    def caps(self):
        return parse_caps(self.request(REQ_CAPS))

    def install(self, blob, envelope=None, chunk=CHUNK):
        """BEGIN (header), CHUNKs, COMMIT with the blob's signed manifest (COSE_Sign1, from its install package, or
        made by self.signer when None). Returns the device's summary. Raises Nak with the device's reason: a
        signature, manifest or anti-rollback refusal is REJECTED at COMMIT, and the previous model stays active."""
        blob = bytes(blob)
        if len(blob) < HEADER_BYTES:
            raise ValueError("a blob is at least 64 bytes")
        if envelope is None:
            if self.signer is None:
                raise ValueError("the firmware installs only signed models: give the package's envelope")
            envelope = self.signer.envelope(blob)
        if len(envelope) > MAX_PAYLOAD:
            raise ValueError("a signed manifest of %d bytes does not fit the COMMIT frame" % len(envelope))
        # a flash store erases the staging slot before answering: 3 x 128 KB sectors, up to 2 s each on an STM32F4
        (dev_chunk,) = struct.unpack("<I", self.request(REQ_BEGIN, blob[:HEADER_BYTES], timeout=max(self.timeout, 30)))
        chunk = min(chunk, dev_chunk)
        off = HEADER_BYTES
        while off < len(blob):
            part = blob[off: off + chunk]
            (got,) = struct.unpack("<I", self.request(REQ_CHUNK, struct.pack("<I", off) + part))
            if got != off + len(part):
                raise ProtocolError("device holds %d bytes, expected %d" % (got, off + len(part)))
            off += len(part)
        return self.request(REQ_COMMIT, bytes(envelope), timeout=max(self.timeout, 30)).decode(errors="replace")

    def erase(self):
        self.request(REQ_ERASE)

    def update_anchors(self, envelope):
        """Send a trust-anchor update (signing.anchors: a COSE_Sign1 signed by a key the device trusts) -> the
        device's "anchors=<kid,...> anchor_sequence=N". Raises Nak: REJECTED with the reason (unknown key, bad
        signature, malformed anchor update, wrong vendor, rollback, too many anchors), STORAGE when the device has
        no non-volatile memory to keep anchors in; either way it keeps trusting what it trusted."""
        return self.request(REQ_ANCHORS, bytes(envelope)).decode(errors="replace")

    def infer(self, input_bytes, timeout=120, around_invoke=None):
        """Concatenated graph-input bytes -> (concatenated output bytes, SysTick cycles of tml_invoke).
        around_invoke(started) is called with True once the inputs are on the device, False after INVOKE's reply
        (the cycle model turns QEMU's execution log on and off there)."""
        input_bytes = bytes(input_bytes)
        for off in range(0, len(input_bytes), CHUNK):
            self.request(REQ_INPUT, struct.pack("<I", off) + input_bytes[off: off + CHUNK])
        if around_invoke:
            around_invoke(True)
        body = self.request(REQ_INVOKE, timeout=timeout)
        if around_invoke:
            around_invoke(False)
        status, lo, hi, total = struct.unpack_from("<IIII", body)
        if status:
            raise ProtocolError("tml_invoke failed on the device with status %d" % status)
        out = bytearray(body[16:])
        while len(out) < total:
            n = min(CHUNK, total - len(out))
            out += self.request(REQ_OUTPUT, struct.pack("<IH", len(out), n))
        return bytes(out), lo | (hi << 32)

    def calibrate(self, n):
        """Cycles the device's counter advances over a loop of exactly 2*n instructions."""
        lo, hi = struct.unpack("<II", self.request(REQ_CALIBRATE, struct.pack("<I", n), timeout=60))
        return lo | (hi << 32)

    def profile(self):
        """The last INVOKE's deepest stack (bytes from the stack's top, measured by painting) and the SysTick
        cycles of each of its ops (first 256): (stack_bytes, [cycles])."""
        body = self.request(REQ_PROFILE)
        if len(body) < 4 or len(body) % 4:
            raise ProtocolError("PROFILE reply of %d bytes: not a u32 stack depth and u32 per op" % len(body))
        words = struct.unpack("<%dI" % (len(body) // 4), body)
        return words[0], list(words[1:])
