"""`tinymlaas verify --runtime c` and `--runtime qemu-cortex-m4`: the C runtime (host build via ctypes, and the
Cortex-M4 firmware in QEMU) judged by TFLite Micro through the same adapter interface."""

import pytest

from tinymlaas.commands.verify import verify
from tinymlaas.verify.runtimes import BlobRejected, get_runtime
from verify_paths import CORPUS, VECTORS, corpus_models


@pytest.mark.parametrize("name", [n for n in corpus_models() if n != "fc_rows_dynamic_batch"])
def test_c_corpus_bit_exact(name, compiled):
    path = CORPUS / (name + ".tflite")
    r = verify(compiled(path), path.read_bytes(), "c", n_inputs=4, seed=8)
    assert r["bit_exact"], r["first_mismatch"]


@pytest.mark.parametrize("key", ["ad", "kws", "ic", "sww", "vww"])
def test_c_mlperf_bit_exact(key, mlperf, compiled):
    path = mlperf(key)
    r = verify(compiled(path), path.read_bytes(), "c", n_inputs=3, seed=8)
    assert r["bit_exact"], r["first_mismatch"]


def test_c_rejects_wrong_version_with_reason():
    import numpy as np

    with pytest.raises(BlobRejected, match="version"):
        get_runtime("c").run((VECTORS / "corrupt" / "wrong_version.blob").read_bytes(),
                             [[np.zeros((1, 9, 7, 2), np.int8)]])


# On the M4: depthwise with depth multiplier 2 (the generic kernel), 3x2 (the 4-channel register path) and 3x3 on an
# odd 9 x 5 input (the int16 planes, transposed: dwp_s1q's odd-width pass and an odd last row), a residual
# ADD (the flat DSP loop), a strided im2col CONV_2D (the 2x2 GEMM microkernel), small inputs padded once for im2col
# (a PATCH stage's tiles with the four-channel blocks and odd pixels alone in gemm_1x4_w16, K = 72 over two passes;
# dilated rows with the triples and an odd pixel paired with itself), average pooling 16, 4 and 1 channels at a
# time over clipped windows. The 3x3 depthwise assembly kernel, padded windows included, runs in tests/firmware
# (KWS against TFLM).
@pytest.mark.parametrize("name", ["depthwise_dm2", "depthwise_stride2_valid", "depthwise3x3_odd", "add_residual",
                                  "conv_same_stride2", "conv_pad_small_odd", "conv_pad_dilated_rows", "avgpool_wide"])
def test_qemu_cortex_m4_bit_exact(name, compiled):
    path = CORPUS / (name + ".tflite")
    r = verify(compiled(path), path.read_bytes(), "qemu-cortex-m4", n_inputs=2, seed=8)
    assert r["bit_exact"], r["first_mismatch"]
    assert r["runtime"] == "qemu-cortex-m4"
    # one steady-state inference's exact instructions and its modelled cycles (loads take 2, taken branches 1 + P:
    # more cycles), beside the first inference's, which also widens weights into the scratch (models without CONV_2D
    # widen nothing: there the two profiles differ by tens of cycles, where interrupts split QEMU's blocks)
    assert len(r["instructions_per_input"]) == 2 and r["instructions_first"] == r["instructions_per_input"][0] > 0
    # (the counts come from SysTick: one 25 MHz tick is 40 instructions under -icount shift=0, their resolution)
    assert 0 < r["instructions"] <= r["instructions_first"] + 40 and r["cycles_first"] > r["instructions_first"]
    assert r["cycles_range"][0] <= r["cycles"] <= r["cycles_range"][1]
    assert r["instructions"] < r["cycles"] < 3 * r["instructions"]
    assert r["latency_us"] == round(r["cycles"] / 120, 1) and "120 MHz" in r["latency_basis"]


# VWW on the M4: the 3x3 depthwise plane kernels at stride 1 and 2 with SAME padding, and the 1x1 layers whose
# saturated channels (bias +-2^30) requant2_ok proves constant, inside and after the patch-based stages.
def test_qemu_cortex_m4_vww_bit_exact(mlperf, compiled):
    path = mlperf("vww")
    r = verify(compiled(path), path.read_bytes(), "qemu-cortex-m4", n_inputs=1, seed=8)
    assert r["bit_exact"], r["first_mismatch"]
