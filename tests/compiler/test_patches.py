"""Patch-based stages (docs/compiler.md "Patch-based stages"): the compiler runs memory-heavy convolution stages
tile by tile where that lowers the arena; the blob's PATCH op (docs/blob-format.md §12) is bit-exact with the
layer-wise run and with TFLite Micro, and the readers refuse a tile table that would leave a tile buffer."""

import hashlib

import numpy as np
import pytest
from tflite_builder import run_tflm

from tinymlaas.blob import format as F
from tinymlaas.blob import reference
from tinymlaas.blob.reader import BlobFormatError, parse
from tinymlaas.compiler import compile_tflite
from tinymlaas.paths import mlperf_model


@pytest.fixture(scope="module")
def vww():
    return compile_tflite(mlperf_model("vww")), mlperf_model("vww").read_bytes()


def test_vww_fits_32k_and_is_bit_exact_with_tflm(vww):
    cm, model = vww
    assert cm.arena_bytes <= 32 * 1024 and cm.arena_layerwise == 55296
    assert cm.ops.count("PATCH") == len(cm.patches) >= 1
    assert sum(p["extra_macs"] for p in cm.report()["patches"]) > 0 and cm.macs == 7489664  # the model's own MACs
    rng = np.random.default_rng(7)
    for _ in range(2):
        x = rng.integers(-128, 128, size=(1, 96, 96, 3), dtype=np.int8)
        assert np.array_equal(np.asarray(reference.run(cm.blob, [x])[0]).reshape(1, 2), run_tflm(model, x)[0])


def test_vww_stages_are_the_cheap_ones(vww):
    # the 4x6-tile stage over the first four ops recomputed the first conv's K = 27 MACs 1.56 times (357,792 MACs):
    # the wider search runs that conv alone in row bands (nothing recomputed, over the input image) and lays the next
    # stage's output over its output, in less arena
    cm, _ = vww
    first = cm.patches[0]
    assert first["kinds"] == ["CONV_2D"] and first["extra_macs"] == 0 and first["overlap_bytes"] == 0
    assert sum(p["extra_macs"] for p in cm.patches) == 48000 and cm.arena_bytes == 30336


def test_chained_stage_outputs_share_one_buffer(vww):
    cm, _ = vww  # (plan_memory's validate_plan has checked that no two live buffers overlap)
    rows = [b for b in cm.memory_plan if any(t.endswith("input_1_int8") for t in b["tensors"])]
    assert len(rows) == 1 and len(rows[0]["tensors"]) >= 3  # the input, the first stage's y, the second stage's y


@pytest.mark.parametrize("key, layerwise", [("ic", 49152), ("sww", 6656)])
def test_other_models_lower_their_arena_exactly(mlperf, key, layerwise):
    plain, cm = compile_tflite(mlperf(key), patches=False), compile_tflite(mlperf(key))
    assert plain.arena_bytes == cm.arena_layerwise == layerwise > cm.arena_bytes
    assert "PATCH" not in plain.ops and not plain.patches
    rng = np.random.default_rng(3)
    ex, ex0 = reference.Executor(cm.blob), reference.Executor(plain.blob)
    t = ex.blob.tensors[ex.blob.inputs[0]]
    x = rng.integers(-128, 128, size=t.shape, dtype=np.int8)
    assert all(np.array_equal(a, b) for a, b in zip(ex.run([x]), ex0.run([x])))


def test_kws_keeps_its_layerwise_plan(mlperf):
    # 25x5 DS-CNN layers: every tiling recomputes more than the compiler allows for the bytes it would save
    cm = compile_tflite(mlperf("kws"))
    assert cm.arena_bytes == cm.arena_layerwise == 16000 and not cm.patches


def _resealed(blob, at, value):
    b = bytearray(blob)
    b[at:at + 4] = int(value).to_bytes(4, "little", signed=True)
    b[24:56] = hashlib.sha256(bytes(b[64:])).digest()
    return bytes(b)


def test_reader_refuses_a_tile_table_past_a_tile_buffer(vww):
    blob = parse(vww[0].blob)
    patch = next(op for op in blob.ops if op.name == "PATCH")
    tiles = blob.tensors[patch.inputs[1]]
    cap = blob.tensors[blob.ops[patch.index + 1].outputs[0]].dims4[1]
    n_sections = F.HEADER.unpack_from(vww[0].blob)[5]
    const_off = next(off for kind, off, _size, _n in (F.SECTION.unpack_from(vww[0].blob, 64 + 16 * k)
                                                      for k in range(n_sections)) if kind == F.SECTION_CONST)
    with pytest.raises(BlobFormatError, match="PATCH.*outside 1..%d" % cap):
        parse(_resealed(vww[0].blob, const_off + tiles.offset + 8, cap + 1))  # tile 0, op 0: rows
    with pytest.raises(BlobFormatError, match="PATCH.*padding"):
        parse(_resealed(vww[0].blob, const_off + tiles.offset + 16, 99))  # tile 0, op 0: pad_top


def test_cli_states_both_arenas_and_can_leave_patches_out(tmp_path):
    from test_compile_command import _cli

    p = _cli(str(mlperf_model("vww")), "-o", str(tmp_path / "a.tmlb"))
    assert p.returncode == 0, p.stderr
    assert "arena 55296 B layer by layer, 30336 B with them; 48000 MACs recomputed (+0.6%)" in p.stdout
    p = _cli(str(mlperf_model("vww")), "-o", str(tmp_path / "b.tmlb"), "--no-patches", "--json")
    assert p.returncode == 0 and '"arena_bytes": 55296' in p.stdout and '"patches": []' in p.stdout


def test_models_show_states_both_arenas(tmp_path):
    import subprocess
    import sys

    def cli(*args):
        code = "import sys; from tinymlaas.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, *args, "--data", str(tmp_path)], capture_output=True,
                              text=True, timeout=300)

    assert cli("models", "add", str(mlperf_model("sww")), "--name", "sww").returncode == 0
    p = cli("models", "show", "sww")
    assert p.returncode == 0, p.stderr
    assert "arena 4992 B with 1 patch-based stage(s), 6656 B layer by layer; 0 MACs recomputed" in p.stdout
