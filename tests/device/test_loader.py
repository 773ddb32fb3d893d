"""Blob loader: the REPL API, and validation -- every check of docs/blob-format.md fires with a clear BlobError
before anything executes, every truncation is rejected, and random corruption never crashes or hangs."""

import struct

import pytest

import zoo
from blobkit import BlobBuilder, INT8, INT32, CONV_2D, MAX_POOL_2D, rehash


def small_net_blob(seed=1):
    return dict(zoo.all_cases(seed))["small_net"].build()


# ----- API -------------------------------------------------------------------------------------------------------

def test_repl_api(tmp_path, mpy_script):
    path = tmp_path / "net.blob"
    path.write_bytes(small_net_blob())
    out = mpy_script("""
import tinyml, array
m = tinyml.load(%r)
print('IN', m.inputs)
print('OUT', m.outputs)
print('ARENA', m.arena_bytes)
print('OPS', m.ops)
m.inspect()
x = bytes(range(96))
a = m.predict(x)
print('TYPE', type(a).__name__, len(a), len(bytes(a)))
b = m.predict(bytearray(x))
c = m.predict(array.array('b', [v - 256 if v > 127 else v for v in x]))
d = m.predict([v - 256 if v > 127 else v for v in x])
print('SAME', list(a) == list(b) == list(c) == list(d), m.last_us > 0)
mem = tinyml.load(open(%r, 'rb').read())
print('MEM', list(mem.predict(x)) == list(a))
x2 = bytes(reversed(x))
buf = bytearray(1) + open(%r, 'rb').read()
try:
    tinyml.load(memoryview(buf)[1:])
except tinyml.BlobError as e:
    print('ALIGN', e)
print('SELFTEST', m.self_test([(x, list(a)), (list(x2), m.predict(x2))]))
try:
    m.self_test([(x, [0, 0, 0])])
except tinyml.SelfTestError as e:
    print('MISMATCH', e)
try:
    m.predict(b'short')
except ValueError as e:
    print('BADINPUT', e)
""" % (str(path), str(path), str(path))).stdout
    assert "ALIGN in-RAM blob starts at an address that is not 4-byte aligned" in out
    assert "IN [{'shape': (1, 8, 6, 2), 'dtype': 'int8'" in out.replace('"', "'") or "'shape': (1, 8, 6, 2)" in out
    assert "'zero_point': -3" in out
    assert "OUT [" in out and "(1, 3)" in out and "0.00390625" in out
    assert "OPS ['CONV_2D', 'DEPTHWISE_CONV_2D', 'AVERAGE_POOL_2D', 'FULLY_CONNECTED', 'SOFTMAX']" in out
    assert "tinyml model small_net" in out and "weights streamed from file" in out and "100 MACs" in out
    assert "TYPE array 3 3" in out
    assert "SAME True True" in out
    assert "MEM True" in out
    assert "SELFTEST 2" in out
    assert "MISMATCH self-test vector 0 output 0" in out
    assert "BADINPUT input 0 takes 96 bytes, got 5" in out


def test_float_io_predict_takes_and_returns_floats(tmp_path, mpy_script):
    b = dict(zoo.all_cases(1))["quant_io"]
    path = tmp_path / "q.blob"
    path.write_bytes(b.build())
    out = mpy_script("""
import tinyml
m = tinyml.load(%r)
y, c = m.predict([0.0, 0.05, -0.05, 1.0, -1.0, 0.124, 0.126, 100.0, -100.0, 0.025, -0.025, 3.3, -6.4])
print(len(bytes(y)) // len(y), [round(v, 4) for v in y])
print(list(c))
""" % str(path)).stdout.splitlines()
    # q = clamp(round_half_away(x / 0.05) + 3); LUT adds 7 (clamped); y = 0.05 * (q' - 3)
    qs = [3, 4, 2, 23, -17, 5, 6, 127, -128, 4, 2, 69, -125]
    lut = [min(127, q + 7) for q in qs]
    assert out[0] == "4 " + str([round(0.05 * (v - 3), 4) for v in lut])
    assert out[1] == str(lut)


# ----- targeted validation ---------------------------------------------------------------------------------------

