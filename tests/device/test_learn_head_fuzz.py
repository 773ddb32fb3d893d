"""Fuzz of the TMLH v1 head readers (docs/fuzzing.md): every truncation of the valid vectors in tests/vectors/head,
the invalid vectors, and seeded mutations of the valid ones (header fields set to edge values, float words set to
NaN/inf bits, bytes flipped, chunks dropped or repeated, bytes appended; most with the CRC32 recomputed so that
they reach the checks behind it). The host codec (tinymlaas.learning.head.decode, then the fit a device asks: kind,
D, K and embedding quantization of its model) and the device reader (tinyml/learn.py read_file, in the real
MicroPython VM, into a head of the seed's shape) must accept and refuse the same bytes; the device must raise only
HeadError and leave its head untouched on a refusal, and what it accepts it must write back byte for byte.
600 cases by default; `--fuzz-long` runs 100,000.

Found by this fuzz (2026-12-03) and fixed: the host's decode() accepted a non-finite weight, bias or mean and a
negative or non-finite learning rate that the device refuses; it checks values as the device does now."""

import json
import random
import struct
import zlib

import numpy as np

from tinymlaas.learning.head import HEADER_BYTES, HeadError, decode
from tinymlaas.paths import VECTORS

HEADS = VECTORS / "head"
MANIFEST = json.loads((HEADS / "manifest.json").read_text())
F32_EDGES = (0x7FC00000, 0xFFC00000, 0x7F800000, 0xFF800000, 0x00000000, 0x80000000, 0x00000001, 0x3F800000,
             0xBF800000, 0x7F7FFFFF)
# (offset, struct format, edge values) of the header fields
FIELDS = ((4, "<B", (0, 1, 2, 255)), (5, "<B", (0, 1, 2, 3, 255)), (6, "<H", (0, 1, 3, 4, 5, 4096, 4097, 65535)),
          (8, "<H", (0, 1, 2, 3, 4, 256, 257, 65535)), (10, "<H", (0, 1, 65535)),
          (12, "<I", (0, 1, 2 ** 31, 2 ** 32 - 1)), (24, "<i", (-129, -128, 0, 127, 2 ** 31 - 1, -2 ** 31)))

DEVICE = """
import sys, tinyml.learn as L
SHAPES = %r
buf = memoryview(bytearray(70000))
with open(sys.argv[1], 'rb') as f:
    while True:
        head = f.read(5)
        if len(head) < 5:
            break
        n = int.from_bytes(head[1:], 'little')
        f.readinto(buf[:n])
        with open(sys.argv[2], 'wb') as g:
            g.write(buf[:n])
        m = SHAPES[head[0]]
        h = L.Head(L.KINDS[m[0]], m[1], m[2], m[3], m[4], m[5])
        h.w[0] = 7.0
        try:
            h.read_file(sys.argv[2])
            print('OK', h.encode() == bytes(buf[:n]))
        except L.HeadError as e:
            print('REJ', h.w[0] == 7.0 and h.samples == 0, e)
        except Exception as e:
            print('CRASH', type(e).__name__, e)
"""


def _seeds():
    out = []
    for name in MANIFEST["valid"]:
        meta = json.loads((HEADS / (name + ".json")).read_text())
        lr = meta["lr"] if meta["kind"] == "softmax" else 0.0
        out.append(((HEADS / (name + ".bin")).read_bytes(),
                    (meta["kind"], meta["D"], meta["K"], lr, meta["scale"], meta["zero_point"])))
    return out


def _fix_crc(b):
    b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))


def mutate(rng, raw):
    b = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(5)
        if kind == 0:  # a header field set to an edge value
            off, fmt, values = rng.choice(FIELDS)
            struct.pack_into(fmt, b, off, rng.choice(values))
        elif kind == 1:  # a float word (lr, scale, a weight, a bias or count) set to NaN / inf / edge bits
            if len(b) >= 24:
                pos = rng.choice([16, 20] + list(range(HEADER_BYTES, len(b) - 4, 4)))
                struct.pack_into("<I", b, min(pos, len(b) - 4), rng.choice(F32_EDGES))
        elif kind == 2:  # a few bytes flipped anywhere
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == 3:  # a chunk dropped or repeated
            a, n = rng.randrange(len(b)), rng.randint(1, 16)
            b = b[:a] + b[a + n:] if rng.random() < 0.5 else b[:a] + b[a:a + n] + b[a:]
        else:  # bytes appended
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.85 and len(b) >= 4:
        _fix_crc(b)
    return bytes(b)


def cases(request, seed):
    """[(seed index, bytes)]: truncations and invalid vectors first, then seeded mutations."""
    count = 100_000 if request.config.getoption("--fuzz-long") else 600
    seeds = _seeds()
    out = [(i, raw[:n]) for i, (raw, _) in enumerate(seeds) for n in range(len(raw))]
    out += [(0, (HEADS / (name + ".bin")).read_bytes()) for name in MANIFEST["invalid"]]
    rng = random.Random(seed)
    while len(out) < count:
        i = rng.randrange(len(seeds))
        out.append((i, mutate(rng, seeds[i][0])))
    return seeds, out


def host_verdict(data, shape):
    """None when the host codec decodes `data` into a head that fits the model of `shape`, else why not."""
    kind, d, k, _lr, scale, zp = shape
    try:
        h = decode(data)
    except HeadError as e:
        return str(e)
    if (h.kind, h.dim, h.classes) != (kind, d, k):
        return "is %s D=%d K=%d" % (h.kind, h.dim, h.classes)
    if (np.float32(h.scale), h.zero_point) != (np.float32(scale), zp):
        return "embedding quantization differs"
    return None


def test_host_and_device_head_readers_agree(request, tmp_path):
    from tinymlaas.devices import unixport
    seeds, all_cases = cases(request, 4115)
    shapes = [shape for _, shape in seeds]
    (tmp_path / "heads.bin").write_bytes(b"".join(bytes([i]) + len(b).to_bytes(4, "little") + b
                                                  for i, b in all_cases))
    out = unixport.run(code=DEVICE % (shapes,), heap="512k", args=[tmp_path / "heads.bin", tmp_path / "h.bin"],
                       timeout=1800).stdout.decode().splitlines()
    assert len(out) == len(all_cases)
    crashes = [ln for ln in out if not ln.startswith(("OK True", "REJ True"))]
    assert not crashes, crashes[:5]
    found, accepted = [], 0
    for (i, data), line in zip(all_cases, out):
        host = host_verdict(data, shapes[i])
        device = None if line.startswith("OK") else line[9:]
        accepted += device is None
        if (host is None) != (device is None):
            found.append((data.hex(), host, device))
    assert not found, (len(found), found[:5])
    assert 0 < accepted < len(all_cases)  # both sides exercised
