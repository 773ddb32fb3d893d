"""Fixtures for the C runtime tests: the sanitizer builds of inference_module/c."""

import pytest

from tinymlaas.devices import cruntime


@pytest.fixture(scope="session")
def asan_tools():
    """Paths of the ASan+UBSan builds: (unit test binary, blob runner)."""
    unit = cruntime.build(cruntime.BUILD / "tml_unit_asan")
    run = cruntime.build(cruntime.BUILD / "tml_run_asan")
    return unit, run