def conv_builder():
    b = BlobBuilder()
    x = b.arena(INT8, (1, 4, 4, 2))
    w = b.const_tensor(INT8, (3, 3, 3, 2), [1] * 54)
    bias = b.const_tensor(INT32, (3,), [0, 1, 2])
    m = b.const_tensor(INT32, (3,), [1 << 30] * 3)
    s = b.const_tensor(INT32, (3,), [-3] * 3)
    y = b.arena(INT8, (1, 4, 4, 3))
    b.op(CONV_2D, [x, w, bias, m, s], y, [1, 1, 1, 1, 1, 1, 0, 0, -128, 127])
    b.graph([x], [y])
    return b


def _edit(fn):
    b = conv_builder()
    fn(b)
    return b.build()


def _patch(blob, offset, fmt, value):
    b = bytearray(blob)
    struct.pack_into(fmt, b, offset, value)
    return rehash(bytes(b))


def _section(blob, kind):
    nsec = struct.unpack_from("<H", blob, 14)[0]
    for i in range(nsec):
        k, off, size, count = struct.unpack_from("<4I", blob, 64 + 16 * i)
        if k == kind:
            return 64 + 16 * i, off, size, count
    raise KeyError(kind)


def _tensor_field(blob, index, field_off, fmt, value):
    _, off, _, _ = _section(blob, 1)
    return _patch(blob, off + 36 * index + field_off, fmt, value)


GOOD = conv_builder().build()

CASES = [
    ("magic", b"XXXX" + GOOD[4:], "not a tinymlaas blob"),
    ("version", _patch(GOOD, 4, "<H", 2), "unsupported blob format version 2 (this runtime reads version 1)"),
    ("abi", _patch(GOOD, 12, "<H", 7), "unsupported kernel ABI 7 (this runtime implements ABI 1)"),
    ("total_bytes", GOOD + b"\0", "total_bytes says"),
    ("sha", GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "SHA-256 mismatch"),
    ("flags", _patch(GOOD, 8, "<I", 2), "unknown header flags"),
    ("float_io_flag", _patch(GOOD, 8, "<I", 1), "FLOAT_IO flag"),
    ("section_count", _patch(GOOD, 14, "<H", 17), "section_count 17"),
    ("section_bounds", _patch(GOOD, _section(GOOD, 2)[0] + 8, "<I", 1 << 20), "lies outside"),
    ("section_overlap", _patch(GOOD, _section(GOOD, 2)[0] + 4, "<I", _section(GOOD, 1)[1]), "overlaps"),
    ("unknown_section", _patch(GOOD, _section(GOOD, 5 if False else 4)[0], "<I", 9), "unknown section kind 9"),
    ("missing_graph", _patch(GOOD, _section(GOOD, 4)[0], "<I", 0x100), "required section GRAPH"),
    ("const_align", _patch(_patch(GOOD, _section(GOOD, 3)[0] + 4, "<I", _section(GOOD, 3)[1] + 4),
                           _section(GOOD, 3)[0] + 8, "<I", _section(GOOD, 3)[2] - 4), "not a multiple of 16"),
    ("dtype", _tensor_field(GOOD, 0, 0, "<B", 9), "tensor 0: unknown dtype 9"),
    ("rank", _tensor_field(GOOD, 0, 1, "<B", 5), "rank 5"),
    ("dim0", _tensor_field(GOOD, 0, 8, "<I", 0), "dim 1 is 0"),
    ("bytes", _tensor_field(GOOD, 0, 24, "<I", 33), "bytes 33"),
    ("arena_end", _tensor_field(GOOD, 5, 20, "<I", 1000), "ends outside the"),
    ("const_end", _tensor_field(GOOD, 1, 20, "<I", 4000), "ends outside CONST"),
    ("int32_align", _tensor_field(GOOD, 2, 20, "<I", 2), "not 4-aligned"),
    ("graph_index", _patch(GOOD, _section(GOOD, 4)[1] + 4, "<H", 99), "GRAPH: tensor index 99"),
    ("graph_const", _patch(GOOD, _section(GOOD, 4)[1] + 4, "<H", 1), "not an arena tensor"),
    ("opcode", _patch(GOOD, _section(GOOD, 2)[1], "<B", 77), "unknown opcode 77"),
    ("n_params", _patch(GOOD, _section(GOOD, 2)[1] + 3, "<B", 9), "has 5 inputs, 1 outputs, 9 params"),
    ("op_index", _patch(GOOD, _section(GOOD, 2)[1] + 4, "<H", 300), "tensor index 300 out of range"),
    ("max_op_params", _patch(GOOD, 56, "<I", 11), "max_op_params 11"),
    ("op_count", _patch(GOOD, _section(GOOD, 2)[0] + 12, "<I", 2), "record header runs past"),
    ("stride", _patch(GOOD, _section(GOOD, 2)[1] + 16, "<i", 0), "stride_h 0"),
    ("shift_range", None, "shift 31 outside"),
    ("mult_range", None, "multiplier 5 outside"),
    ("overlap", _edit(lambda b: b.tensors[5].__setitem__(3, 8)), "overlaps the output"),
    ("filter_ci", _edit(lambda b: b.tensors[1].__setitem__(1, (3, 3, 3, 1))), "filter Ci 1 != input C 2"),
    ("out_channels", _edit(lambda b: b.tensors[5].__setitem__(1, (1, 4, 4, 2))), "output shape"),
    ("in_off", _patch(GOOD, _section(GOOD, 2)[1] + 16 + 24, "<i", 300), "in_off 300"),
    ("act_order", _patch(_patch(GOOD, _section(GOOD, 2)[1] + 16 + 32, "<i", 120), _section(GOOD, 2)[1] + 16 + 36,
                         "<i", 100), "act_max 100 outside [120, 127]"),
]


