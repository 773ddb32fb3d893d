"""The STM32F4 firmware's flash model slots, as images a programmer writes (docs/firmware.md, "Model slots").

The firmware (firmware/common/slot_flash.c) keeps two slots in internal flash, A at 0x08040000 and B at 0x080A0000
(sectors 6-8 and 9-11, 384 KB each). A slot is a record followed by the blob at +256:

    word 0 magic "TMLS" | 1 seq | 2 ~seq | 3 blob length | 4 commit 0x7E57AB1E | 5 revoke (0xFFFFFFFF = live)

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


def slot_image(blob, seq=1, committed=True):
    """A whole slot's bytes (record + blob, erased value after it), ready to write at SLOT_A or SLOT_B."""
    if len(blob) > CAPACITY:
        raise SlotError("blob is %d bytes; a flash slot holds %d" % (len(blob), CAPACITY))
    try:
        parse(blob)
    except BlobFormatError as e:
        raise SlotError("not a valid blob: %s" % e) from None
    if not 0 <= seq < ERASED:
        raise SlotError("seq must be a 32-bit value below 0xFFFFFFFF")
    record = struct.pack("<6I", MAGIC, seq, seq ^ ERASED, len(blob), COMMITTED if committed else ERASED, ERASED)
    image = record + b"\xff" * (RECORD_BYTES - len(record)) + blob
    return image + b"\xff" * (-len(image) % 4)
