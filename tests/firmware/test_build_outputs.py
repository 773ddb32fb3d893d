"""What a user programs into a real STM32F4: build/firmware/stm32f4/tinymlaas.bin, a raw image of flash from
0x08000000 (st-flash write tinymlaas.bin 0x08000000), which must fit the firmware's sectors 0-5 and leave the
model slots alone."""

import struct

from tinymlaas.devices.qemu import build_firmware


def test_stm32_raw_image_starts_with_the_vector_table_and_stays_out_of_the_slots():
    elf = build_firmware("stm32f4")
    image = elf.with_suffix(".bin").read_bytes()
    stack_top, reset = struct.unpack_from("<II", image)
    assert stack_top == 0x20000000 + 128 * 1024          # the SRAM budget of link.ld
    assert reset & 1 and 0x08000000 < reset < 0x08000000 + len(image)  # a Thumb address inside the image
    assert len(image) <= 256 * 1024                      # sectors 0-5; slot A starts at 0x08040000
