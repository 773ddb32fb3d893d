# A co-processor as the inference runtime: a Cortex-M running the tinymlaas bare-metal firmware (firmware/, C
# runtime) on a UART, driven by this MicroPython device, which keeps the LwM2M connection and the model packages.
# The usual split of a connected product: an ESP32 talks to the network, an STM32 beside it runs the model.
#
#   link = coproc.Link(stream)            # machine.UART(...) on a board; a TCP socket to QEMU's serial on unix
#   model = coproc.RemoteModel(link, path, offset, length)   # the Model interface the LwM2M client uses
#
# The protocol is docs/firmware.md's (frames: A5 5A | type | seq | len u16 | payload | crc32). RemoteModel makes
# sure the co-processor runs exactly this blob (its CAPS name the active blob by the first 8 bytes of its
# SHA-256) and installs it from the package file otherwise, 1 KB at a time: the blob is never whole in RAM here.
# The firmware installs only signed models: COMMIT carries the package's COSE_Sign1 manifest (package version 2),
# which it checks against its own compiled-in trust table, vendor and class (docs/firmware.md, "Signed installs").
# Inputs and outputs are kept in one bytearray each on this side (what a self-test or an LwM2M write fills).
import binascii
import struct
import time

from .errors import BlobError

SYNC = b"\xa5\x5a"
CHUNK = 1024
REQ_CAPS = 0x01
REQ_BEGIN = 0x02
REQ_CHUNK = 0x03
REQ_COMMIT = 0x04
REQ_ERASE = 0x05
REQ_INPUT = 0x06
REQ_INVOKE = 0x07
REQ_OUTPUT = 0x08
REQ_ANCHORS = 0x0B
REPLY_OK = 0x80
REPLY_BOOT = 0xC0
REPLY_NAK = 0x7F
NO_REQUEST = 0xFF  # the seq of replies that answer no request (garbage reports)
RETRYABLE = (1, 3)  # CRC, TRUNCATED: the frame was damaged on the way
NAK_NO_MODEL = 11
BOOT_GRACE_MS = 2000  # after a boot frame, how long a reply to the pending request may still take
PACKAGE_MAGIC = b"TMLP"
ENVELOPE_MAX_BYTES = 512


