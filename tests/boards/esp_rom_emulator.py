"""An emulated ESP32 / ESP32-S3 ROM serial bootloader on a pseudo-terminal: stands in for a board in download mode.

It speaks the loader protocol documented by Espressif ("Serial Protocol" in the esptool docs): SLIP frames
(0xC0 delimiters, 0xDB 0xDC / 0xDB 0xDD escapes) carrying `<dir op len checksum data>` requests and
`<dir op len value data status>` responses, with the ROM's 4 status bytes. Implemented commands are the ones the
esptool ROM path (no stub) uses for chip detection and flashing:

    SYNC, READ_REG, WRITE_REG (including the SPI peripheral's user-command registers, so esptool can read the
    flash chip's JEDEC id and SFDP table), SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE, FLASH_BEGIN/DATA/END,
    FLASH_DEFL_BEGIN/DATA/END (zlib streams, decompressed block by block), SPI_FLASH_MD5.

Anything else is answered the way the ROM answers an unknown command (status 1, error 0x05), which is also how
esptool learns that an ESP32 has no GET_SECURITY_INFO and falls back to the chip-magic register.

The flash is a bytearray kept by the caller across emulator instances, so a test can cut a write half way (the
"cable pulled" case: `die_after_blocks` closes the pty) and re-run on the same flash contents.
"""

import hashlib
import os
import select
import struct
import threading
import tty
import zlib

SLIP_END, SLIP_ESC = 0xC0, 0xDB

# Command codes (esptool docs, "Serial Protocol / Commands").
FLASH_BEGIN, FLASH_DATA, FLASH_END = 0x02, 0x03, 0x04
SYNC, WRITE_REG, READ_REG = 0x08, 0x09, 0x0A
SPI_SET_PARAMS, SPI_ATTACH, CHANGE_BAUDRATE = 0x0B, 0x0D, 0x0F
FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, FLASH_DEFL_END = 0x10, 0x11, 0x12
SPI_FLASH_MD5 = 0x13
GET_SECURITY_INFO = 0x14

ESP32_MAGIC_REG = 0x40001000
ESP32_MAGIC = 0x00F01D83
SPI_CMD_USR = 1 << 18

# What differs between the emulated chips (ESP32 and ESP32-S3 technical reference manuals, esptool's targets):
# how the chip is identified, the flash controller's registers, and FLASH_BEGIN's parameter count.
CHIPS = {
    # ESP32: no GET_SECURITY_INFO in ROM (identified by the magic register); SPI1 at 0x3FF42000; the address
    # register takes the address in its top bits; FLASH_BEGIN has 4 words.
    "esp32": {"chip_id": None, "spi_base": 0x3FF42000, "usr2": 0x24, "w0": 0x80, "addr_msb": True,
              "begin_words": 4},
    # ESP32-S3: GET_SECURITY_INFO answers chip id 9; SPI1 at 0x60002000; FLASH_BEGIN has a 5th word (encrypt).
    "esp32s3": {"chip_id": 9, "spi_base": 0x60002000, "usr2": 0x20, "w0": 0x58, "addr_msb": False,
                "begin_words": 5},
}
# Values that make esptool's ESP32 crystal-drift workaround compute a 40 MHz crystal (cali 1024, CK8M 100).
ESP32_RTCCALICFG1 = 0x3FF5F06C
ESP32_EFUSE_BASE = 0x3FF5A000

JEDEC_ID = 0x1640EF                # Winbond W25Q32: manufacturer 0xEF, type 0x40, capacity 0x16 = 4 MB
SFDP_TABLE = b"SFDP" + bytes([0x06, 0x01, 0x01, 0xFF, 0x00, 0x06, 0x01, 0x10, 0x30, 0x00, 0x00, 0xFF]) + \
    bytes([0xEF, 0x00, 0x00, 0x00]) + bytes(44)

ERR_INVALID_MSG = 0x05
ERR_BAD_DATA_CHECKSUM = 0x07
ERR_BAD_SEQ = 0x08  # our own code for "block out of sequence" (the ROM reports a failed status too)


def checksum(data, seed=0xEF):
    for b in data:
        seed ^= b
    return seed


def slip_encode(payload):
    out = bytearray([SLIP_END])
    for b in payload:
        if b == SLIP_END:
            out += b"\xdb\xdc"
        elif b == SLIP_ESC:
            out += b"\xdb\xdd"
        else:
            out.append(b)
    out.append(SLIP_END)
    return bytes(out)


