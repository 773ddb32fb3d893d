"""The C runtime on the host: bit-exact with TensorFlow Lite Micro, and a loader that refuses every malformed blob
(checked under AddressSanitizer + UndefinedBehaviorSanitizer)."""

import struct
import subprocess

import numpy as np
import pytest

from tinymlaas.devices.cruntime import CRuntime, LoadError, Model
from tinymlaas.verify.compare import compare
from tinymlaas.verify.inputs import input_specs, random_inputs
from tinymlaas.verify.judge import load_judge
from tinymlaas.verify.runtimes import BlobRejected
from tinymlaas.paths import mlperf_model

from c_helpers import CORPUS, compiled, manifest, mlperf_blob, reseal, validate_many, vector_sets

CORPUS_MODELS = sorted(p.name for p in CORPUS.glob("*.tflite"))


def judge_and_inputs(path, n, seed=7):
    data = path.read_bytes()
    inputs = random_inputs(input_specs(data), n, seed=seed)
    return inputs, load_judge(data).run(inputs)


def test_unit_tests_pass_under_sanitizers(asan_tools):
    unit, _ = asan_tools
    proc = subprocess.run([str(unit)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK (0 failures)" in proc.stdout


@pytest.mark.parametrize("name", CORPUS_MODELS)
def test_corpus_model_bit_exact_with_tflm(name):
    path = CORPUS / name
    inputs, expected = judge_and_inputs(path, 3)
    got = CRuntime().run(compiled(path), inputs)
    report = compare(expected, got)
    assert report["bit_exact"], report


@pytest.mark.parametrize("key", ["ad", "kws", "ic", "vww", "sww"])
def test_mlperf_model_bit_exact_with_tflm(key):
    inputs, expected = judge_and_inputs(mlperf_model(key), 2)
    got = CRuntime().run(mlperf_blob(key), inputs)
    report = compare(expected, got)
    assert report["bit_exact"], report


@pytest.mark.parametrize("kernels,key", [("reference", "kws"), ("reference", "sww"), ("fast", "kws"), ("fast", "sww"),
                                         ("fast", "vww")])
def test_sanitized_build_runs_mlperf_models_identically(kernels, key, asan_runners, tmp_path):
    """The ASan/UBSan build executes a whole model without a report and produces the library's bytes, with either
    kernel set (VWW: the host kernels inside patch-based stages)."""
    runner = asan_runners[kernels]
    blob = mlperf_blob(key)
    inputs, _ = judge_and_inputs(mlperf_model(key), 1, seed=3)
    (tmp_path / "m.blob").write_bytes(blob)
    (tmp_path / "in.bin").write_bytes(b"".join(np.ascontiguousarray(x).tobytes() for x in inputs[0]))
    proc = subprocess.run([str(runner), str(tmp_path / "m.blob"), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = b"".join(o.tobytes() for o in Model(blob).invoke(inputs[0]))
    assert (tmp_path / "out.bin").read_bytes() == want


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_sanitized_build_runs_every_corpus_model(kernels, asan_runners, tmp_path):
    runner = asan_runners[kernels]
    for name in CORPUS_MODELS:
        path = CORPUS / name
        blob = compiled(path)
        inputs, expected = judge_and_inputs(path, 1, seed=11)
        (tmp_path / "m.blob").write_bytes(blob)
        (tmp_path / "in.bin").write_bytes(b"".join(np.ascontiguousarray(x).tobytes() for x in inputs[0]))
        proc = subprocess.run([str(runner), str(tmp_path / "m.blob"), str(tmp_path / "in.bin"),
                               str(tmp_path / "out.bin")], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, "%s: %s" % (name, proc.stderr[-3000:])
        assert (tmp_path / "out.bin").read_bytes() == b"".join(np.asarray(e).tobytes() for e in expected[0]), name


# ---- the loader refuses malformed blobs ----

def small_blob():
    return compiled(CORPUS / "conv_same_stride2.tflite")


def test_every_truncation_is_rejected(asan_tools, tmp_path):
    _, runner = asan_tools
    blob = small_blob()
    results = validate_many(runner, [blob[:n] for n in range(len(blob))], tmp_path)
    assert all(code != 0 for code, _ in results)
    assert "shorter than the 64-byte header" in results[10][1]
    assert "total_bytes" in results[200][1]


def test_every_single_byte_corruption_is_rejected_or_harmless(asan_tools, tmp_path):
    """Flip each byte of the blob (all 8 bits): without a resealed hash every flip past the header is a hash
    mismatch; with it, the structural checks run on every variant under the sanitizers without a report."""
    _, runner = asan_tools
    blob = small_blob()
    flipped = []
    for i in range(len(blob)):
        b = bytearray(blob)
        b[i] ^= 0xFF
        flipped.append(bytes(b))
    plain = validate_many(runner, flipped, tmp_path)
    table_end = 64 + 16 * struct.unpack_from("<H", blob, 14)[0]
    for i, (code, reason) in enumerate(plain):
        if 56 <= i < 60 or i < 24 or 60 <= i < 64:
            continue  # header fields are checked before the hash
        assert code != 0, "flip at %d accepted" % i
        if i >= table_end:  # the section table is checked before the hash (§9)
            assert "SHA-256" in reason, (i, reason)
    resealed = validate_many(runner, [reseal(b) for b in flipped], tmp_path)
    # with a valid hash, every flip of a field with no slack must still be caught: each tensor record's dtype,
    # rank, storage, reserved byte, dims and byte count; each op record's header and tensor indices
    _, t_off, _, t_count = section(blob, 1)
    _, o_off, o_size, o_count = section(blob, 2)
    must = []
    for k in range(t_count):
        r = t_off + 36 * k
        must += list(range(r, r + 20)) + list(range(r + 24, r + 28))
    pos = o_off
    for _ in range(o_count):
        n_in, n_out, n_params = blob[pos + 1], blob[pos + 2], blob[pos + 3]
        head = 4 + 2 * (n_in + n_out)
        must += list(range(pos, pos + head))
        pos += head + (-head % 4) + 4 * n_params
    missed = [i for i in must if resealed[i][0] == 0]
    assert not missed, "accepted flips at %s" % missed


def corrupt(blob, offset, fmt, value, seal=True):
    b = bytearray(blob)
    struct.pack_into(fmt, b, offset, value)
    return reseal(bytes(b)) if seal else bytes(b)


def section(blob, kind):
    count = struct.unpack_from("<H", blob, 14)[0]
    for k in range(count):
        kk, off, size, cnt = struct.unpack_from("<IIII", blob, 64 + 16 * k)
        if kk == kind:
            return 64 + 16 * k, off, size, cnt
    raise KeyError(kind)


def test_specific_corruptions_are_named(asan_tools, tmp_path):
    _, runner = asan_tools
    blob = small_blob()
    _, t_off, _, _ = section(blob, 1)
    _, o_off, o_size, _ = section(blob, 2)
    c_entry, c_off, c_size, _ = section(blob, 3)
    cases = [
        (corrupt(blob, 12, "<H", 2, seal=False), "ABI 2"),
        (corrupt(blob, 4, "<H", 3, seal=False), "format_version 3"),
        (corrupt(blob, 0, "<I", 0x58585858, seal=False), "magic"),
        (corrupt(blob, 16, "<I", len(blob) + 4, seal=False), "total_bytes"),
        (corrupt(blob, 8, "<I", 6, seal=False), "flags"),
        (corrupt(blob, c_off, "<B", blob[c_off] ^ 1, seal=False), "SHA-256"),
        (corrupt(blob, t_off + 4, "<I", 0), "dim"),
        (corrupt(blob, t_off, "<B", 9), "dtype"),
        (corrupt(blob, t_off + 20, "<I", 0x7FFFFFF0), "ends past"),
        (corrupt(blob, o_off, "<B", 99), "unknown opcode"),
        (corrupt(blob, o_off + 4, "<H", 0xFFF0), "tensor index"),
        (corrupt(blob, c_entry + 4, "<I", 64), "outside"),
        (corrupt(corrupt(blob, c_entry + 4, "<I", c_off + 8), c_entry + 8, "<I", c_size - 8), "multiple of 16"),
        (corrupt(blob, 56, "<I", 0), "max_op_params"),
        # larger than any op needs: the spec says equal, as the host and MicroPython readers require
        (corrupt(blob, 56, "<I", struct.unpack_from("<I", blob, 56)[0] + 1), "max_op_params"),
        (corrupt(blob, c_entry, "<I", 77), "unknown kind"),
    ]
    results = validate_many(runner, [b for b, _ in cases], tmp_path)
    for (_, want), (code, reason) in zip(cases, results):
        assert code != 0 and want in reason, (want, reason)


def test_hash_is_checked_before_tensor_records(asan_tools, tmp_path):
    """§9 order: a corrupted tensor record without a new hash is reported as a hash mismatch."""
    _, runner = asan_tools
    blob = small_blob()
    _, t_off, _, _ = section(blob, 1)
    [(code, reason)] = validate_many(runner, [corrupt(blob, t_off + 4, "<I", 0, seal=False)], tmp_path)
    assert code == 4 and "SHA-256" in reason


def test_adapter_reports_loader_reason():
    blob = corrupt(small_blob(), 12, "<H", 9, seal=False)
    with pytest.raises(BlobRejected, match="ABI 9"):
        CRuntime().run(blob, [])
    with pytest.raises(LoadError, match="arena"):
        Model(small_blob(), arena_size=16)


# ---- the shared vectors (tests/vectors): the same files the NumPy and MicroPython readers are held to ----

VECTOR_MODELS = [m["name"] for m in manifest()["models"]]
VECTOR_CORRUPT = [c["name"] for c in manifest()["corrupt"]]


@pytest.mark.parametrize("name", VECTOR_MODELS)
def test_shared_vector_outputs(name):
    entry = next(m for m in manifest()["models"] if m["name"] == name)
    blob, inputs, expected = vector_sets(entry)
    got = CRuntime().run(blob, inputs)
    for e_set, g_set in zip(expected, got):
        for e, g in zip(e_set, g_set):
            assert g.tobytes() == e.tobytes(), name


def test_shared_corrupt_vectors_rejected_with_reason(asan_tools, tmp_path):
    _, runner = asan_tools
    entries = manifest()["corrupt"]
    from tinymlaas.paths import VECTORS

    results = validate_many(runner, [(VECTORS / c["blob"]).read_bytes() for c in entries], tmp_path)
    for c, (code, reason) in zip(entries, results):
        assert code != 0, c["name"]
        for word in c["mentions"]:
            assert word.lower() in reason.lower(), (c["name"], word, reason)


def test_mean_with_folded_multiplier_and_const_add_operand_match_reference():
    """A real Keras 3 export (tests/compiler/models/seq_gated.tflite): MEAN whose multiplier TFLM leaves below
    2^30 (spec §5 MEAN) and an ADD with a constant operand — the C runtime equals the NumPy reference."""
    import numpy as np

    from tinymlaas.blob import reference
    from tinymlaas.blob.reader import parse
    from tinymlaas.compiler import compile_tflite
    from tinymlaas.devices.cruntime import CRuntime
    from tinymlaas.paths import REPO

    blob = compile_tflite(REPO / "tests" / "compiler" / "models" / "seq_gated.tflite").blob
    assert "MEAN" in [op.name for op in parse(blob).ops]
    b = parse(blob)
    rng = np.random.default_rng(3)
    inputs = [[rng.integers(-128, 128, b.tensors[i].shape, dtype=np.int8) for i in b.inputs] for _ in range(8)]
    for x, got in zip(inputs, CRuntime().run(blob, inputs)):
        for want, g in zip(reference.run(blob, x), got):
            assert np.array_equal(np.asarray(want).reshape(-1), np.asarray(g).reshape(-1))


def test_host_library_runs_convolutions_through_the_host_kernels():
    """The host build puts tml_fast.c in front of tml_ops.c (the hook at the top of tml_run_op, which a commit from
    a stale copy once dropped): every CONV_2D and DEPTHWISE_CONV_2D of VWW runs there, and the result stays TFLM's.
    Speed itself is bench/c_mlperf.py's (ratios printed, never asserted)."""
    import ctypes

    from tinymlaas.blob.reader import parse

    path = mlperf_model("vww")
    blob = mlperf_blob("vww")
    inputs, judge = judge_and_inputs(path, 1)
    model = Model(blob)
    taken = ctypes.c_uint32.in_dll(model.lib, "tml_fast_ops_run")
    taken.value = 0
    got = model.invoke(inputs[0])
    convs = sum(op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") for op in parse(blob).ops)
    assert convs > 20 and taken.value >= convs
    for want, g in zip(judge, got):
        assert np.array_equal(np.asarray(want).reshape(-1), np.asarray(g).reshape(-1))
