"""`tinymlaas flash` end to end: the real esptool code path (in-process) against an emulated ESP32 ROM bootloader
on a pseudo-terminal (tests/boards/esp_rom_emulator.py stands in for a board in download mode)."""

import json
import time

import pytest

from esp_images import esp_image
from esp_rom_emulator import (FLASH_BEGIN, FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, GET_SECURITY_INFO, READ_REG,
                              SPI_ATTACH, SPI_FLASH_MD5, SYNC, EspRomEmulator, SilentPort)
from tinymlaas.cli import main

ESP32_ADDRESS = 0x1000


def flash_cli(port, firmware, *extra, resets=("--before", "no-reset", "--after", "no-reset")):
    return main(["flash", "--port", port, "--firmware", str(firmware), *resets, "--connect-attempts", "1", *extra])


@pytest.fixture
def esp32_image(tmp_path):
    data = esp_image(chip_id=0)
    path = tmp_path / "firmware.bin"
    path.write_bytes(data)
    return path, data


def test_flash_writes_detects_chip_and_verifies(esp32_image, capsys):
    path, data = esp32_image
    with EspRomEmulator() as board:
        # The default reset sequences (DTR/RTS into download mode, RTS hard reset after) run as on a board;
        # a pty accepts the modem-control changes and the emulator is always in download mode.
        assert flash_cli(board.port, path, "--json", resets=()) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chip"] == "ESP32" and out["chip_id"] == 0 and out["address"] == ESP32_ADDRESS
    assert out["verified"] and out["bytes"] == len(data)
    assert board.flash[ESP32_ADDRESS:ESP32_ADDRESS + len(data)] == data
    assert board.flash[:ESP32_ADDRESS] == b"\xff" * ESP32_ADDRESS          # nothing outside the region
    # The path taken is the ROM loader's: sync, magic register, baud change, attach, compressed write, MD5.
    ops = board.commands
    assert ops[0] == SYNC and READ_REG in ops and SPI_ATTACH in ops
    assert board.baud_changes, "460800 baud should be requested from the ROM"
    assert FLASH_DEFL_BEGIN in ops and ops.count(FLASH_DEFL_DATA) >= 1
    assert ops.index(SPI_FLASH_MD5) > ops.index(FLASH_DEFL_BEGIN)


def test_esp32s3_is_identified_by_security_info_and_flashed_at_0(tmp_path, capsys):
    data = esp_image(chip_id=9)
    path = tmp_path / "s3.bin"
    path.write_bytes(data)
    with EspRomEmulator(chip="esp32s3") as board:
        assert flash_cli(board.port, path, "--chip", "esp32s3", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["chip"], out["chip_id"], out["address"]) == ("ESP32-S3", 9, 0)
    assert board.flash[:len(data)] == data
    assert GET_SECURITY_INFO in board.commands


def test_esp32_image_on_an_esp32s3_board_is_refused(esp32_image, capsys):
    path, _ = esp32_image
    with EspRomEmulator(chip="esp32s3") as board:
        assert flash_cli(board.port, path) == 2
    assert "built for ESP32 (chip id 0) but the board is ESP32-S3 (chip id 9)" in capsys.readouterr().err
    assert board.flash == b"\xff" * len(board.flash)


def test_explicit_address_and_chip(esp32_image):
    path, data = esp32_image
    with EspRomEmulator() as board:
        assert flash_cli(board.port, path, "--chip", "esp32", "--address", "0x10000", "--baud", "115200") == 0
    assert board.flash[0x10000:0x10000 + len(data)] == data
    assert not board.baud_changes


def test_port_without_a_board_gives_a_clear_message(esp32_image, capsys):
    path, _ = esp32_image
    t0 = time.monotonic()
    with SilentPort() as silent:
        assert flash_cli(silent.port, path) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]          # esptool's own chatter comes before
    assert last.startswith("tinymlaas flash: error: no ESP bootloader answered on %s" % silent.port)
    assert "download mode" in last
    assert time.monotonic() - t0 < 30


def test_missing_port(esp32_image, capsys):
    path, _ = esp32_image
    assert flash_cli("/dev/does-not-exist-tty", path) == 2
    assert "/dev/does-not-exist-tty" in capsys.readouterr().err


def test_wrong_chip_image_is_refused_before_erasing(tmp_path, capsys):
    s3 = tmp_path / "s3.bin"
    s3.write_bytes(esp_image(chip_id=9, size=50_000))
    with EspRomEmulator() as board:
        assert flash_cli(board.port, s3) == 2
    err = capsys.readouterr().err
    assert "ESP32-S3 (chip id 9)" in err and "the board is ESP32 (chip id 0)" in err and "nothing was written" in err
    assert FLASH_BEGIN not in board.commands and FLASH_DEFL_BEGIN not in board.commands
    assert board.flash == b"\xff" * len(board.flash)


def test_wrong_chip_named_on_the_command_line_needs_no_board(tmp_path, capsys):
    s3 = tmp_path / "s3.bin"
    s3.write_bytes(esp_image(chip_id=9, size=4096))
    assert flash_cli("/dev/does-not-exist-tty", s3, "--chip", "esp32") == 2
    assert "built for ESP32-S3 (chip id 9) but --chip is esp32 (chip id 0)" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (b"\x7fELF" + bytes(100), "first byte is 0x7f, expected 0xe9"),
    (b"\xe9\x03", "2 bytes is too short"),
    (b"\xe9\x00" + bytes(40), "0 segments"),
])
def test_not_an_esp_image(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(content)
    assert flash_cli("/dev/does-not-exist-tty", bad) == 2
    assert message in capsys.readouterr().err


def test_interrupted_write_then_rerun_succeeds(esp32_image, capsys):
    path, data = esp32_image
    flash = bytearray(b"\xff" * (4 * 1024 * 1024))
    with EspRomEmulator(flash=flash, die_after_blocks=2) as board:      # the cable is pulled mid-write
        assert flash_cli(board.port, path) == 2
    err = capsys.readouterr().err
    assert "run the same command again" in err
    written = flash[ESP32_ADDRESS:ESP32_ADDRESS + len(data)]
    assert written != data and written != b"\xff" * len(data)           # really half-written
    with EspRomEmulator(flash=flash) as board:                          # plugged back in, same flash
        assert flash_cli(board.port, path) == 0
    assert flash[ESP32_ADDRESS:ESP32_ADDRESS + len(data)] == data
