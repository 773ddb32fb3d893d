# Device code (runs only in the `micropython` unix port): load many blobs, one line per blob.
#
#   micropython mpy_load_many.py BLOBS.bin [invoke [KERNELS]]
#
# BLOBS.bin holds records "u32 length, bytes". For each: "OK", "REJ <message>" for a tinyml.BlobError, or
# "CRASH <type> <message>" for any other exception (a loader bug: bad input must give BlobError). With `invoke`
# every loaded blob is also run once (on its zeroed arena; KERNELS as tinyml.load's kernels=): "OK" then means it
# ran to the end, "CRASH" that it raised.
import sys

import tinyml


def main():
    invoke = len(sys.argv) > 2 and sys.argv[2] == "invoke"
    kw = {"kernels": sys.argv[3]} if len(sys.argv) > 3 else {}
    with open(sys.argv[1], "rb") as f:
        while True:
            head = f.read(4)
            if len(head) < 4:
                break
            data = f.read(int.from_bytes(head, "little"))
            try:
                m = tinyml.load(data, **kw)
            except tinyml.BlobError as e:
                print("REJ", e)
                continue
            except Exception as e:  # noqa: BLE001 -- reported, not hidden: the test fails on it
                print("CRASH", type(e).__name__, e)
                continue
            try:
                if invoke:
                    m.invoke()  # a loaded blob must run: any exception here is a rule its loader missed
                print("OK")
            except Exception as e:  # noqa: BLE001
                print("CRASH", type(e).__name__, e)
            del m


main()
