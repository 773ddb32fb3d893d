"""The Cortex-M4 cycle model (tinymlaas.verify.m4cycles) on hand-written kernels whose cycle counts the TRM's
timings fix (tests/verify/m4cycles_calib.S), profiled through real QEMU, and on one MLPerf Tiny inference, whose
instruction count must match the firmware's exact -icount figure."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tinymlaas.verify.m4trace import profile_elf

HERE = Path(__file__).parent
# kernel: (instructions, cycles = a + b * P, taken branches), counted by hand from the TRM (see the .S comments)
EXPECTED = {
    "k_alu": (9, (9, 1), 1),
    "k_loads": (11, (17, 1), 1),
    "k_multi": (4, (20, 1), 1),
    "k_loop": (52, (62, 10), 10),
    "k_div": (4, (15, 1), 1),
    "k_cbz": (3, (3, 2), 2),
}

pytestmark = pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"), reason="needs gcc-arm-none-eabi")


@pytest.fixture(scope="module")
def calib_elf(tmp_path_factory):
    elf = tmp_path_factory.mktemp("m4cycles") / "calib.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles",
                    "-Wl,-Ttext=0,-Tbss=0x20000000,-eReset_Handler", str(HERE / "m4cycles_calib.S"), "-o", str(elf)],
                   check=True)
    return elf


def test_calibration_kernels_match_the_trm(calib_elf):
    counter = profile_elf(calib_elf, {k: k for k in EXPECTED})
    got = {}
    for i, (name, _) in enumerate(counter.regions):
        prof = counter.profiles(i)["total"]
        got[name] = (prof.instructions, tuple(prof.cycles(p) for p in (1, 2, 3)), prof.taken)
    want = {k: (n, tuple(a + b * p for p in (1, 2, 3)), t) for k, (n, (a, b), t) in EXPECTED.items()}
    assert got == want


def test_inference_profile_counts_the_firmware_instructions(compiled):
    """One inference of a corpus CONV_2D model: the profile's instruction count is the firmware's exact -icount
    figure (up to the 40-instruction SysTick tick around tml_invoke), its outputs the same, and every layer has a
    profile whose cycles lie between 1 and 4 per instruction."""
    import numpy as np

    from tinymlaas.devices.qemu import QemuDevice, _blob_io, encode_inputs
    from tinymlaas.verify.m4trace import profile_inference
    from verify_paths import CORPUS

    path = CORPUS / "conv_stride_nonsquare_relu6.tflite"
    blob = compiled(path)
    ins, _ = _blob_io(blob)
    rng = np.random.default_rng(3)
    inputs = [rng.integers(-128, 128, size=shape).astype(dtype) for shape, dtype in ins]
    counter, out = profile_inference(blob, inputs)
    with QemuDevice() as dev:
        dev.link.install(blob)
        want_out, ticks = dev.link.infer(encode_inputs(ins, inputs))
        exact = dev.instructions(ticks)
    profiles = counter.profiles()
    total = profiles["total"]
    assert out == want_out
    assert abs(total.instructions - exact) <= 100, (total.instructions, exact)
    layers = [k for k in profiles if isinstance(k, int)]
    assert layers == list(range(len(layers))) and layers
    for k in layers:
        assert profiles[k].instructions <= profiles[k].cycles(2) <= 4 * profiles[k].instructions
