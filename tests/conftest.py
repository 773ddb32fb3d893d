"""Shared fixtures. Device code runs in the real MicroPython unix port through `mpy_run`, never in CPython."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

# This checkout's host code, whichever checkout the editable install points at (a second clone of the repository
# on the same machine runs its own code, in this process and in every `tinymlaas` / `python` it starts).
HOST = str(Path(__file__).resolve().parents[1] / "host")
sys.path.insert(0, HOST)
os.environ["PYTHONPATH"] = os.pathsep.join([HOST] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

# One signing key store for the test session (signing/store.py): packages built in tests, services started by them
# (in this process or as `tinymlaas serve`) and emulated devices (provisioned with its anchors) all use it, as on a
# machine where one service signs for its devices. Never the user's ~/.tinymlaas/keys.
os.environ.setdefault("TINYMLAAS_KEYS", tempfile.mkdtemp(prefix="tinymlaas-test-keys-"))

from tinymlaas.devices import unixport
from tinymlaas.paths import MLPERF_DIR, mlperf_model


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true", help="run fuzz targets at their long (benchmark) counts")


@pytest.fixture
def mpy_run():
    """mpy_run(code, heap="128k", stdin=None, check=True) -> stdout text of a `micropython` process."""

    def run(code, heap="256k", stdin=None, check=True, args=(), timeout=600):
        proc = unixport.run(code=code, heap=heap, stdin=stdin, check=check, args=args, timeout=timeout)
        return proc.stdout.decode()

    return run


@pytest.fixture
def mlperf():
    """mlperf("kws") -> Path of an MLPerf Tiny reference model."""
    if not MLPERF_DIR.is_dir():
        pytest.fail("MLPerf Tiny models not found at %s" % MLPERF_DIR)
    return mlperf_model
