"""blob.reader: every §9 rule rejects with a clear message; valid blobs parse; nothing executes before that."""

import hashlib
import struct

import pytest

from tinymlaas.blob import format as F
from tinymlaas.blob.reader import BlobFormatError, parse
from verify_paths import CORPUS

GOOD = CORPUS / "conv_same_stride2.tflite"


@pytest.fixture
def blob(compiled):
    return bytearray(compiled(GOOD))


def rehash(b):
    b = bytearray(b)
    b[F.SHA256_OFFSET:F.SHA256_OFFSET + 32] = hashlib.sha256(bytes(b[F.HEADER_BYTES:])).digest()
    return bytes(b)


def sections(b):
    n = struct.unpack_from("<H", b, 14)[0]
    return {F.SECTION.unpack_from(b, 64 + 16 * i)[0]: (64 + 16 * i,) + F.SECTION.unpack_from(b, 64 + 16 * i)[1:]
            for i in range(n)}


def test_valid_blob_parses(blob):
    p = parse(bytes(blob))
    assert [op.name for op in p.ops] == ["CONV_2D"]
    assert p.tensors[p.inputs[0]].shape == (1, 9, 7, 2)
    assert p.meta.get("ops") == ["CONV_2D"]


@pytest.mark.parametrize("cut", [0, 10, 63])
def test_shorter_than_header(blob, cut):
    with pytest.raises(BlobFormatError, match="shorter than the 64-byte header"):
        parse(bytes(blob[:cut]))


def test_wrong_version_names_both_versions(blob):
    struct.pack_into("<H", blob, 4, 3)
    with pytest.raises(BlobFormatError, match=r"format version 3 is not supported.*format version 1"):
        parse(bytes(blob))


def test_wrong_abi_is_named(blob):
    struct.pack_into("<H", blob, 12, 9)
    with pytest.raises(BlobFormatError, match=r"kernel ABI 9 is not implemented.*ABI 1"):
        parse(bytes(blob))


def test_truncated_and_padded(blob):
    with pytest.raises(BlobFormatError, match="total_bytes"):
        parse(bytes(blob[:-1]))
    with pytest.raises(BlobFormatError, match="total_bytes"):
        parse(bytes(blob) + b"\0")


def test_hash_checked_before_tensors(blob):
    off = sections(blob)[F.SECTION_TENSORS][1]
    blob[off] = 99  # an unknown dtype -- but the hash must be what fails first (spec §9 order)
    with pytest.raises(BlobFormatError, match="SHA-256 mismatch"):
        parse(bytes(blob))
    with pytest.raises(BlobFormatError, match="unknown dtype 99"):
        parse(rehash(blob))


def test_unknown_required_section_kind(blob):
    row = sections(blob)[F.SECTION_META][0]
    struct.pack_into("<I", blob, row, 7)
    with pytest.raises(BlobFormatError, match="unknown required section kind 7"):
        parse(rehash(blob))


def test_optional_section_kind_is_skipped(blob):
    row = sections(blob)[F.SECTION_META][0]
    struct.pack_into("<I", blob, row, 0x1234)
    p = parse(rehash(blob))
    assert p.meta == {}


def test_missing_required_section(blob):
    row = sections(blob)[F.SECTION_GRAPH][0]
    struct.pack_into("<I", blob, row, F.SECTION_META)  # now META twice, GRAPH missing
    with pytest.raises(BlobFormatError, match="appears twice|missing"):
        parse(rehash(blob))


def test_section_outside_blob(blob):
    row, off, size, count = sections(blob)[F.SECTION_OPS]
    struct.pack_into("<I", blob, row + 8, len(blob))
    with pytest.raises(BlobFormatError, match="lies outside"):
        parse(rehash(blob))


def test_overlapping_sections(blob):
    s = sections(blob)
    row, off, size, count = s[F.SECTION_OPS]
    struct.pack_into("<I", blob, row + 4, s[F.SECTION_TENSORS][1])
    with pytest.raises(BlobFormatError, match="overlap"):
        parse(rehash(blob))


def test_arena_tensor_past_arena(blob):
    struct.pack_into("<I", blob, 20, 8)  # arena_bytes (in the header, not hashed)
    with pytest.raises(BlobFormatError, match="past arena_bytes=8"):
        parse(bytes(blob))


def test_tensor_bytes_must_match_dims(blob):
    off = sections(blob)[F.SECTION_TENSORS][1]
    struct.pack_into("<I", blob, off + 24, 5)
    with pytest.raises(BlobFormatError, match="tensor 0: bytes=5"):
        parse(rehash(blob))


def test_op_param_count_and_opcode(blob):
    off = sections(blob)[F.SECTION_OPS][1]
    bad = bytearray(blob)
    bad[off] = 77
    with pytest.raises(BlobFormatError, match="unknown opcode 77"):
        parse(rehash(bad))
    bad = bytearray(blob)
    bad[off + 3] = 9
    with pytest.raises(BlobFormatError, match="has 9 params, needs 10"):
        parse(rehash(bad))


def test_op_tensor_index_out_of_range(blob):
    off = sections(blob)[F.SECTION_OPS][1]
    struct.pack_into("<H", blob, off + 4, 999)
    with pytest.raises(BlobFormatError, match="tensor index 999"):
        parse(rehash(blob))


def test_op_input_overlapping_output_is_rejected(blob):
    p = parse(bytes(blob))
    op = p.ops[0]
    x, y = p.tensors[op.inputs[0]], p.tensors[op.outputs[0]]
    toff = sections(blob)[F.SECTION_TENSORS][1] + F.TENSOR.size * y.index
    struct.pack_into("<I", blob, toff + 20, x.offset)  # put the conv's output on top of its input
    with pytest.raises(BlobFormatError, match="overlaps output"):
        parse(rehash(blob))


def test_bad_activation_range(blob):
    p = parse(bytes(blob))
    op = p.ops[0]
    ops_off = sections(blob)[F.SECTION_OPS][1]
    rec = F.op_record_size(len(op.inputs), 1, len(op.params))
    k = op.spec.params.index("act_max")
    struct.pack_into("<i", blob, ops_off + rec - 4 * (len(op.params) - k), 300)
    with pytest.raises(BlobFormatError, match=r"activation range \[-?\d+, 300\]"):
        parse(rehash(blob))
