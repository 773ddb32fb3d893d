"""Fixtures for device-code tests: run a (possibly long) MicroPython script from a file."""

import pytest

from tinymlaas.devices import unixport


@pytest.fixture
def mpy_script(tmp_path):
    """mpy_script(code, heap="256k", check=True, timeout=300) -> CompletedProcess (stdout/stderr decoded)."""
    counter = [0]

    def run(code, heap="256k", check=True, timeout=300, args=()):
        counter[0] += 1
        path = tmp_path / ("script%d.py" % counter[0])
        path.write_text(code)
        proc = unixport.run(script=path, heap=heap, check=check, timeout=timeout, args=args)
        proc.stdout = proc.stdout.decode(errors="replace")
        proc.stderr = proc.stderr.decode(errors="replace")
        return proc

    return run
