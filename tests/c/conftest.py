"""Fixtures for the C runtime tests: the sanitizer builds of inference_module/c."""

import pytest

from tinymlaas.devices import cruntime


@pytest.fixture(scope="session")
def asan_tools():
    """Paths of the ASan+UBSan builds: (unit test binary, blob runner)."""
    unit = cruntime.build(cruntime.BUILD / "tml_unit_asan")
    run = cruntime.build(cruntime.BUILD / "tml_run_asan")
    return unit, run


@pytest.fixture(scope="session")
def asan_runners(asan_tools):
    """The blob runner under ASan+UBSan with tml_ops.c's kernels alone ("reference") and with the host kernels of
    tml_fast.c in front of them ("fast", as in libtml.so)."""
    return {"reference": asan_tools[1], "fast": cruntime.build(cruntime.BUILD / "tml_run_fast_asan")}
