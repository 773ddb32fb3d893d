"""Build the shared TMLH head vectors (tests/vectors/head/) both head codecs are tested against: the service's
(host/tinymlaas/learning/head.py) and the device's (LEARN-DEV's, in the MicroPython VM).

    PYTHONPATH=host python tests/vectors/generate_heads.py

Each vector is NAME.bin (the bytes) + NAME.json. A valid head's JSON holds every decoded field:

    {"valid": true, "kind": "softmax"|"ncm", "D", "K", "samples", "lr", "scale", "zero_point",
     "weights": [[K rows of D]], "bias": [K] (softmax) | "counts": [K] (ncm),
     "probe": {"x": [D floats], "scores": [K], "top": k},          # the head's scores for one embedding
     "step": {"x": [D], "label": L, "weights": [[..]], "bias"|"counts"|"means": ...}}   # after one update

An invalid one's JSON: {"valid": false, "error": kind, "mentions": [strings the error must contain],
"derived_from": NAME}. All values are dyadic, so decoded fields and probe scores are exact in binary32 and in
double; the step's values are within 1e-5 (softmax's exp). manifest.json lists the vectors.
"""

import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from tinymlaas.learning import head as H

HERE = Path(__file__).resolve().parent / "head"


def softmax_head():
    w = np.array([[0.5, -0.25, 1.0, 0.0], [-1.0, 0.75, 0.125, 2.0], [0.0, 0.5, -0.5, -1.5]], np.float32)
    return H.Head("softmax", w, np.array([0.25, -0.5, 0.0], np.float32), samples=12, lr=0.0625, scale=0.03125,
                  zero_point=-128)


def ncm_head():
    mu = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, -1.0], [-0.5, -0.5, 0.25], [3.0, 1.0, 0.0]], np.float32)
    return H.Head("ncm", mu, np.array([3, 1, 7, 2], np.uint32), samples=13, scale=0.0625, zero_point=5)


def sgd_step(head, x, label):
    """One update as LEARN-SPEC.md states it (softmax: W -= lr (p - onehot) x^T, b -= lr (p - onehot); ncm: the
    label's running mean and count)."""
    x = np.asarray(x, np.float64)
    if head.kind == "softmax":
        z = head.scores(x)[0]
        p = np.exp(z - z.max())
        p /= p.sum()
        g = p - np.eye(head.classes)[label]
        return {"weights": (head.weights - head.lr * np.outer(g, x)).tolist(),
                "bias": (head.extra - head.lr * g).tolist()}
    counts = head.extra.astype(np.int64).copy()
    counts[label] += 1
    means = head.weights.astype(np.float64).copy()
    means[label] += (x - means[label]) / counts[label]
    return {"weights": means.tolist(), "counts": counts.tolist()}


def describe(head, x, label):
    d = {"valid": True, "kind": head.kind, "D": head.dim, "K": head.classes, "samples": head.samples,
         "lr": head.lr, "scale": head.scale, "zero_point": head.zero_point, "weights": head.weights.tolist()}
    d["bias" if head.kind == "softmax" else "counts"] = head.extra.tolist()
    scores = head.scores(np.array(x))[0]
    d["probe"] = {"x": x, "scores": scores.tolist(), "top": int(np.argmax(scores))}
    d["step"] = dict(x=x, label=label, **sgd_step(head, x, label))
    return d


def recrc(b):
    b = bytearray(b)
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])))
    return bytes(b)


def invalid(base_name, data):
    """(name, bytes, error kind, mentions) for each broken head derived from `data`."""
    flipped = bytearray(data)
    flipped[H.HEADER_BYTES + 1] ^= 0x10            # a weight byte: only the CRC can tell
    bad_kind = bytearray(data)
    bad_kind[5] = 3
    grown = bytearray(data)
    struct.pack_into("<H", grown, 8, 4)            # K 3 -> 4 with the bytes of K=3: the total no longer matches
    big_d = bytearray(data)
    struct.pack_into("<H", big_d, 6, 5000)
    nan_weight = bytearray(data)
    struct.pack_into("<I", nan_weight, H.HEADER_BYTES + 4, 0x7FC00000)   # the second weight: a quiet NaN
    negative_lr = bytearray(data)
    struct.pack_into("<f", negative_lr, 16, -0.5)
    return [
        (base_name + "_truncated", data[:-9], "total", ["total"]),
        (base_name + "_short_header", data[:20], "header", ["header"]),
        (base_name + "_bad_crc", bytes(flipped), "crc", ["CRC"]),
        (base_name + "_bad_kind", recrc(bad_kind), "kind", ["kind", "3"]),
        (base_name + "_wrong_total", recrc(grown), "total", ["total"]),
        (base_name + "_extra_byte", data + b"\0", "total", ["total"]),
        (base_name + "_bad_magic", b"TMLX" + data[4:], "magic", ["magic"]),
        (base_name + "_bad_version", recrc(data[:4] + b"\x02" + data[5:]), "version", ["version"]),
        (base_name + "_d_too_big", recrc(big_d), "dims", ["D=5000"]),
        (base_name + "_nan_weight", recrc(nan_weight), "values", ["not finite"]),
        (base_name + "_negative_lr", recrc(negative_lr), "values", ["lr"]),
    ]


def main():
    HERE.mkdir(exist_ok=True)
    manifest = {"format": "TMLH", "version": H.VERSION, "valid": [], "invalid": []}
    cases = [("softmax_3x4", softmax_head(), [1.0, 0.5, -0.25, 0.125], 2),
             ("ncm_4x3", ncm_head(), [0.5, 1.5, -0.5], 1)]
    for name, head, x, label in cases:
        data = H.encode(head)
        assert len(data) == H.total_bytes(head.dim, head.classes)
        (HERE / (name + ".bin")).write_bytes(data)
        (HERE / (name + ".json")).write_text(json.dumps(describe(head, x, label), indent=1) + "\n")
        manifest["valid"].append(name)
        print("%-28s %4d B  %s D=%d K=%d" % (name, len(data), head.kind, head.dim, head.classes))
    base = H.encode(softmax_head())
    for name, data, kind, mentions in invalid("softmax_3x4", base):
        try:
            H.decode(data)
            raise AssertionError(name + " decoded")
        except H.HeadError as e:
            assert e.kind == kind and all(m in str(e) for m in mentions), (name, e.kind, str(e))
        (HERE / (name + ".bin")).write_bytes(data)
        (HERE / (name + ".json")).write_text(json.dumps({"valid": False, "error": kind, "mentions": mentions,
                                                         "derived_from": "softmax_3x4"}, indent=1) + "\n")
        manifest["invalid"].append(name)
        print("%-28s %4d B  refused: %s" % (name, len(data), kind))
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
