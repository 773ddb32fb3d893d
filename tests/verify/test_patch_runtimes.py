"""Patch-based stages (PATCH, docs/blob-format.md §12) on the device runtimes: the C runtime and the MicroPython VM
refuse the same broken tile tables as the host reader, the MicroPython runtime's RAM drops with the arena, and the
Cortex-M4 firmware (DSP kernels, negative padding in a tile's first convolution) is bit-exact with TFLite Micro.
The patched MLPerf blobs themselves are judged on every runtime by test_c_mlperf_bit_exact,
test_micropython_runtime and tests/device/test_mlperf (the compiler's default)."""

import hashlib

import numpy as np
import pytest

from tinymlaas.blob import format as F
from tinymlaas.blob.reader import BlobFormatError, parse
from tinymlaas.commands.verify import verify
from tinymlaas.compiler import compile_tflite
from tinymlaas.devices import unixport
from tinymlaas.paths import INFERENCE_MODULE
from tinymlaas.verify.runtimes import BlobRejected, get_runtime


def _table_word(blob, row, word):
    """File offset of int32 `word` of tile-table row `row` of the blob's first PATCH op."""
    b = parse(blob)
    patch = next(op for op in b.ops if op.name == "PATCH")
    tiles = b.tensors[patch.inputs[1]]
    n = F.HEADER.unpack_from(blob)[5]
    const = next(off for kind, off, _s, _c in (F.SECTION.unpack_from(blob, 64 + 16 * k) for k in range(n))
                 if kind == F.SECTION_CONST)
    return const + tiles.offset + 4 * (row * tiles.shape[1] + word)


def _set_word(blob, at, value):
    b = bytearray(blob)
    b[at:at + 4] = int(value).to_bytes(4, "little", signed=True)
    b[24:56] = hashlib.sha256(bytes(b[64:])).digest()
    return bytes(b)


@pytest.fixture(scope="module")
def sww():
    from tinymlaas.paths import mlperf_model
    return compile_tflite(mlperf_model("sww")).blob, mlperf_model("sww").read_bytes()


# (row, word, value, what every reader's message names): tile 0's op 0 rows past its tile buffer; tile 1's op 1
# padding negative (only the first op may read before its input); tile 0's origin outside y.
CASES = [(0, 2, 99, "outside"), (1, 8, -1, "padding"), (0, 0, 500, "outside")]


@pytest.mark.parametrize("row, word, value, what", CASES)
def test_readers_refuse_the_same_tile_tables(sww, row, word, value, what):
    bad = _set_word(sww[0], _table_word(sww[0], row, word), value)
    x = [[np.zeros((1, 30, 1, 40), np.int8)]]
    with pytest.raises(BlobFormatError, match="PATCH.*" + what):
        parse(bad)
    for runtime in ("c", "micropython"):
        with pytest.raises(BlobRejected, match="PATCH"):
            get_runtime(runtime).run(bad, x)


def test_micropython_ram_drops_with_the_arena(tmp_path, mlperf):
    """What load() keeps (arena, tables, plans, buffers) for VWW streamed from a file: less by what the arena lost."""
    held = {}
    for patches in (False, True):
        cm = compile_tflite(mlperf("vww"), patches=patches)
        path = tmp_path / ("%s.tmlb" % patches)
        path.write_bytes(cm.blob)
        out = unixport.run(code="""
import gc, tinyml, tinyml.model, tinyml.opcheck, tinyml.patch
gc.collect()
free = gc.mem_free()
m = tinyml.load(%r)
gc.collect()
print('HELD', free - gc.mem_free(), m.arena_bytes)
""" % str(path), heap="1m", path=[str(INFERENCE_MODULE)]).stdout.decode()
        held[patches] = [int(v) for v in out.split("HELD")[1].split()]
    (without, arena0), (with_, arena1) = held[False], held[True]
    assert arena0 == 55296 and arena1 <= 32 * 1024
    assert without - with_ >= 0.95 * (arena0 - arena1), held


def test_cortex_m4_firmware_bit_exact(sww):
    blob, model = sww
    assert "PATCH" in [op.name for op in parse(blob).ops]
    r = verify(blob, model, "qemu-cortex-m4", n_inputs=1, seed=4)
    assert r["bit_exact"], r["first_mismatch"]


def test_three_readers_agree_on_mutated_tile_tables(request, tmp_path):
    """Differential fuzz of the tile tables (and the stage records' padding) of the shared PATCH vectors: the host
    reader, the C loader and the MicroPython loader accept exactly the same blobs, and every accepted blob runs to
    the end on the host executor and the C runtime (`--fuzz-long`: 5,000 cases)."""
    import random
    from pathlib import Path

    from tinymlaas.blob.reference import NP_DTYPE, Executor
    from tinymlaas.devices.cruntime import LoadError, Model
    from tinymlaas.paths import VECTORS

    cases = 5000 if request.config.getoption("--fuzz-long") else 150
    rng = random.Random(22)
    seeds = [(VECTORS / (n + ".blob")).read_bytes() for n in ("patch_mbv2_block", "patch_sww")]
    edges = [-70000, -65536, -65535, -9, -2, -1, 0, 1, 2, 3, 4, 5, 16, 17, 31, 32, 33, 2 ** 31 - 1, -2 ** 31]
    mutated = []
    for _ in range(cases):
        seed = blob = rng.choice(seeds)
        b = parse(seed)
        patch = next(op for op in b.ops if op.name == "PATCH")
        rows, width = b.tensors[patch.inputs[1]].shape
        for _ in range(rng.randint(1, 3)):
            blob = _set_word(blob, _table_word(seed, rng.randrange(rows), rng.randrange(width)), rng.choice(edges))
        mutated.append(blob)
    path = tmp_path / "blobs.bin"
    path.write_bytes(b"".join(len(m).to_bytes(4, "little") + m for m in mutated))
    lines = unixport.run(script=Path(__file__).with_name("mpy_load_many.py"), args=[path], heap="2m",
                         path=[str(INFERENCE_MODULE)], timeout=600).stdout.decode().splitlines()
    assert len(lines) == cases and not [ln for ln in lines if ln.startswith("CRASH")]
    accepted = 0
    for data, line in zip(mutated, lines):
        try:
            blob = parse(data)
            host = None
        except BlobFormatError as e:
            blob, host = None, str(e)
        try:
            c_model, c = Model(data), None
        except LoadError as e:
            c_model, c = None, str(e)
        assert (host is None) == (c is None) == (line == "OK"), (host, c, line)
        if blob is not None:
            accepted += 1
            xs = [np.zeros(blob.tensors[t].shape, NP_DTYPE[blob.tensors[t].dtype]) for t in blob.inputs]
            Executor(blob).run(xs)
            c_model.invoke(xs)
    assert 0 < accepted < cases
