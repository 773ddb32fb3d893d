"""The ESP image header check: any byte string either yields a chip id or raises ImageError (never reads past the
end, never another exception)."""

import struct

from hypothesis import given, settings, strategies as st

from tinymlaas.boards.esp_image import CHIP_IDS, ImageError, chip_label, image_chip_id


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes(data):
    try:
        chip = image_chip_id(data)
    except ImageError:
        return
    assert len(data) >= 24 and data[0] == 0xE9 and chip == struct.unpack_from("<H", data, 12)[0]


def test_known_chips_round_trip():
    for name, cid in CHIP_IDS.items():
        header = bytes([0xE9, 4, 2, 0x20]) + bytes(8) + struct.pack("<H", cid) + bytes(10)
        assert image_chip_id(header) == cid
        assert chip_label(cid).startswith(name.upper().replace("ESP32", "ESP32-").rstrip("-"))
