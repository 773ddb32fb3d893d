# Device code (runs only in the `micropython` unix port): load many blobs, one line per blob.
#
#   micropython mpy_load_many.py BLOBS.bin
#
# BLOBS.bin holds records "u32 length, bytes". For each: "OK", "REJ <message>" for a tinyml.BlobError, or
# "CRASH <type> <message>" for any other exception (a loader bug: bad input must give BlobError).
import sys

import tinyml


def main():
    with open(sys.argv[1], "rb") as f:
        while True:
            head = f.read(4)
            if len(head) < 4:
                break
            data = f.read(int.from_bytes(head, "little"))
            try:
                m = tinyml.load(data)
                print("OK")
                del m
            except tinyml.BlobError as e:
                print("REJ", e)
            except Exception as e:  # noqa: BLE001 -- reported, not hidden: the test fails on it
                print("CRASH", type(e).__name__, e)


main()
