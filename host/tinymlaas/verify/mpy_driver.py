# MicroPython driver for tinymlaas.verify.micropython -- device code: it runs in the `micropython` unix port and
# is never imported into CPython.
#
#   micropython mpy_driver.py MODEL.blob INPUTS.bin OUTPUTS.bin N ram|stream
#
# Loads the model once, then for each of the N input sets reads the graph inputs' bytes (in graph order), runs
# predict() and appends every output's raw bytes. Prints "US <microseconds>" per inference and, if the loader
# rejects the blob, "REJECTED <message>" and exits 3.
import sys

import tinyml


def main():
    blob_path, in_path, out_path, n, mode = sys.argv[1:6]
    n = int(n)
    try:
        if mode == "stream":
            m = tinyml.load(blob_path)
        else:
            with open(blob_path, "rb") as f:
                m = tinyml.load(f.read())
    except tinyml.BlobError as e:
        print("REJECTED", e)
        sys.exit(3)
    sizes = [i["bytes"] for i in m.inputs]
    multi = len(sizes) > 1
    with open(in_path, "rb") as fin, open(out_path, "wb") as fout:
        for _ in range(n):
            xs = [fin.read(s) for s in sizes]
            y = m.predict(xs if multi else xs[0])
            for o in (y if isinstance(y, tuple) else (y,)):
                fout.write(o)
            print("US", m.last_us)


main()
