"""Differential fuzz of the device's content codecs (lwm2m_client/lwm2m/cbor.py, senml.py) in the real MicroPython
VM, against CPython references: test_fuzz_codec reaches them only through whole mutated datagrams and checks only
that nothing crashes.

- CBOR: seeded mutations of SenML-CBOR packs (bytes flipped or set to CBOR heads, inserted, dropped, cut). What the
  device decodes, cbor2 must decode to the same value (tags read as the item they tag, as the device does; floats
  compared bit for bit); what cbor2 decodes the device may refuse only for its documented subset (definite
  lengths, nesting ≤ 4, integer or text map keys, no other simple values).
- SenML-JSON: mutations of SenML-JSON packs; what the device decodes must be strict JSON to CPython (no NaN,
  Infinity, number beyond a double such as 1e999, trailing bytes, text UTF-8) and give the same (name, value) records; it may refuse valid JSON only for
  a surrogate \\u escape (MicroPython's json.loads would keep a pair as two surrogates).
- Encoders (what a Send or a SenML read carries): random records (int64 edges, floats, unicode names and strings
  with quotes, backslashes and control characters, opaque bytes, booleans, and inf/-inf/NaN in 5% of the values)
  through senml.encode_cbor and encode_json; cbor2 and CPython's json must read the same records back (JSON floats
  to 1 ulp: MicroPython prints at most 16 significant digits). CBOR carries non-finite floats; JSON has none, so
  encode_json must refuse a pack holding one (naming it), never write the invalid token inf/nan.
Any exception other than the codecs' ValueErrors (or MemoryError under -X heapsize) fails. 3,000 inputs by
default; `--fuzz-long` runs 100,000."""

import base64
import io
import json
import math
import random
import struct

import cbor2

from tinymlaas.devices import unixport

DEVICE = """
import sys, binascii
from lwm2m import cbor, senml
def h(b):
    return binascii.hexlify(b).decode()
with open(sys.argv[1], 'rb') as f:
    while True:
        head = f.read(5)
        if len(head) < 5:
            break
        data = f.read(int.from_bytes(head[1:], 'little'))
        kind = head[0]
        try:
            if kind == 0:
                print('OK', h(cbor.encode(cbor.decode(data))))
            elif kind < 3:
                recs = (senml.decode_cbor if kind == 1 else senml.decode_json)(data)
                print('OK', h(cbor.encode([[n, v] for n, v in recs])))
            else:
                base, items = cbor.decode(data)
                c = h(senml.encode_cbor(base, items))
                try:
                    print('ENC', c, h(senml.encode_json(base, items)))
                except ValueError as e:
                    print('ENC', c, 'REJ', e)
        except ValueError as e:
            print('REJ', e)
        except MemoryError:
            print('MEM')
        except Exception as e:
            print('CRASH', type(e).__name__, e)
"""
# cbor2 with every tag read as the item it tags (the device ignores tags)
PLAIN = {t: (lambda value, immutable: value) for t in range(1 << 16)}
DEVICE_SUBSET = ("unsupported additional info", "nesting deeper than", "map key must be", "unsupported simple value")
HEADS = (0x00, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x20, 0x38, 0x3B, 0x40, 0x5F, 0x60, 0x7F, 0x80, 0x9F, 0xA0,
         0xBF, 0xC0, 0xC2, 0xD8, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFF)
JSON_BYTES = b'{}[]",:0123456789-+.eE\\/ntfuabrlsv\x00\xff'
BN, N, V, VS, VB, VD = -2, 0, 2, 3, 4, 8


REFUSED = object()  # what a reference gives for input it refuses (None is CBOR's and JSON's null)


def _cbor_reference(data):
    """cbor2's reading of `data` as one whole item (cbor2.loads alone ignores bytes after the item), or REFUSED."""
    f = io.BytesIO(data)
    try:
        v = cbor2.CBORDecoder(f, semantic_decoders=PLAIN, tag_hook=lambda tag, immutable: tag.value).decode()
    except Exception:  # noqa: BLE001 -- cbor2 refuses with several types
        return REFUSED
    return v if f.tell() == len(data) else REFUSED


def _records(rng):
    recs = [{BN: "/32770/0/", N: "0", V: 1.5}, {N: "1", V: -(2 ** 63)}, {N: "2", VS: "caf\u00e9 \"q\" \\"},
            {N: "3", VB: True}, {N: "4", VD: bytes(range(7))}, {N: "5", "vlo": "3:0"}, {N: "6", V: 2 ** 64 - 1}]
    rng.shuffle(recs)
    return recs[:rng.randint(1, len(recs))]


