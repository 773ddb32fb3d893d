"""Mutation fuzz of PATCH blobs (opcode 22, docs/blob-format.md §12) across the three readers, beyond the tile-table
words test_patch_runtimes changes: the shared vectors patch_mbv2_block and patch_sww with tile-table words, OPS
words (the PATCH record, its n_ops, the stage records' tensors, strides, dilations, padding) and tensor records
(the tile buffers' shapes and offsets) set to edge values, bytes flipped, chunks dropped or repeated, and the blob
cut short (with its total_bytes fixed, and raw); the hash is kept valid. Each blob is either refused by the host
reader, the C loader (AddressSanitizer + UBSan) and the MicroPython loader alike, or accepted by all three and run
to the end by the reference executor, the sanitized C build (exact-size buffers) and the MicroPython VM (whose
kernels read through uctypes views without bounds checks: a table rule its loader missed would crash the VM).
300 cases by default; `--fuzz-long` runs 5,000."""

import hashlib
import random
import struct
from pathlib import Path

import pytest

from blob_fuzz import check_micropython, check_sanitized_c
from test_patch_runtimes import _set_word, _table_word
from test_reader_fuzz import mutate

from tinymlaas.blob import format as F
from tinymlaas.blob.reader import BlobFormatError, parse
from tinymlaas.paths import VECTORS

TABLE_EDGES = (-70000, -65536, -65535, -9, -2, -1, 0, 1, 2, 3, 4, 5, 16, 17, 31, 32, 33, 2 ** 31 - 1, -2 ** 31)
EDGES = (0, 1, -1, 2, 3, 4, 5, 255, 256, 65535, 65536, 2 ** 31 - 1, -(2 ** 31))


def _rehash(b):
    b[F.SHA256_OFFSET:F.SHA256_OFFSET + 32] = hashlib.sha256(bytes(b[F.HEADER_BYTES:])).digest()
    return bytes(b)


def _section_words(blob, kinds):
    n = struct.unpack_from("<H", blob, 14)[0]
    spans = [F.SECTION.unpack_from(blob, F.HEADER_BYTES + 16 * i)[:3] for i in range(n)]
    return [(off, size) for kind, off, size in spans if kind in kinds]


def mutate_patch(rng, seed):
    kind = rng.random()
    if kind < 0.35:  # tile-table words
        b = parse(seed)
        patch = next(op for op in b.ops if op.name == "PATCH")
        rows, width = b.tensors[patch.inputs[1]].shape
        blob = seed
        for _ in range(rng.randint(1, 3)):
            blob = _set_word(blob, _table_word(seed, rng.randrange(rows), rng.randrange(width)),
                             rng.choice(TABLE_EDGES))
        return blob
    b = bytearray(seed)
    if kind < 0.75:  # aligned words of the op records or the tensor records
        spans = _section_words(seed, (F.SECTION_OPS,) if kind < 0.6 else (F.SECTION_TENSORS,))
        for _ in range(rng.randint(1, 2)):
            off, size = rng.choice(spans)
            struct.pack_into("<i", b, off + 4 * rng.randrange(size // 4), rng.choice(EDGES))
        return _rehash(b)
    if kind < 0.9:
        return mutate(rng, seed)  # bytes flipped, chunks dropped or repeated, header fields
    cut = rng.randrange(F.HEADER_BYTES, len(b))
    b = b[:cut]
    if rng.random() < 0.8:  # cut short with total_bytes fixed: the sections run past the end
        b[16:20] = len(b).to_bytes(4, "little")
        return _rehash(b)
    return bytes(b)


def cases(request, seed):
    count = 5000 if request.config.getoption("--fuzz-long") else 300
    rng = random.Random(seed)
    seeds = [(VECTORS / (n + ".blob")).read_bytes() for n in ("patch_mbv2_block", "patch_sww")]
    return [mutate_patch(rng, rng.choice(seeds)) for _ in range(count)]


def test_host_and_sanitized_c_agree_and_accepted_blobs_run(request, tmp_path):
    found, accepted = check_sanitized_c(cases(request, 2203), tmp_path)
    assert not found, found[:5]
    assert accepted > 0  # the accepted side is exercised too


def test_host_and_micropython_agree_and_accepted_blobs_run(request, tmp_path):
    found, ran = check_micropython(cases(request, 2204), tmp_path)
    assert not found, found[:5]
    assert ran > 0


def test_readers_refuse_a_convolution_fed_a_constant(tmp_path):
    """Found by the C half above (--fuzz-long, 2026-12-03): patch_sww's first DEPTHWISE_CONV_2D with its input and
    filter swapped (x a const tensor, the filter the graph input) was accepted by the C loader alone."""
    from tinymlaas.devices import unixport
    from tinymlaas.devices.cruntime import LoadError, Model
    seed = (VECTORS / "patch_sww.blob").read_bytes()
    op = parse(seed).ops[0]
    assert op.name == "DEPTHWISE_CONV_2D" and op.inputs[:2] == (0, 2)
    at = seed.index(struct.pack("<HH", 0, 2), _section_words(seed, (F.SECTION_OPS,))[0][0])
    bad = bytearray(seed)
    struct.pack_into("<HH", bad, at, 2, 0)
    bad = _rehash(bad)
    with pytest.raises(BlobFormatError, match="data input tensor 2 is not in the arena"):
        parse(bad)
    with pytest.raises(LoadError, match="data input tensor 2 is not in the arena"):
        Model(bad)
    (tmp_path / "b.bin").write_bytes(len(bad).to_bytes(4, "little") + bad)
    line = unixport.run(script=Path(__file__).with_name("mpy_load_many.py"), args=[tmp_path / "b.bin"],
                        heap="2m").stdout.decode().strip()
    assert line.startswith("REJ") and "data input tensor 2 is not in the arena" in line, line
