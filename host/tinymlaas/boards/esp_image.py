"""The header of an ESP-IDF firmware image, enough to tell which chip it was built for.

Layout (ESP-IDF "App Image Format"): byte 0 magic 0xE9, byte 1 segment count, byte 2 SPI mode, byte 3 flash
size/frequency, bytes 4..7 entry point, then the 16-byte extended header: WP pin (1), SPI pin drive (3),
chip id (uint16 LE, bytes 12..13), min chip revision ... A MicroPython `firmware.bin` for ESP32 is the bootloader
image followed by the partition table and the application, so its first 24 bytes are such a header.
"""

import struct

IMAGE_MAGIC = 0xE9
HEADER_BYTES = 24

# esp_chip_id_t values (ESP-IDF) for the chips tinymlaas knows by name.
CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12, "esp32c6": 13, "esp32h2": 16,
            "esp32p4": 18}
CHIP_NAMES = {v: k for k, v in CHIP_IDS.items()}

# Where MicroPython's esp32 port says firmware.bin goes (its bootloader offset).
FIRMWARE_ADDRESS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0, "esp32c6": 0x0}


class ImageError(ValueError):
    """Not an ESP firmware image."""


def chip_label(chip_id):
    name = CHIP_NAMES.get(chip_id)
    return "%s (chip id %d)" % (name.upper().replace("ESP32", "ESP32-").rstrip("-") if name else "unknown chip",
                                chip_id)


def image_chip_id(data):
    """Chip id from an image's extended header. Checks the length and the magic before reading anything."""
    if len(data) < HEADER_BYTES:
        raise ImageError("%d bytes is too short for an ESP firmware image (header is %d bytes)"
                         % (len(data), HEADER_BYTES))
    if data[0] != IMAGE_MAGIC:
        raise ImageError("not an ESP firmware image: first byte is 0x%02x, expected 0x%02x" % (data[0], IMAGE_MAGIC))
    if data[1] == 0 or data[1] > 16:
        raise ImageError("not an ESP firmware image: %d segments (1..16 expected)" % data[1])
    (chip_id,) = struct.unpack_from("<H", data, 12)
    return chip_id
