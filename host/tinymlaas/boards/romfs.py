"""ROMFS images whose files start 16-byte aligned, so a device uses model blobs in place from memory-mapped flash.

MicroPython's ROMFS (vfs.VfsRom) maps a file's bytes straight from flash, but mpremote's image builder packs file
data right after its record header, at any address; the runtimes read int32 constants with 32-bit loads, which
fault on unaligned addresses on Xtensa. This writes the same format with mpremote's own record encoder, with a
fixed 16-byte image header (the length varint may carry leading 0x80 bytes) and a padding record before each file
so that its data starts on a 16-byte boundary of the image.
"""

from mpremote.romfs import VfsRomWriter

ALIGN = 16
HEADER = 16


def build_image(files):
    """files: [(name, bytes)] for the image's root directory -> image bytes with every file's data aligned."""
    w = VfsRomWriter()
    body = bytearray()
    for name, data in files:
        for pad in [None] + list(range(ALIGN)):
            rec = b"" if pad is None else w._pack(VfsRomWriter.ROMFS_RECORD_KIND_PADDING, b"\0" * pad)
            probe = VfsRomWriter()
            probe.mkfile(name, data)
            rec += bytes(probe._dir_stack[-1][1])
            if (HEADER + len(body) + len(rec) - len(data)) % ALIGN == 0:   # file data ends its record
                body += rec
                break
        else:
            raise ValueError("cannot align %s in the ROMFS image" % name)
    if len(body) % 2:   # images have an even length
        body += w._pack(VfsRomWriter.ROMFS_RECORD_KIND_PADDING, b"\0")
    length = w._encode_uint(len(body))
    prefix = HEADER - len(VfsRomWriter.ROMFS_HEADER) - len(length)
    if prefix < 0:
        raise ValueError("image too large")
    return VfsRomWriter.ROMFS_HEADER + b"\x80" * prefix + length + bytes(body)