def _with_consts(shift=None, mult=None):
    b = conv_builder()
    if shift is not None:
        b.const[96:108] = struct.pack("<3i", shift, shift, shift)  # w at 0, bias 64, mult 80, shift 96
    if mult is not None:
        b.const[80:92] = struct.pack("<3i", mult, mult, mult)
    return b.build()


def test_targeted_corruptions_name_the_problem(mpy_script):
    cases = []
    for name, blob, fragment in CASES:
        if name == "shift_range":
            blob = _with_consts(shift=31)
        elif name == "mult_range":
            blob = _with_consts(mult=5)
        cases.append((name, blob, fragment))
    out = mpy_script("""
import tinyml
cases = %r
for name, blob, frag in cases:
    try:
        tinyml.load(blob)
        print(name, 'LOADED')
    except tinyml.BlobError as e:
        print(name, 'OK' if frag in str(e) else 'WRONG: ' + str(e))
print('good', len(tinyml.load(%r).ops))
""" % (cases, GOOD)).stdout
    assert "good 1" in out
    bad = [line for line in out.splitlines() if not line.endswith(" OK") and not line.startswith("good")]
    assert not bad, bad


def test_optional_extension_section_is_skipped(mpy_script):
    b = conv_builder()
    blob = b.build(extra_sections=[(0x1234, b"future data", 0)])
    assert "ok 1" in mpy_script("import tinyml\nprint('ok', len(tinyml.load(%r).ops))" % blob).stdout


def test_pool_window_entirely_in_padding_is_rejected(mpy_script):
    b = BlobBuilder()
    x = b.arena(INT8, (1, 4, 4, 1))
    y = b.arena(INT8, (1, 4, 4, 1))
    b.op(MAX_POOL_2D, [x], y, [1, 1, 2, 2, 2, 0, -128, 127])  # pad_top 2 >= filter 2: row 0 sees only padding
    b.graph([x], [y])
    out = mpy_script("""
import tinyml
try:
    tinyml.load(%r)
except tinyml.BlobError as e:
    print(e)
""" % b.build()).stdout
    assert "window lies entirely in the padding" in out


# ----- truncation and fuzzing ------------------------------------------------------------------------------------

