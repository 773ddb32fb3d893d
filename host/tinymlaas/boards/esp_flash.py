"""Write MicroPython firmware to an ESP32 / ESP32-S3 through its ROM serial bootloader, with esptool in-process.

The order of checks is what keeps a board recoverable:
1. the file must be an ESP image; if the user named a chip, the image must be for it (no port opened yet);
2. connect and detect the chip (SYNC, then the chip-magic register / security info); the image's chip id must
   match the detected chip, otherwise nothing is erased;
3. write (esptool erases per region, compresses, checksums every block) and verify the written region's MD5
   against the file (esptool's own `SPI_FLASH_MD5` check);
4. reset into the new firmware.
The ROM bootloader lives in mask ROM, so an interrupted write (cable pulled, port closed) never takes download
mode away: running the same command again rewrites the region and verifies it.
"""

import contextlib
import sys
import time

from .esp_image import CHIP_IDS, FIRMWARE_ADDRESS, ImageError, chip_label, image_chip_id

ROM_BAUD = 115200


class FlashError(Exception):
    """A flashing step failed; the message says which and what to do."""


def plan(firmware, chip="auto", address=None):
    """Validate the firmware bytes against the requested chip before any port is opened.

    Returns (image chip id, address or None if it depends on the detected chip)."""
    try:
        chip_id = image_chip_id(firmware)
    except ImageError as e:
        raise FlashError(str(e)) from None
    if chip != "auto" and CHIP_IDS[chip] != chip_id:
        raise FlashError("firmware is built for %s but --chip is %s (chip id %d)"
                         % (chip_label(chip_id), chip, CHIP_IDS[chip]))
    if address is not None and (address < 0 or address % 4096):
        raise FlashError("address 0x%x is not a multiple of the 4096-byte flash sector" % address)
    return chip_id, address


def flash(port, firmware, chip="auto", baud=460800, address=None, before="default-reset", after="hard-reset",
          connect_attempts=3, log=None):
    """Flash `firmware` (bytes) to the ESP chip on `port`. Returns a dict describing what was done.

    esptool's own messages and progress bar go to stderr, so stdout stays free for the result (--json)."""
    with contextlib.redirect_stdout(sys.stderr):
        return _flash(port, firmware, chip, baud, address, before, after, connect_attempts,
                      log or (lambda line: print(line, file=sys.stderr)))


def _flash(port, firmware, chip, baud, address, before, after, connect_attempts, log):
    import serial
    from esptool.cmds import attach_flash, detect_chip, reset_chip, write_flash
    from esptool.util import FatalError

    image_chip, address = plan(firmware, chip, address)
    t0 = time.monotonic()
    try:
        esp = detect_chip(port, ROM_BAUD, before, connect_attempts=connect_attempts)
    except FatalError as e:
        raise FlashError("no ESP bootloader answered on %s (%s). Is this the board's serial port, and is the chip "
                         "in download mode (hold BOOT, tap EN/RST)?" % (port, str(e).splitlines()[0])) from None
    except (serial.SerialException, OSError) as e:
        raise FlashError("cannot open %s: %s" % (port, e)) from None
    try:
        board_chip = esp.IMAGE_CHIP_ID
        if board_chip != image_chip:
            raise FlashError("firmware is built for %s but the board is %s: refused, nothing was written"
                             % (chip_label(image_chip), chip_label(board_chip)))
        name = esp.CHIP_NAME.lower().replace("-", "")
        if chip != "auto" and name != chip:
            raise FlashError("--chip %s but the board is %s" % (chip, chip_label(board_chip)))
        if address is None:
            if name not in FIRMWARE_ADDRESS:
                raise FlashError("no default firmware address for %s: pass --address" % esp.CHIP_NAME)
            address = FIRMWARE_ADDRESS[name]
        log("board: %s on %s; writing %d bytes at 0x%x" % (esp.CHIP_NAME, port, len(firmware), address))
        if baud != ROM_BAUD:
            esp.change_baud(baud)
        attach_flash(esp)
        # esptool erases, writes compressed blocks with per-block checksums, then compares the region's MD5
        # (computed by the chip) with the file's; a mismatch raises FatalError.
        write_flash(esp, [(address, firmware)], flash_size="keep", compress=True)
        reset_chip(esp, after)
    except FatalError as e:
        raise FlashError("flashing %s failed: %s. The ROM bootloader is intact: run the same command again"
                         % (port, str(e).splitlines()[0])) from None
    except (serial.SerialException, OSError) as e:
        raise FlashError("the connection to %s was lost during flashing (%s). The ROM bootloader is intact: "
                         "reconnect and run the same command again" % (port, e)) from None
    finally:
        try:
            esp._port.close()
        except Exception:  # the port may already be gone (unplugged)
            pass
    return {"port": port, "chip": esp.CHIP_NAME, "chip_id": board_chip, "address": address,
            "bytes": len(firmware), "seconds": round(time.monotonic() - t0, 3), "verified": True}