def seeds(rng):
    packs = [_records(rng) for _ in range(8)]
    cbor_seeds = [cbor2.dumps(p) for p in packs] + [cbor2.dumps(p, canonical=True) for p in packs]
    cbor_seeds += [bytes.fromhex(h) for h in ("81a2216562617365006130f93e00", "82c24101d8184100", "9f01ff")]
    json_seeds = []
    for p in packs:
        names = {BN: "bn", N: "n", V: "v", VS: "vs", VB: "vb", VD: "vd", "vlo": "vlo"}
        js = [{names[k]: (base64.urlsafe_b64encode(v).rstrip(b"=").decode() if k == VD else v)
               for k, v in r.items()} for r in p]
        json_seeds.append(json.dumps(js).encode())
    return cbor_seeds, json_seeds


def mutate(rng, data, alphabet=None):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op, i = rng.randrange(6), rng.randrange(len(b) + 1)
        pick = (lambda: rng.choice(alphabet)) if alphabet else (lambda: rng.choice(HEADS))
        if op == 0 and b:
            b[i % len(b)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[i % len(b)] = pick()
        elif op == 2:
            b[i:i] = bytes([pick()])
        elif op == 3 and b:
            del b[i % len(b)]
        elif op == 4:
            b = b[:i]
        else:
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[j:j + rng.randint(1, 8)]
    return bytes(b)


def _canon(v):
    """A value both sides compare with ==: floats by their bits (every NaN equal, -0.0 is not 0.0); CBOR's
    undefined is null, as the device reads it."""
    if v is cbor2.undefined:
        return None
    if isinstance(v, float):
        return ("f", b"nan" if v != v else struct.pack(">d", v))  # the device keeps no NaN payload
    if isinstance(v, list):
        return [_canon(x) for x in v]
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    return v


def _senml_reference(recs):
    """The (name, value) records the device's senml._records gives for a decoded JSON pack, or REFUSED."""
    if not isinstance(recs, list):
        return REFUSED
    out, base = [], ""
    for r in recs:
        if not isinstance(r, dict) or not isinstance(r.get("bn", base), str) or not isinstance(r.get("n", ""), str):
            return REFUSED
        base = r.get("bn", base)
        value = next((r[k] for k in ("v", "vs", "vb", "vlo", "vd") if k in r), None)
        if "vd" in r and not any(k in r for k in ("v", "vs", "vb", "vlo")) and isinstance(value, str):
            if "=" in value:  # RFC 8428: base64url with the padding left out
                return REFUSED
            try:
                value = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4),
                                         validate=True)
            except ValueError:
                return REFUSED
        out.append([base + r.get("n", ""), value])
    return out


def _strict_json(data):
    def refuse(name):
        raise ValueError(name)

    def finite(text):  # JSON has no infinity: a number beyond a double (1e999) is refused, as NaN and Infinity
        if not math.isfinite(float(text)):
            raise ValueError(text)
        return float(text) if any(c in text for c in ".eE") else int(text)
    v = json.loads(data.decode("utf-8"), parse_constant=refuse, parse_float=finite, parse_int=finite)
    json.dumps(v, ensure_ascii=False).encode("utf-8")  # a lone surrogate escape is no text: UnicodeEncodeError
    return v


def _encoder_items(rng):
    pool = [0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2 ** 32, 2 ** 63 - 1, -(2 ** 63), 0.0, -0.0, 0.1, 1e300,
            -1e-300, 5e-324, 1.7976931348623157e308, 3.141592653589793, True, False, "", "\u00e9\u4e2d\U0001F600",
            "q\"b\\s/\x01\x1f\x7f", b"", b"\x00\xff" * 5]
    items = []
    for k in range(rng.randint(1, 6)):
        v = rng.choice(pool) if rng.random() < 0.7 else rng.choice(
            [rng.uniform(-1e6, 1e6), rng.randint(-(2 ** 63), 2 ** 63 - 1), rng.randbytes(rng.randint(0, 20)),
             struct.unpack("<d", rng.randbytes(8))[0]])
        if rng.random() < 0.05:
            v = rng.choice([math.inf, -math.inf, math.nan])
        items.append([rng.choice(["0", "1/2", "\u00e9", "a\"b", ""]) + str(k), v])
    return ["/32770/0/", items]