class CoprocError(Exception):
    """The co-processor refused a request (code and reason from its NAK) or stopped answering (code 0)."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _text(b):
    try:
        return bytes(b).decode()
    except UnicodeError:  # a damaged or hostile reply is reported, never raised as something else
        return repr(bytes(b))


def _fields(fmt, reply):
    """struct.unpack of a reply, or CoprocError when the co-processor sent a payload of the wrong length."""
    if len(reply) < struct.calcsize(fmt):
        raise CoprocError(0, "co-processor reply of %d bytes is too short" % len(reply))
    return struct.unpack_from(fmt, reply)


def parse_caps(text):
    caps = {}
    for item in text.split():
        k, _, v = item.partition("=")
        caps[k] = int(v) if v.isdigit() else v
    return caps


class Link:
    """Request/reply over one byte stream with read(n) / write(b); timeout_ms bounds each reply."""

    def __init__(self, stream, timeout_ms=30000):
        self.s = stream
        self.timeout_ms = timeout_ms
        self.seq = 0
        self.boot_caps = None

    def _read(self, n, deadline):
        out = b""
        while len(out) < n:
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise CoprocError(0, "co-processor did not answer within %d ms" % self.timeout_ms)
            try:
                got = self.s.read(n - len(out))
            except OSError:  # a socket timeout: try again until the deadline
                got = None
            if got:
                out += got
            elif got == b"":
                raise CoprocError(0, "co-processor link closed")
        return out

    def read_frame(self, timeout_ms=None):
        """-> (type, seq, payload) of the next frame with a good CRC; damaged bytes are skipped."""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms or self.timeout_ms)
        while True:
            if self._read(1, deadline) != SYNC[:1]:
                continue
            if self._read(1, deadline) != SYNC[1:]:
                continue
            head = self._read(4, deadline)
            ftype, seq, n = struct.unpack("<BBH", head)
            if n > 1040:
                continue
            rest = self._read(n + 4, deadline)
            if binascii.crc32(head + rest[:n]) & 0xFFFFFFFF == struct.unpack_from("<I", rest, n)[0]:
                return ftype, seq, rest[:n]

    def request(self, ftype, payload=b"", timeout_ms=None, retries=3):
        for attempt in range(retries + 1):
            self.seq = self.seq % 254 + 1
            body = struct.pack("<BBH", ftype, self.seq, len(payload)) + payload
            self.s.write(SYNC + body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF))
            wait = timeout_ms
            booted = False
            while True:
                try:
                    rtype, rseq, reply = self.read_frame(wait)
                except CoprocError:
                    if not booted:
                        raise
                    if attempt == retries:
                        raise CoprocError(0, "co-processor rebooted: the request was lost")
                    break  # it rebooted while the request was on its way: send it again
                if rtype == REPLY_BOOT:
                    # sent at its boot: before this request (its reply still comes, soon) or while the request
                    # arrived (lost: the UART was not listening yet)
                    self.boot_caps = parse_caps(_text(reply))
                    booted = True
                    wait = min(BOOT_GRACE_MS, timeout_ms or self.timeout_ms)
                    continue
                if rseq != self.seq:
                    continue  # a garbage report (seq 0xFF) or a stale reply
                if rtype == REPLY_NAK:
                    if len(reply) < 2:
                        raise CoprocError(0, "malformed NAK from the co-processor")
                    code, reason = reply[0], _text(reply[2:])
                    if code in RETRYABLE and attempt < retries:
                        break
                    raise CoprocError(code, reason)
                if rtype != ftype | REPLY_OK:
                    raise CoprocError(0, "reply type 0x%02x to request 0x%02x" % (rtype, ftype))
                return reply
        raise CoprocError(0, "unreachable")

    def caps(self):
        return parse_caps(_text(self.request(REQ_CAPS)))

    def install(self, f, length, envelope=b""):
        """Stream a blob of `length` bytes from file object f (positioned at its first byte) into the
        co-processor: BEGIN with the 64-byte header, CHUNKs, COMMIT with the blob's signed manifest (the firmware
        checks it, then its loader validates everything)."""
        head = f.read(64)
        chunk = _fields("<I", self.request(REQ_BEGIN, head, timeout_ms=max(self.timeout_ms, 30000)))[0]
        chunk = max(1, min(CHUNK, chunk))
        buf = bytearray(4 + chunk)
        mv = memoryview(buf)
        off = 64
        while off < length:
            n = min(chunk, length - off)
            struct.pack_into("<I", buf, 0, off)
            if f.readinto(mv[4:4 + n]) != n:
                raise CoprocError(0, "blob truncated in the package at byte %d" % off)
            got = _fields("<I", self.request(REQ_CHUNK, mv[:4 + n]))[0]
            if got != off + n:
                raise CoprocError(0, "co-processor holds %d bytes, expected %d" % (got, off + n))
            off += n
        return _text(self.request(REQ_COMMIT, envelope, timeout_ms=max(self.timeout_ms, 30000)))


    def update_anchors(self, envelope):
        """Hand the co-processor a signed trust-anchor update (the one /32770/0/29 took): it checks it against its
        own anchors and keeps the result in its non-volatile memory -> "anchors=<kid,...> anchor_sequence=N".
        CoprocError with the firmware's reason (unknown key, rollback, ..., or STORAGE without NVM)."""
        return _text(self.request(REQ_ANCHORS, envelope, timeout_ms=max(self.timeout_ms, 30000)))


def package_envelope(path):
    """The signed manifest of an install package of version 2 (docs/package-format.md: the header's last word
    gives its length, it follows the 32-byte header), b"" for a file without one (a bare blob, a version 1 package:
    the firmware refuses those)."""
    with open(path, "rb") as f:
        head = f.read(32)
        if len(head) < 32 or head[:4] != PACKAGE_MAGIC or struct.unpack_from("<H", head, 4)[0] < 2:
            return b""
        n = struct.unpack_from("<I", head, 28)[0]
        if n > ENVELOPE_MAX_BYTES:
            raise BlobError("package envelope of %d bytes (at most %d)" % (n, ENVELOPE_MAX_BYTES))
        env = f.read(n)
    if len(env) != n:
        raise BlobError("package truncated in its envelope")
    return env


