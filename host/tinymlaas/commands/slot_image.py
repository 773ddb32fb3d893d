"""`tinymlaas slot-image MODEL -o slot.bin [--slot a|b] [--seq N]`: a committed flash model slot for the STM32F4
firmware, for factory provisioning with st-flash / openocd / STM32CubeProgrammer (docs/firmware.md)."""

from pathlib import Path


def register(subparsers):
    p = subparsers.add_parser("slot-image", help="write an STM32F4 flash model slot image for factory provisioning",
                              description="Build a committed model slot (record + blob) for the STM32F4 firmware's "
                              "flash store. Program it at the printed address next to the firmware and the board "
                              "boots with that model active. A .tflite model is compiled first.")
    p.add_argument("model", help="a .tflite model or a compiled blob")
    p.add_argument("-o", "--output", required=True, help="image file to write")
    p.add_argument("--slot", choices=["a", "b"], default="a", help="which slot the image is for (default a)")
    p.add_argument("--seq", type=int, default=1, help="install sequence number; the larger live slot wins (default 1)")
    p.set_defaults(func=run)


def run(args):
    from ..boards.stm32_slots import SLOT_A, SLOT_B, SlotError, slot_image
    from ..cli import UserError
    from .emulate import load_model

    blob, _ = load_model(args.model)
    try:
        image = slot_image(blob, seq=args.seq)
    except SlotError as e:
        raise UserError(str(e)) from None
    out = Path(args.output)
    try:
        out.write_bytes(image)
    except OSError as e:
        raise UserError("cannot write %s: %s" % (out, e.strerror)) from None
    address = SLOT_A if args.slot == "a" else SLOT_B
    print("wrote %s: %d-byte blob in a %d-byte slot image for 0x%08X" % (out, len(blob), len(image), address))
    print("program it with: st-flash write %s 0x%08X" % (out, address))
    return 0