def _check_encoding(items, cbor_hex, json_hex, *refusal):
    recs = cbor2.loads(bytes.fromhex(cbor_hex))
    got = [[r[N], next(r[k] for k in (V, VS, VB, VD) if k in r)] for r in recs]
    want = [[n, bytes(v) if isinstance(v, bytes) else v] for n, v in items[1]]
    assert recs[0][BN] == items[0] and _canon(got) == _canon(want), (items, recs)  # CBOR carries inf and NaN
    non_finite = [n for n, v in items[1] if isinstance(v, float) and not math.isfinite(v)]
    if json_hex == "REJ":  # SenML-JSON has no non-finite numbers: refused, naming the first one
        assert non_finite and "non-finite" in " ".join(refusal) and non_finite[0] in " ".join(refusal), (items, refusal)
        return
    assert not non_finite, (items, json_hex)
    js = _strict_json(bytes.fromhex(json_hex))
    got = [[r["n"], r["vd"] if "vd" in r else next(r[k] for k in ("v", "vs", "vb") if k in r)] for r in js]
    want = [[n, base64.urlsafe_b64encode(v).rstrip(b"=").decode() if isinstance(v, bytes) else v]
            for n, v in items[1]]
    # MicroPython prints a double with at most 16 significant digits, so a JSON float may be 1 ulp off (SenML-CBOR
    # carries the bits): floats compare to 2^-52 here, all else exactly
    assert js[0]["bn"] == items[0] and len(got) == len(want), (items, js)
    for (gn, gv), (wn, wv) in zip(got, want):
        if isinstance(wv, float) and isinstance(gv, (int, float)) and not isinstance(gv, bool):
            assert gn == wn and math.isclose(gv, wv, rel_tol=2 ** -52, abs_tol=0.0) and (
                math.copysign(1, gv) == math.copysign(1, wv)), (gn, gv, wv)
        else:
            assert _canon([gn, gv]) == _canon([wn, wv]), (items, js)


def test_device_codecs_agree_with_cpython(request, tmp_path):
    count = 100_000 if request.config.getoption("--fuzz-long") else 3_000
    rng = random.Random(8428)
    cbor_seeds, json_seeds = seeds(rng)
    cases = []
    for k in range(count):
        kind = k % 4
        if kind < 2:
            cases.append((kind, mutate(rng, rng.choice(cbor_seeds))))
        elif kind == 2:
            cases.append((2, mutate(rng, rng.choice(json_seeds), JSON_BYTES)))
        else:
            items = _encoder_items(rng)
            cases.append((3, cbor2.dumps(items), items))
    (tmp_path / "in.bin").write_bytes(b"".join(bytes([c[0]]) + len(c[1]).to_bytes(4, "little") + c[1]
                                               for c in cases))
    out = unixport.run(code=DEVICE, heap="512k", args=[tmp_path / "in.bin"], timeout=1800).stdout.decode()
    lines = out.splitlines()
    assert len(lines) == len(cases)
    crashes = [ln for ln in lines if ln.startswith("CRASH")]
    assert not crashes, crashes[:5]
    wrong, stats = [], {"accepted": 0, "refused": 0}
    for case, line in zip(cases, lines):
        kind, data = case[0], case[1]
        verdict, _, rest = line.partition(" ")
        if kind == 3:
            assert verdict == "ENC", (case, line)
            _check_encoding(case[2], *rest.split(" "))
            continue
        stats["accepted" if verdict == "OK" else "refused"] += 1
        if kind == 2:
            try:
                want = _senml_reference(_strict_json(data))
            except ValueError:  # not strict JSON (UnicodeDecodeError is one)
                want = REFUSED
        else:
            want = _cbor_reference(data)
        if verdict == "OK":  # a SenML-CBOR pack (kind 1) must be CBOR; its records are not compared here
            if want is REFUSED or (kind != 1 and _canon(cbor2.loads(bytes.fromhex(rest))) != _canon(want)):
                wrong.append((kind, data.hex(), line[:120], repr(want)[:120]))
        elif want is not REFUSED and (kind == 0 and not any(r in rest for r in DEVICE_SUBSET)
                                   or kind == 2 and "JSON" in rest and "surrogate" not in rest):  # refused valid
            wrong.append((kind, data.hex(), line[:120], repr(want)[:120]))
    assert not wrong, (len(wrong), wrong[:8])
    assert stats["accepted"] > count // 20 and stats["refused"] > count // 20, stats