class RemoteModel:
    """The Model interface (inputs, outputs, input_buffer, output_buffer, invoke, last_us, close) for a blob that
    runs on the co-processor. The blob is validated here too (tinyml.blob) before the co-processor sees it."""

    def __init__(self, link, path, offset=0, length=None, envelope=None):
        """envelope: the blob's signed manifest; None reads it from the package file `path` (version 2)."""
        from .blob import T_BYTES, io_info, parse
        from .source import FileSource

        src = FileSource(path, offset, length)
        try:
            prog = parse(src)
        finally:
            src.close()
        blob_id = prog.sha256[:8]
        self.link = link
        self.inputs = [io_info(prog.tensors[t]) for t in prog.inputs]
        self.outputs = [io_info(prog.tensors[t]) for t in prog.outputs]
        self._in = [bytearray(prog.tensors[t][T_BYTES]) for t in prog.inputs]
        self._out = [bytearray(prog.tensors[t][T_BYTES]) for t in prog.outputs]
        self._out_bytes = sum(len(b) for b in self._out)
        self.arena_bytes = prog.arena_bytes
        self.last_us = 0
        self.last_cycles = 0
        self._where = (path, offset, prog.total_bytes, binascii.hexlify(blob_id).decode())
        self._envelope = package_envelope(path) if envelope is None else envelope
        self.installed = None
        self.core_hz = 1
        self._ensure_installed()

    def _ensure_installed(self):
        """Install the blob unless the co-processor already runs it (after a reset it may run nothing)."""
        path, offset, total, blob_id = self._where
        caps = self.link.caps()
        self.core_hz = caps.get("core_hz") or 1
        if caps.get("model") == blob_id:
            return
        with open(path, "rb") as f:
            f.seek(offset)
            try:
                self.installed = self.link.install(f, total, self._envelope)
            except CoprocError as e:
                raise BlobError("co-processor refused the blob: %s" % e.reason)

    def input_buffer(self, i):
        return memoryview(self._in[i])

    def output_buffer(self, i):
        return memoryview(self._out[i])

    def invoke(self):
        try:
            self._invoke()
        except CoprocError as e:
            if e.code != NAK_NO_MODEL and "rebooted" not in e.reason:
                raise
            self._ensure_installed()  # the co-processor was reset (its RAM store is empty): install again, once
            self._invoke()

    def _invoke(self):
        link = self.link
        off = 0
        for buf in self._in:
            mv = memoryview(buf)
            for k in range(0, len(buf), CHUNK):
                part = mv[k:k + CHUNK]
                link.request(REQ_INPUT, struct.pack("<I", off + k) + part)
            off += len(buf)
        reply = link.request(REQ_INVOKE, timeout_ms=max(link.timeout_ms, 120000))
        status, lo, hi, total = _fields("<IIII", reply)
        if status:
            raise CoprocError(0, "inference failed on the co-processor (status %d)" % status)
        self.last_cycles = lo | (hi << 32)
        self.last_us = self.last_cycles * 1000000 // self.core_hz
        if total != self._out_bytes:
            raise CoprocError(0, "co-processor reports %d output bytes, the model has %d" % (total, self._out_bytes))
        data = reply[16:16 + total]
        while len(data) < total:  # outputs longer than the INVOKE reply: fetch the rest
            take = min(CHUNK, total - len(data))
            more = link.request(REQ_OUTPUT, struct.pack("<IH", len(data), take))
            if len(more) != take:
                raise CoprocError(0, "co-processor sent %d output bytes, %d asked" % (len(more), take))
            data += more
        pos = 0
        for buf in self._out:
            buf[:] = data[pos:pos + len(buf)]
            pos += len(buf)

    def close(self):
        pass  # the model stays installed on the co-processor


def loader(link):
    """An Installer loader (tinyml.installer.Installer(root, loader=...)): packages' blobs run on the co-processor."""
    def load(path, offset=0, length=None, envelope=None):
        return RemoteModel(link, path, offset, length, envelope)
    return load


def opcode_names(caps):
    """Op names of the co-processor's CAPS `ops=A-B` range, as the TinyML object reports supported ops."""
    from .ops import OPS
    lo, _, hi = str(caps.get("ops", "")).partition("-")
    try:
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        return []
    return [OPS[k][0] for k in range(lo, hi + 1) if k in OPS]