def test_every_truncation_is_rejected_in_memory_and_from_file(tmp_path, mpy_script):
    blob = small_net_blob()
    path = tmp_path / "t.blob"
    out = mpy_script("""
import tinyml
blob = %r
n = 0
for k in range(len(blob)):
    # every prefix from RAM; from a file every prefix of the header and tables, then every 7th
    for mode in (("mem", "file") if k < 400 or k %% 7 == 0 else ("mem",)):
        try:
            if mode == 'mem':
                tinyml.load(blob[:k])
            else:
                f = open(%r, 'wb'); f.write(blob[:k]); f.close()
                tinyml.load(%r)
            print('LOADED', k, mode)
        except tinyml.BlobError:
            n += 1
print('rejected', n)
""" % (blob, str(path), str(path)), heap="256k").stdout
    expected = len(blob) + len([k for k in range(len(blob)) if k < 400 or k % 7 == 0])
    assert "rejected %d" % expected in out, out[-500:]


FUZZ = """
import tinyml, random, hashlib, sys
blobs = %r
count = %d
rehashed = %r
random.seed(%d)
path = %r
INTERESTING = (0, 1, 2, 3, 4, 15, 16, 17, 36, 64, 127, 128, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF)
stats = {}
for bi, blob in enumerate(blobs):
    x_probe = None
    for it in range(count):
        b = bytearray(blob)
        for _ in range(1 + random.getrandbits(2)):
            kind = random.getrandbits(2)
            pos = random.getrandbits(20) %% len(b)
            if kind == 0:
                b[pos] = random.getrandbits(8)
            elif kind == 1:
                b[pos] ^= 1 << random.getrandbits(3)
            else:
                pos &= ~3
                v = INTERESTING[random.getrandbits(5) %% len(INTERESTING)]
                if pos + 4 <= len(b):
                    b[pos:pos + 4] = v.to_bytes(4, 'little')
        if rehashed and len(b) >= 64:
            b[24:56] = hashlib.sha256(b[64:]).digest()
        try:
            if it %% 8 == 7:  # every 8th through the streaming loader (file source, bounded weight buffer)
                f = open(path, 'wb'); f.write(b); f.close()
                m = tinyml.load(path, wbuf=64)
            else:
                m = tinyml.load(bytes(b))
        except tinyml.BlobError as e:
            stats['BlobError'] = stats.get('BlobError', 0) + 1
            continue
        except MemoryError:
            stats['MemoryError'] = stats.get('MemoryError', 0) + 1
            continue
        # It validated: it must also run without touching memory outside its buffers.
        try:
            for i in range(len(m.inputs)):
                buf = m.input_buffer(i)
                for k in range(len(buf)):
                    buf[k] = (k * 37) & 0xFF
            m.invoke()
            stats['ran'] = stats.get('ran', 0) + 1
        except MemoryError:
            stats['MemoryError'] = stats.get('MemoryError', 0) + 1
        m.close()
print('STATS', sorted(stats.items()))
"""


def _fuzz_blobs():
    cases = dict(zoo.all_cases(4))
    return [cases[k].build() for k in ("small_net", "conv_dilated_nonsquare", "add_broadcast", "mean_hw",
                                       "concat_h", "quant_io", "pad", "fc_rows_per_channel")]


@pytest.mark.parametrize("rehashed", [False, True], ids=["hash-checked", "rehashed"])
def test_random_mutations_never_crash(request, mpy_script, rehashed, tmp_path):
    """>= 1000 seeded mutations per blob, every 8th loaded from a file with weights streamed. 'rehashed'
    recomputes the SHA-256 after mutating, so the structural checks behind the hash are what must catch them (or
    the blob is still valid and must run safely)."""
    count = 10000 if request.config.getoption("--fuzz-long") else 1000
    blobs = _fuzz_blobs()
    proc = mpy_script(FUZZ % (blobs, count, rehashed, 1234 + rehashed, str(tmp_path / "fuzz.blob")), heap="512k",
                      timeout=1200)
    line = [l for l in proc.stdout.splitlines() if l.startswith("STATS")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    stats = dict(eval(line[0][6:]))
    assert sum(stats.values()) == count * len(blobs)
    if not rehashed:
        assert stats.get("BlobError", 0) >= count * len(blobs) * 0.99  # all but the rare no-op mutation
