"""Writer: header, section table, alignment, hash; the blob reader accepts what the writer writes."""

import hashlib
import struct

import pytest

from tinymlaas.blob import format as F
from tinymlaas.blob import reader
from tinymlaas.blob.writer import BlobWriteError, OpRecord, TensorRecord, write_blob
from tinymlaas.compiler import compile_tflite


def _sections(blob):
    n = struct.unpack_from("<H", blob, 14)[0]
    return {F.SECTION.unpack_from(blob, 64 + 16 * i)[0]: F.SECTION.unpack_from(blob, 64 + 16 * i)[1:]
            for i in range(n)}


@pytest.mark.parametrize("key", ["kws", "ic", "ad"])
def test_header_hash_and_alignment(mlperf, key):
    cm = compile_tflite(mlperf(key))
    blob = cm.blob
    magic, ver, hb, flags, abi, nsec, total, arena, sha, max_params, reserved = F.HEADER.unpack_from(blob)
    assert (magic, ver, hb, abi, reserved) == (b"TMLB", 1, 64, 1, 0)
    assert flags == 0  # int8 I/O
    assert total == len(blob) and arena == cm.arena_bytes
    assert sha == hashlib.sha256(blob[64:]).digest()
    secs = _sections(blob)
    assert set(secs) == {F.SECTION_TENSORS, F.SECTION_OPS, F.SECTION_CONST, F.SECTION_GRAPH, F.SECTION_META}
    const_off, const_size, _ = secs[F.SECTION_CONST]
    assert const_off % 16 == 0 and const_off + const_size == total
    # Sections do not overlap and lie after the section table.
    spans = sorted((off, off + size) for off, size, _ in secs.values())
    assert spans[0][0] >= 64 + 16 * nsec
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    parsed = reader.parse(blob)
    assert len(parsed.ops) == len(cm.ops)
    for t in parsed.tensors:
        if t.is_const:
            assert t.offset % 16 == 0
    assert max_params == max(len(op.params) for op in parsed.ops)
    assert parsed.meta["macs"] == cm.macs and parsed.meta["ops"] == cm.source_ops


def test_blob_is_not_larger_than_tflite(mlperf):
    for key in ("kws", "vww", "ic", "ad", "sww"):
        cm = compile_tflite(mlperf(key))
        assert len(cm.blob) <= cm.tflite_bytes, key


def test_float_io_flag(corpus):
    cm = compile_tflite(corpus("float_io_dense"))
    assert struct.unpack_from("<I", cm.blob, 8)[0] == F.FLAG_FLOAT_IO
    reader.parse(cm.blob)


def _tiny(**kw):
    tensors = [TensorRecord(F.DTYPE_INT8, (1, 4), F.STORAGE_ARENA, 0, 0, 0.1),
               TensorRecord(F.DTYPE_INT8, (256,), F.STORAGE_CONST, 0),
               TensorRecord(F.DTYPE_INT8, (1, 4), F.STORAGE_ARENA, 4, 0, 0.1)]
    args = dict(tensors=tensors, inputs=[0], outputs=[2], ops=[OpRecord(9, [0, 1], [2], [])],
                const=bytes(range(256)), arena_bytes=8)
    args.update(kw)
    return write_blob(**args)


def test_op_record_layout():
    blob = _tiny()
    off, size, count = _sections(blob)[F.SECTION_OPS]
    assert count == 1 and size == F.op_record_size(2, 1, 0) == 12
    assert blob[off:off + 4] == bytes([9, 2, 1, 0])
    assert struct.unpack_from("<3H", blob, off + 4) == (0, 1, 2)
    reader.parse(blob)


@pytest.mark.parametrize("bad,match", [
    (dict(ops=[OpRecord(9, [0], [2], [])]), "inputs"),
    (dict(ops=[OpRecord(99, [0, 1], [2], [])]), "unknown opcode"),
    (dict(ops=[OpRecord(9, [0, 1], [2], [1])]), "params"),
    (dict(ops=[OpRecord(9, [0, 7], [2], [])]), "out of range"),
    (dict(arena_bytes=6), "past the arena"),
    (dict(const=b"\0" * 100), "CONST"),
    (dict(outputs=[1]), "not an arena tensor"),
])
def test_writer_refuses_records_that_break_the_format(bad, match):
    with pytest.raises(BlobWriteError, match=match):
        _tiny(**bad)
