"""`tinymlaas flash --port PORT --firmware FILE [--chip auto|esp32|esp32s3] [--baud B] [--address 0x...]`:
write MicroPython firmware to an ESP32 through its ROM bootloader (esptool in-process), verify it, reset."""

from pathlib import Path


def _address(text):
    try:
        return int(text, 0)
    except ValueError:
        raise __import__("argparse").ArgumentTypeError("not an address: %r (e.g. 0x1000)" % text) from None


def register(subparsers):
    p = subparsers.add_parser("flash", help="flash MicroPython firmware to an ESP32 / ESP32-S3 over USB serial",
                              description="Write a MicroPython firmware.bin to an ESP32 or ESP32-S3 through its ROM "
                              "serial bootloader (esptool, in-process). The firmware's chip id is checked against the "
                              "chip detected on the port before anything is erased; the written region's MD5 is "
                              "verified by the chip. An interrupted write can simply be run again.")
    p.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    p.add_argument("--firmware", required=True, help="MicroPython firmware.bin (ESP-IDF image)")
    p.add_argument("--chip", default="auto", choices=["auto", "esp32", "esp32s3"],
                   help="expected chip (default: detect it)")
    p.add_argument("--baud", type=int, default=460800, help="baud rate for the write (default 460800)")
    p.add_argument("--address", type=_address, help="flash offset (default: 0x1000 on ESP32, 0x0 on ESP32-S3)")
    p.add_argument("--before", default="default-reset", choices=["default-reset", "usb-reset", "no-reset"],
                   help="how to put the chip into download mode (default: toggle DTR/RTS)")
    p.add_argument("--after", default="hard-reset", choices=["hard-reset", "no-reset"],
                   help="what to do when done (default: reset into the new firmware)")
    p.add_argument("--connect-attempts", type=int, default=3, help="connection attempts (default 3)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args):
    from ..boards.esp_flash import FlashError, flash
    from ..cli import UserError
    from ._output import print_json

    path = Path(args.firmware)
    try:
        firmware = path.read_bytes()
    except OSError as e:
        raise UserError("cannot read firmware %s: %s" % (path, e.strerror)) from None
    if args.baud < 9600:
        raise UserError("--baud %d is too low (9600 or more)" % args.baud)
    if args.connect_attempts < 1:
        raise UserError("--connect-attempts must be at least 1")
    try:
        result = flash(args.port, firmware, chip=args.chip, baud=args.baud, address=args.address,
                       before=args.before, after=args.after, connect_attempts=args.connect_attempts)
    except FlashError as e:
        raise UserError(str(e)) from None
    if args.json:
        print_json(result)
    else:
        print("flashed %d bytes to %s at 0x%x on %s in %.1f s; MD5 verified"
              % (result["bytes"], result["chip"], result["address"], result["port"], result["seconds"]))
    return 0
