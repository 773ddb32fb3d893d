"""Run blobs in the device runtime in several kernel modes, in one `micropython` process, and collect the outputs.

Modes: "viper" (in-RAM blob), "file" (weights streamed from the file), "stream64" (streamed through a 64-byte
weight buffer: many small blocks), "viper32" (the 32-bit-word requantization path), "reference" (the plain-Python
reference kernels), "c-module" (the `_tinyml` C module, on a firmware built with it: see with_c_module).
"""

from tinymlaas.devices import unixport

RUNNER = """
import tinyml, tinyml.requant as RQ
cases = %r
for name, path, inputs in cases:
    for mode in %r:
        RQ.use_32bit_path(mode == 'viper32')
        if mode in ('file', 'stream64'):
            m = tinyml.load(path, wbuf=4096 if mode == 'file' else 64)  # 64: weights in many small blocks
        else:
            f = open(path, 'rb'); data = f.read(); f.close()
            m = tinyml.load(data, kernels=mode if mode in ('reference', 'c-module') else 'viper')
        for i, hx in enumerate(inputs):
            m.input_buffer(i)[:] = bytes.fromhex(hx)
        m.invoke()
        print(name, mode, ' '.join(bytes(m.output_buffer(j)).hex() for j in range(len(m.outputs))))
        m.close()
"""


def outputs_by_mode(mpy_script, cases, modes, heap="2m"):
    """cases: [(name, blob path, [input hex per graph input])] -> ({(name, mode): output hex}, raw stdout)."""
    out = mpy_script(RUNNER % (cases, modes), heap=heap).stdout
    got = {}
    for line in out.splitlines():
        name, mode, hx = (line.split(" ", 2) + [""])[:3]
        got[(name, mode)] = hx
    return got, out


def firmware_has(module):
    """True when the binary MICROPYTHON selects has `module` built in (`_tinyml`, `ulab`: docs/boards.md)."""
    return unixport.run(code="import " + module, check=False).returncode == 0


def with_c_module(modes):
    """modes, plus "c-module" on a firmware that has the C module."""
    return tuple(modes) + (("c-module",) if firmware_has("_tinyml") else ())
