"""Host writer (and reader, for tests and tools) of the tinymlaas install package (docs/package-format.md).

A package is what the server pushes to a device over LwM2M object 5 (/5/0/0 or a Package URI): a small fixed
header, JSON metadata, golden test vectors in raw binary, the model blob, and a SHA-256 trailer. The device-side
reader is inference_module/tinyml/installer.py; both follow docs/package-format.md.
"""

import hashlib
import json
import struct

import numpy as np

from .blob.reader import parse as parse_blob

MAGIC = b"TMLP"
VERSION = 1
HEADER = struct.Struct("<4sHHIIIIII")  # magic, version, header_bytes, meta, vectors, blob, n_vectors, flags, reserved
HEADER_BYTES = 32
TRAILER_BYTES = 32
MAX_META = 4096  # the device parses the JSON in RAM: keep it small
_NP = {1: np.int8, 5: np.float32}


class PackageError(ValueError):
    """The package (or what it is built from) is malformed."""


def _align16(n):
    return (n + 15) & ~15


def _tensor_bytes(value, t):
    """Raw bytes of one vector value for tensor t (int8 or float32, little-endian)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    else:
        raw = np.asarray(value).astype(np.dtype(_NP[t.dtype]).newbyteorder("<"), copy=False).tobytes()
    if len(raw) != t.nbytes:
        raise PackageError("tensor %d takes %d bytes, vector value has %d" % (t.index, t.nbytes, len(raw)))
    return raw


def build_package(blob_bytes, name, version, vectors):
    """-> package bytes. vectors: [(inputs, outputs)], one array/bytes per graph input and output.

    The outputs are the golden results the device must reproduce bit for bit before it activates the model.
    """
    blob = parse_blob(bytes(blob_bytes))
    ins = [blob.tensors[i] for i in blob.inputs]
    outs = [blob.tensors[i] for i in blob.outputs]
    vec = bytearray()
    for k, (vi, vo) in enumerate(vectors):
        if len(vi) != len(ins) or len(vo) != len(outs):
            raise PackageError("vector %d: %d inputs/%d outputs for a model with %d/%d" % (k, len(vi), len(vo), len(ins), len(outs)))
        for v, t in zip(list(vi) + list(vo), ins + outs):
            vec += _tensor_bytes(v, t)
    meta = {
        "name": str(name),
        "version": str(version),
        "sha256": hashlib.sha256(bytes(blob_bytes)).hexdigest(),
        "blob_bytes": len(blob_bytes),
        "arena_bytes": blob.arena_bytes,
        "vectors": len(vectors),
    }
    meta_raw = json.dumps(meta, separators=(",", ":")).encode()
    if len(meta_raw) > MAX_META:
        raise PackageError("metadata is %d bytes, the limit is %d" % (len(meta_raw), MAX_META))
    body_start = HEADER_BYTES + len(meta_raw) + len(vec)
    pad = _align16(body_start) - body_start
    meta_raw += b" " * pad  # JSON allows trailing whitespace; the blob starts 16-aligned
    head = HEADER.pack(MAGIC, VERSION, HEADER_BYTES, len(meta_raw), len(vec), len(blob_bytes), len(vectors), 0, 0)
    body = head + meta_raw + bytes(vec) + bytes(blob_bytes)
    return body + hashlib.sha256(body).digest()


def read_package(data):
    """-> dict(meta, blob, vectors=[(inputs_bytes_list, outputs_bytes_list)]); checks everything the device checks."""
    data = bytes(data)
    if len(data) < HEADER_BYTES + TRAILER_BYTES:
        raise PackageError("package too short (%d bytes)" % len(data))
    magic, ver, hb, meta_n, vec_n, blob_n, nvec, flags, res = HEADER.unpack_from(data, 0)
    if magic != MAGIC or ver != VERSION or hb != HEADER_BYTES:
        raise PackageError("not a tinymlaas package v1 (magic %r, version %d)" % (magic, ver))
    if HEADER_BYTES + meta_n + vec_n + blob_n + TRAILER_BYTES != len(data):
        raise PackageError("section sizes do not add up to the package size")
    if hashlib.sha256(data[:-TRAILER_BYTES]).digest() != data[-TRAILER_BYTES:]:
        raise PackageError("package SHA-256 mismatch")
    meta = json.loads(data[HEADER_BYTES:HEADER_BYTES + meta_n])
    v0 = HEADER_BYTES + meta_n
    blob = data[v0 + vec_n:v0 + vec_n + blob_n]
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise PackageError("model SHA-256 does not match the metadata")
    b = parse_blob(blob)
    sizes_in = [b.tensors[i].nbytes for i in b.inputs]
    sizes_out = [b.tensors[i].nbytes for i in b.outputs]
    per = sum(sizes_in) + sum(sizes_out)
    if per * nvec != vec_n:
        raise PackageError("vector section has %d bytes, expected %d x %d" % (vec_n, nvec, per))
    vectors, pos = [], v0
    for _ in range(nvec):
        vi, vo = [], []
        for n in sizes_in:
            vi.append(data[pos:pos + n]); pos += n
        for n in sizes_out:
            vo.append(data[pos:pos + n]); pos += n
        vectors.append((vi, vo))
    return {"meta": meta, "blob": blob, "vectors": vectors, "blob_offset": v0 + vec_n}
