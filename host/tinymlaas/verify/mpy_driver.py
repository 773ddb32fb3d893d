# MicroPython driver for tinymlaas.verify.micropython -- device code: it runs in the `micropython` unix port and
# is never imported into CPython.
#
#   micropython mpy_driver.py MODEL.blob INPUTS.bin OUTPUTS.bin N ram|stream SPEC
#
# SPEC describes the graph inputs in order, e.g. "640b" or "144f,12b": bytes per input and b (int8, passed as
# bytes) or f (float32, passed as floats). Loads the model once, then for each of the N input sets reads the inputs'
# bytes, runs predict() and appends every output's raw bytes. Prints "US <microseconds>" per inference; if the
# loader rejects the blob, prints "REJECTED <message>" and exits 3. Memory: one input set and one output at a time.
import struct
import sys

import tinyml


def main():
    blob_path, in_path, out_path, n, mode, spec = sys.argv[1:7]
    n = int(n)
    specs = [(int(s[:-1]), s[-1]) for s in spec.split(",")]
    try:
        if mode == "stream":
            m = tinyml.load(blob_path)
        else:
            with open(blob_path, "rb") as f:
                m = tinyml.load(f.read())
    except tinyml.BlobError as e:
        print("REJECTED", e)
        sys.exit(3)
    with open(in_path, "rb") as fin, open(out_path, "wb") as fout:
        for _ in range(n):
            xs = []
            for size, kind in specs:
                raw = fin.read(size)
                xs.append(struct.unpack("<%df" % (size // 4), raw) if kind == "f" else raw)
            y = m.predict(*xs)
            for o in (y if isinstance(y, list) else (y,)):
                fout.write(o)
            print("US", m.last_us)


main()
