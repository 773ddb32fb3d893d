"""TMLH v1: the trainable head a device keeps next to its model and answers on /32770/0/41 (docs/learning.md).

Little-endian, exact length, CRC32 (zlib) of every byte before the last four:

    0  4s  b"TMLH"          12 u32 samples learned
    4  u8  version = 1      16 f32 lr (softmax; 0 for ncm)
    5  u8  kind 1|2         20 f32 embedding scale
    6  u16 D (1..4096)      24 i32 embedding zero point
    8  u16 K (2..256)       28 K*D f32 weights (row per class; ncm: class means)
    10 u16 reserved = 0        K f32 bias (softmax) | K u32 counts (ncm), then u32 CRC32

No socket or LwM2M import: the same bytes go over CoAP, into the shared vectors and into a file.
"""

import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"TMLH"
VERSION = 1
KINDS = {1: "softmax", 2: "ncm"}
KIND_IDS = {v: k for k, v in KINDS.items()}
HEADER = struct.Struct("<4sBBHHHIffi")
HEADER_BYTES = HEADER.size          # 28
MAX_D = 4096
MIN_K, MAX_K = 2, 256


class HeadError(ValueError):
    """A TMLH head that must be refused; `kind` names the check that failed (for the shared vectors)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def total_bytes(d, k):
    return HEADER_BYTES + 4 * k * d + 4 * k + 4


@dataclass
class Head:
    kind: str                       # "softmax" | "ncm"
    weights: np.ndarray             # float32 (K, D): softmax weights or ncm class means
    extra: np.ndarray               # softmax: float32 bias (K,); ncm: uint32 counts (K,)
    samples: int = 0
    lr: float = 0.0
    scale: float = 1.0              # the embedding tensor's quantization (device dequantizes with it)
    zero_point: int = 0

    @property
    def classes(self):
        return self.weights.shape[0]

    @property
    def dim(self):
        return self.weights.shape[1]

    def linear(self):
        """(W, b) float64 of the equivalent linear layer: softmax as is; ncm logit_k = 2 mu_k.x - |mu_k|^2, which
        orders classes exactly as -|x - mu_k|^2 does (the |x|^2 term is common to all)."""
        w = self.weights.astype(np.float64)
        if self.kind == "softmax":
            return w, self.extra.astype(np.float64)
        return 2.0 * w, -np.sum(w * w, axis=1)

    def scores(self, embedding):
        """Float scores (N, K) the device's head gives for float embeddings (N, D): softmax logits, ncm
        -distance^2."""
        x = np.atleast_2d(np.asarray(embedding, np.float64))
        if self.kind == "softmax":
            return x @ self.weights.astype(np.float64).T + self.extra.astype(np.float64)
        diff = x[:, None, :] - self.weights.astype(np.float64)[None, :, :]
        return -np.sum(diff * diff, axis=2)


def encode(head):
    """TMLH bytes of `head`; refuses dimensions a device would refuse."""
    if head.kind not in KIND_IDS:
        raise HeadError("kind", "head kind %r is not softmax or ncm" % (head.kind,))
    k, d = head.weights.shape
    _check_dims(d, k)
    extra_dtype = "<f4" if head.kind == "softmax" else "<u4"
    if head.extra.shape != (k,):
        raise HeadError("dims", "head has %d classes but %d bias/count values" % (k, head.extra.size))
    lr = float(head.lr) if head.kind == "softmax" else 0.0
    _check_values(np.float32(lr), np.float32(head.scale), np.asarray(head.weights, np.float32),
                  np.asarray(head.extra, np.float32) if head.kind == "softmax" else None)
    body = HEADER.pack(MAGIC, VERSION, KIND_IDS[head.kind], d, k, 0, int(head.samples),
                       lr, float(head.scale), int(head.zero_point))
    body += np.ascontiguousarray(head.weights, "<f4").tobytes() + np.ascontiguousarray(head.extra, extra_dtype).tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def decode(data):
    """The Head in TMLH bytes; HeadError (kind: header, magic, version, kind, dims, total, crc, values)
    otherwise. Values as a device reads them (tinyml/learn.py check()): lr finite and >= 0, the embedding scale
    finite and > 0, every weight, mean and bias finite."""
    data = bytes(data)
    if len(data) < HEADER_BYTES + 4:
        raise HeadError("header", "TMLH head of %d bytes is shorter than its %d-byte header and CRC"
                        % (len(data), HEADER_BYTES + 4))
    magic, version, kind_id, d, k, reserved, samples, lr, scale, zp = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise HeadError("magic", "bad TMLH magic %r (expected %r)" % (magic, MAGIC))
    if version != VERSION:
        raise HeadError("version", "TMLH version %d is not supported (expected %d)" % (version, VERSION))
    if kind_id not in KINDS:
        raise HeadError("kind", "TMLH head kind %d is not 1 (softmax) or 2 (ncm)" % kind_id)
    _check_dims(d, k)
    if reserved != 0:
        raise HeadError("header", "TMLH reserved field is %d, not 0" % reserved)
    want = total_bytes(d, k)
    if len(data) != want:
        raise HeadError("total", "TMLH head is %d bytes; D=%d, K=%d make its total %d" % (len(data), d, k, want))
    (crc,) = struct.unpack_from("<I", data, want - 4)
    if zlib.crc32(data[:want - 4]) != crc:
        raise HeadError("crc", "TMLH CRC32 mismatch (stored %08x, computed %08x)" % (crc, zlib.crc32(data[:want - 4])))
    off = HEADER_BYTES
    weights = np.frombuffer(data, "<f4", k * d, off).reshape(k, d).astype(np.float32)
    off += 4 * k * d
    kind = KINDS[kind_id]
    extra = np.frombuffer(data, "<f4" if kind == "softmax" else "<u4", k, off)
    extra = extra.astype(np.float32 if kind == "softmax" else np.uint32)
    _check_values(lr, scale, weights, extra if kind == "softmax" else None)
    return Head(kind, weights, extra, samples, lr, scale, zp)


def _check_values(lr, scale, weights, bias):
    if not (np.isfinite(lr) and lr >= 0 and np.isfinite(scale) and scale > 0):
        raise HeadError("values", "TMLH lr %r / embedding scale %r: lr must be finite and >= 0, the scale finite "
                        "and > 0" % (lr, scale))
    if not np.all(np.isfinite(weights)) or (bias is not None and not np.all(np.isfinite(bias))):
        raise HeadError("values", "TMLH head holds a weight or bias that is not finite")


def _check_dims(d, k):
    if not 1 <= d <= MAX_D:
        raise HeadError("dims", "TMLH embedding length D=%d is outside 1..%d" % (d, MAX_D))
    if not MIN_K <= k <= MAX_K:
        raise HeadError("dims", "TMLH class count K=%d is outside %d..%d" % (k, MIN_K, MAX_K))
