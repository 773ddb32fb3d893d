"""Host writer (and reader, for tests and tools) of the tinymlaas install package (docs/package-format.md).

A package is what the server pushes to a device over LwM2M object 5 (/5/0/0 or a Package URI): a small fixed
header, the signed manifest (a COSE_Sign1 envelope, docs/manifest.md), JSON metadata, golden test vectors in raw
binary, the model blob, and a SHA-256 trailer. The device-side reader is inference_module/tinyml/installer.py;
both follow docs/package-format.md.
"""

import hashlib
import json
import math
import struct

import numpy as np

from .blob.reader import parse as parse_blob

MAGIC = b"TMLP"
VERSION = 2  # 1: unsigned (refused by devices since the signed manifest)
HEADER = struct.Struct("<4sHHIIIIII")  # magic, version, header_bytes, meta, vectors, blob, n_vectors, flags, envelope
ENVELOPE_MAX = 512
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


HEAD_KINDS = ("softmax", "ncm")


def head_config(head, n_outputs=None):
    """A trainable head's package metadata {"kind", "lr", "save_every", "output"} (docs/learning.md), checked:
    kind softmax|ncm, lr a finite number > 0, save_every a whole number >= 1, output the index of a graph output
    other than 0 (the model's own answer) when the blob's output count `n_outputs` is known."""
    if not isinstance(head, dict):
        raise PackageError("head must be a dict with kind, lr, save_every and output")
    unknown = set(head) - {"kind", "lr", "save_every", "output"}
    if unknown:
        raise PackageError("head has unknown field(s) %s" % ", ".join(sorted(unknown)))
    kind = head.get("kind")
    if kind not in HEAD_KINDS:
        raise PackageError("head kind %r: use softmax or ncm" % (kind,))
    lr = head.get("lr", 0.05)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise PackageError("head learning rate %r must be a finite number above 0" % (lr,))
    save_every, output = head.get("save_every", 10), head.get("output", 1)
    for what, v, low in (("save_every", save_every, 1), ("output", output, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise PackageError("head %s %r must be a whole number >= %d" % (what, v, low))
    if n_outputs is not None and output >= n_outputs:
        raise PackageError("head output %d: the blob has %d output(s); compile it with embedding_output"
                           % (output, n_outputs))
    return {"kind": kind, "lr": float(lr), "save_every": save_every, "output": output}


def build_package(blob_bytes, name, version, vectors, signer=None, sequence=None, vendor=None, klass=None,
                  anomaly=None, head=None):
    """-> package bytes. vectors: [(inputs, outputs)], one array/bytes per graph input and output.

    The outputs are the golden results the device must reproduce bit for bit before it activates the model.
    The manifest is signed by `signer` (signing.Signer; default: the default key store's current key) with
    `sequence` (default: the UTC time in milliseconds, which only grows), for vendor / class ids `vendor` /
    `klass` (16 bytes each; default: signing.store's DEFAULT_VENDOR / DEFAULT_CLASS). anomaly: an anomaly
    model's {"score", "threshold"} (service/anomaly.py), in the metadata for the device to raise alarms with.
    head: a trainable head {"kind": softmax|ncm, "lr", "save_every", "output"} (head_config) for a blob compiled
    with embedding_output (docs/learning.md), in the metadata as "head".
    """
    from .signing import cose, manifest, store

    blob = parse_blob(bytes(blob_bytes))
    ins = [blob.tensors[i] for i in blob.inputs]
    outs = [blob.tensors[i] for i in blob.outputs]
    head = head_config(head, len(outs)) if head is not None else None
    vec = bytearray()
    for k, (vi, vo) in enumerate(vectors):
        if len(vi) != len(ins) or len(vo) != len(outs):
            raise PackageError("vector %d: %d inputs/%d outputs for a model with %d/%d" % (k, len(vi), len(vo), len(ins), len(outs)))
        for v, t in zip(list(vi) + list(vo), ins + outs):
            vec += _tensor_bytes(v, t)
    if sequence is None:
        import time

        sequence = time.time_ns() // 1_000_000
    signer = signer or store.default_store().signer()
    try:
        m = manifest.for_package(bytes(blob_bytes), bytes(vec), str(name), str(version), sequence,
                                 vendor or store.DEFAULT_VENDOR, klass or store.DEFAULT_CLASS)
    except manifest.ManifestError as e:
        raise PackageError(str(e)) from None
    envelope = cose.sign_manifest(m, signer)
    meta = {
        "name": str(name),
        "version": str(version),
        "sha256": hashlib.sha256(bytes(blob_bytes)).hexdigest(),
        "blob_bytes": len(blob_bytes),
        "arena_bytes": blob.arena_bytes,
        "vectors": len(vectors),
        "sequence": sequence,
        "kid": signer.key_id.hex(),
    }
    if anomaly is not None:
        threshold = float(anomaly["threshold"])
        if not math.isfinite(threshold):  # inf would never alarm, -inf always; the device refuses it
            raise PackageError("anomaly threshold %r is not a finite number" % threshold)
        meta["anomaly"] = {"score": str(anomaly["score"]), "threshold": threshold}
    if head is not None:
        meta["head"] = head
    meta_raw = json.dumps(meta, separators=(",", ":")).encode()
    if len(meta_raw) > MAX_META:
        raise PackageError("metadata is %d bytes, the limit is %d" % (len(meta_raw), MAX_META))
    body_start = HEADER_BYTES + len(envelope) + len(meta_raw) + len(vec)
    pad = _align16(body_start) - body_start
    meta_raw += b" " * pad  # JSON allows trailing whitespace; the blob starts 16-aligned
    head = HEADER.pack(MAGIC, VERSION, HEADER_BYTES, len(meta_raw), len(vec), len(blob_bytes), len(vectors), 0,
                       len(envelope))
    body = head + envelope + meta_raw + bytes(vec) + bytes(blob_bytes)
    return body + hashlib.sha256(body).digest()


def _header(data):
    if len(data) < HEADER_BYTES + TRAILER_BYTES:
        raise PackageError("package too short (%d bytes)" % len(data))
    magic, ver, hb, meta_n, vec_n, blob_n, nvec, flags, env_n = HEADER.unpack_from(data, 0)
    if magic != MAGIC or hb != HEADER_BYTES:
        raise PackageError("not a tinymlaas package (magic %r)" % magic)
    if ver == 1:
        raise PackageError("unsigned package (version 1): devices accept only signed packages (version 2)")
    if ver != VERSION:
        raise PackageError("unsupported package version %d (this reader reads %d)" % (ver, VERSION))
    if not 0 < env_n <= ENVELOPE_MAX:
        raise PackageError("envelope of %d bytes (1..%d)" % (env_n, ENVELOPE_MAX))
    if HEADER_BYTES + env_n + meta_n + vec_n + blob_n + TRAILER_BYTES != len(data):
        raise PackageError("section sizes do not add up to the package size")
    return meta_n, vec_n, blob_n, nvec, env_n


def package_envelope(data):
    """The COSE_Sign1 envelope of a version 2 package (what a co-processor's COMMIT carries), checked for its
    structure (signing.cose.open_envelope), not verified."""
    from .signing import cose

    data = bytes(data)
    env_n = _header(data)[4]
    env = data[HEADER_BYTES:HEADER_BYTES + env_n]
    try:
        cose.open_envelope(env)
    except cose.SignatureError as e:
        raise PackageError("envelope: %s" % e) from None
    return env


def read_package(data, anchors=None):
    """-> dict(meta, blob, vectors=[(inputs_bytes_list, outputs_bytes_list)], envelope, manifest); checks everything
    the device checks. With `anchors` ({kid: point}) the envelope is verified and its manifest compared with the
    sections (`manifest` is then the signing.Manifest, else None)."""
    from .signing import cose

    data = bytes(data)
    meta_n, vec_n, blob_n, nvec, env_n = _header(data)
    if hashlib.sha256(data[:-TRAILER_BYTES]).digest() != data[-TRAILER_BYTES:]:
        raise PackageError("package SHA-256 mismatch")
    envelope = package_envelope(data)
    m0 = HEADER_BYTES + env_n
    meta = json.loads(data[m0:m0 + meta_n])
    v0 = m0 + meta_n
    blob = data[v0 + vec_n:v0 + vec_n + blob_n]
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise PackageError("model SHA-256 does not match the metadata")
    manifest = None
    if anchors is not None:
        try:
            manifest = cose.verify_manifest(envelope, anchors)
        except cose.M.ManifestError as e:
            raise PackageError("signed manifest refused: %s" % e.reason) from None
        if (manifest.blob_sha256 != hashlib.sha256(blob).digest() or manifest.blob_bytes != blob_n
                or manifest.vectors_sha256 != hashlib.sha256(data[v0:v0 + vec_n]).digest()):
            raise PackageError("the signed manifest does not describe this package's blob and vectors")
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
    return {"meta": meta, "blob": blob, "vectors": vectors, "blob_offset": v0 + vec_n, "envelope": envelope,
            "manifest": manifest}