class EspRomEmulator:
    """One emulated chip in download mode behind a pty. `port` is the path esptool opens."""

    def __init__(self, chip="esp32", flash=None, flash_size=4 * 1024 * 1024, die_after_blocks=None):
        self.chip = CHIPS[chip]
        self.flash = flash if flash is not None else bytearray(b"\xff" * flash_size)
        self.regs = {
            ESP32_MAGIC_REG: ESP32_MAGIC,
            ESP32_RTCCALICFG1: 1024 << 7,
            ESP32_EFUSE_BASE + 4 * 4: 100,
        }
        self.die_after_blocks = die_after_blocks
        self.commands = []          # op codes received, in order (tests check the protocol path taken)
        self.baud_changes = []
        self.blocks_written = 0
        self._write = None          # current FLASH_* / FLASH_DEFL_* session
        self._master, slave = os.openpty()
        tty.setraw(slave)           # a UART: no line discipline between the two ends
        self.port = os.ttyname(slave)
        self._slave = slave         # kept open so the pty survives esptool's open/close
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- framing -------------------------------------------------------------------------------------------
    def _serve(self):
        frame, in_frame, esc = bytearray(), False, False
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(self._master, 4096)
            except OSError:
                return
            for b in chunk:
                if b == SLIP_END:
                    if in_frame and frame:
                        if not self._handle(bytes(frame)):
                            return
                        frame = bytearray()
                        in_frame = False
                    else:
                        in_frame = True
                        frame = bytearray()
                elif in_frame:
                    if esc:
                        frame.append({0xDC: SLIP_END, 0xDD: SLIP_ESC}.get(b, b))
                        esc = False
                    elif b == SLIP_ESC:
                        esc = True
                    else:
                        frame.append(b)

    def _reply(self, op, value=0, data=b"", status=0, error=0):
        body = data + bytes([status, error, 0, 0])
        os.write(self._master, slip_encode(struct.pack("<BBHI", 1, op, len(body), value) + body))

    def _handle(self, frame):
        """Answer one request. Returns False when the emulated board goes away."""
        if len(frame) < 8 or frame[0] != 0:
            return True                         # the ROM ignores frames that are not requests
        op, size, chk = struct.unpack_from("<BHI", frame, 1)
        data = frame[8:]
        if len(data) != size:
            self._reply(op, status=1, error=ERR_INVALID_MSG)
            return True
        self.commands.append(op)
        handler = {
            SYNC: self._sync, READ_REG: self._read_reg, WRITE_REG: self._write_reg,
            SPI_ATTACH: self._ok, SPI_SET_PARAMS: self._ok, CHANGE_BAUDRATE: self._change_baud,
            FLASH_BEGIN: self._flash_begin, FLASH_DEFL_BEGIN: self._flash_begin,
            FLASH_DATA: self._flash_data, FLASH_DEFL_DATA: self._flash_data,
            FLASH_END: self._flash_end, FLASH_DEFL_END: self._flash_end,
            SPI_FLASH_MD5: self._md5,
        }.get(op)
        if op == GET_SECURITY_INFO and self.chip["chip_id"] is not None:
            handler = self._security_info
        if handler is None:
            self._reply(op, status=1, error=ERR_INVALID_MSG)
            return True
        return handler(op, data, chk) is not False

    # --- commands ------------------------------------------------------------------------------------------
    def _ok(self, op, data, chk):
        self._reply(op)

    def _sync(self, op, data, chk):
        if data != b"\x07\x07\x12\x20" + b"\x55" * 32:
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        for _ in range(8):                      # the ROM answers a SYNC eight times
            self._reply(op, value=0x20120707)

    def _read_reg(self, op, data, chk):
        if len(data) != 4:
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        (addr,) = struct.unpack("<I", data)
        self._reply(op, value=self.regs.get(addr, 0))

    def _write_reg(self, op, data, chk):
        if len(data) % 16:
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        for i in range(0, len(data), 16):
            addr, value, mask, _delay = struct.unpack_from("<IIII", data, i)
            old = self.regs.get(addr, 0)
            self.regs[addr] = (old & ~mask) | (value & mask)
            if addr == self.chip["spi_base"] and value & SPI_CMD_USR:
                self._spi_user_command()
        self._reply(op)

    def _spi_user_command(self):
        """Run the flash command in SPI_USR2 and clear the USR bit, as the controller does when done."""
        base = self.chip["spi_base"]
        opcode = self.regs.get(base + self.chip["usr2"], 0) & 0xFF
        if opcode == 0x9F:                                  # RDID
            result = JEDEC_ID
        elif opcode == 0x5A:                                # RDSFDP, 24-bit address
            addr = self.regs.get(base + 0x04, 0)
            addr = (addr >> 8 if self.chip["addr_msb"] else addr) & 0xFFFFFF
            result = struct.unpack("<I", (SFDP_TABLE[addr:addr + 4] + bytes(4))[:4])[0]
        else:                                               # status reads, resets: all zero
            result = 0
        self.regs[base + self.chip["w0"]] = result
        self.regs[base] = 0

    def _security_info(self, op, data, chk):
        # flags (no secure boot, no secure download), flash_crypt_cnt, 7 key purposes, chip id, API version
        self._reply(op, data=struct.pack("<IB7BII", 0, 0, *([0] * 7), self.chip["chip_id"], 0))

    def _change_baud(self, op, data, chk):
        if len(data) != 8:
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        self.baud_changes.append(struct.unpack("<II", data)[0])
        self._reply(op)                         # a pty has no baud rate: both sides simply carry on

    def _flash_begin(self, op, data, chk):
        if len(data) != 4 * self.chip["begin_words"]:   # the ESP32 ROM takes no encryption flag, later ROMs do
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        size, blocks, block_size, offset = struct.unpack_from("<IIII", data)
        deflated = op == FLASH_DEFL_BEGIN
        # FLASH_BEGIN erases `size` bytes; FLASH_DEFL_BEGIN's size is the uncompressed length.
        if offset + size > len(self.flash) or offset % 4096:
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        erase_end = min(len(self.flash), offset + ((size + 4095) // 4096) * 4096)
        self.flash[offset:erase_end] = b"\xff" * (erase_end - offset)
        self._write = {"offset": offset, "pos": offset, "end": offset + size, "seq": 0, "blocks": blocks,
                       "zlib": zlib.decompressobj() if deflated else None}
        self._reply(op)

    def _flash_data(self, op, data, chk):
        w = self._write
        if w is None or len(data) < 16:
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        length, seq = struct.unpack_from("<II", data)
        payload = data[16:]
        if length != len(payload):
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        if checksum(payload) != chk:
            return self._reply(op, status=1, error=ERR_BAD_DATA_CHECKSUM)
        if seq != w["seq"]:
            return self._reply(op, status=1, error=ERR_BAD_SEQ)
        if w["zlib"] is not None:
            try:
                payload = w["zlib"].decompress(payload)
            except zlib.error:
                return self._reply(op, status=1, error=ERR_INVALID_MSG)
        end = min(w["pos"] + len(payload), w["end"] if w["zlib"] else len(self.flash))
        self.flash[w["pos"]:end] = payload[:end - w["pos"]]
        w["pos"] = end
        w["seq"] += 1
        self.blocks_written += 1
        if self.die_after_blocks is not None and self.blocks_written >= self.die_after_blocks:
            os.close(self._master)              # the board vanishes mid-write: no answer, port gone
            return False
        self._reply(op)

    def _flash_end(self, op, data, chk):
        self._write = None
        self._reply(op)

    def _md5(self, op, data, chk):
        if len(data) != 16:
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        addr, size = struct.unpack_from("<II", data)
        if addr + size > len(self.flash):
            return self._reply(op, status=1, error=ERR_INVALID_MSG)
        digest = hashlib.md5(self.flash[addr:addr + size]).hexdigest().encode()
        self._reply(op, data=digest)            # the ROM sends the digest as 32 hex characters


class SilentPort:
    """A pty with nothing behind it: what esptool sees on a port that is not an ESP board in download mode."""

    def __init__(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        while not self._stop.is_set():
            try:
                if select.select([self._master], [], [], 0.05)[0]:
                    os.read(self._master, 4096)     # swallow, never answer
            except OSError:
                return

    def close(self):
        self._stop.set()
        self._thread.join(2)
        os.close(self._master)
        os.close(self._slave)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
