"""The harness itself: device code really runs in MicroPython, with a real heap limit."""

import pytest

from tinymlaas.devices import unixport


def test_runs_in_micropython(mpy_run):
    out = mpy_run("import sys; print(sys.implementation.name, sys.implementation._mpy & 0xff)")
    name, mpy = out.split()
    assert name == "micropython"
    assert int(mpy) == 6


def test_heap_limit_is_enforced(mpy_run):
    with pytest.raises(unixport.MicroPythonError) as e:
        mpy_run("b = bytearray(200000)", heap="64k")
    assert "MemoryError" in e.value.output
