"""The STM32F4 firmware's flash model slots, as images a programmer writes (docs/firmware.md, "Model slots").

The firmware (firmware/common/slot_flash.c) keeps two slots in internal flash, A at 0x08040000 and B at 0x080A0000
(sectors 6-8 and 9-11, 384 KB each). A slot is a record followed by the blob at +256:

    word 0 magic "TMLS" | 1 seq | 2 ~seq | 3 blob length | 4 commit 0x7E57AB1E | 5 revoke (0xFFFFFFFF = live)
    words 6-9 manifest sequence (lo, hi, ~lo, ~hi) | 10-17 manifest blob SHA-256 | 18-61 floor log (erased here)

Words 6-17 are the anti-rollback state of a signed install ("Signed installs"): `installed=(sequence, blob
SHA-256)` writes them, so that a board provisioned at the factory refuses packages older than its first model.

`slot_image(blob)` builds a committed slot for factory provisioning (st-flash / openocd / STM32CubeProgrammer
write it at SLOT_A; the firmware boots it from flash) and for the QEMU tests, which preload it the same way.
"""

import struct

from ..blob.reader import BlobFormatError, parse

FLASH_BASE = 0x08000000
SLOT_A = 0x08040000
SLOT_B = 0x080A0000
SLOT_BYTES = 3 * 128 * 1024
RECORD_BYTES = 256
CAPACITY = SLOT_BYTES - RECORD_BYTES
MAGIC = 0x534C4D54
COMMITTED = 0x7E57AB1E
ERASED = 0xFFFFFFFF


class SlotError(ValueError):
    pass


def slot_image(blob, seq=1, committed=True, installed=None):
    """A whole slot's bytes (record + blob, erased value after it), ready to write at SLOT_A or SLOT_B.
    installed: (manifest sequence number, manifest blob SHA-256) of the signed package the blob came from."""
    if len(blob) > CAPACITY:
        raise SlotError("blob is %d bytes; a flash slot holds %d" % (len(blob), CAPACITY))
    try:
        parse(blob)
    except BlobFormatError as e:
        raise SlotError("not a valid blob: %s" % e) from None
    if not 0 <= seq < ERASED:
        raise SlotError("seq must be a 32-bit value below 0xFFFFFFFF")
    record = struct.pack("<6I", MAGIC, seq, seq ^ ERASED, len(blob), COMMITTED if committed else ERASED, ERASED)
    if installed is not None:
        sequence, digest = installed
        if not 0 <= sequence < 1 << 64 or len(digest) != 32:
            raise SlotError("installed: a 64-bit sequence number and a 32-byte SHA-256")
        lo, hi = sequence & ERASED, sequence >> 32
        record += struct.pack("<4I", lo, hi, lo ^ ERASED, hi ^ ERASED) + bytes(digest)
    image = record + b"\xff" * (RECORD_BYTES - len(record)) + blob
    return image + b"\xff" * (-len(image) % 4)
