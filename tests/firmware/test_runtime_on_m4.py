"""The C runtime's unit tests (tests/c/tml_unit.c) compiled for the Cortex-M4 with the DSP kernels and run in QEMU
with semihosting: SHA-256 known answers and the SMMULR-based requantization against the spec's definition
(edge cases and 2 M random cases), on the code the firmware actually runs."""

import subprocess

from tinymlaas.devices.qemu import _lock, qemu_binary
from tinymlaas.paths import FIRMWARE, REPO


def test_unit_tests_pass_on_cortex_m4():
    with _lock(REPO / "build" / "firmware" / ".lock"):
        build = subprocess.run(["make", "-s", "-C", str(FIRMWARE), "BOARD=mps2-an386", "unit"], capture_output=True,
                               text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    elf = REPO / "build" / "firmware" / "mps2-an386" / "tml_unit.elf"
    proc = subprocess.run([qemu_binary(), "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null",
                           "-semihosting", "-kernel", str(elf)], capture_output=True, text=True, timeout=300)
    assert "kernel set: cortex-m-dsp" in proc.stdout
    assert "OK (0 failures)" in proc.stdout, proc.stdout[-3000:]
    assert proc.returncode == 0
