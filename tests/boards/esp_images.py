"""Synthetic ESP-IDF images: a real header (magic, segment count, chip id) in front of deterministic bytes."""

import random
import struct


def esp_image(chip_id, size=200_000, seed=1):
    header = struct.pack("<BBBBI", 0xE9, 3, 2, 0x20, 0x40080000)
    header += struct.pack("<B3sHBHH4sB", 0xEE, b"\0\0\0", chip_id, 0, 0, 0xFFFF, b"\0" * 4, 0)
    assert len(header) == 24
    rnd = random.Random(seed)
    # Half compressible (like code), half random (like constants): the deflate path sees both.
    body = bytes(rnd.getrandbits(8) for _ in range(size // 2)) + bytes(i % 251 for i in range(size - size // 2))
    return header + body[: size - 24]
