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


@pytest.fixture(scope="session")
def mpy_build(tmp_path_factory):
    """The tinyml package precompiled with mpy-cross (as it is deployed to a device): a folder to put first on
    MICROPYPATH. Importing .py sources compiles them on the device heap; .mpy files skip that."""
    import shutil
    import subprocess

    from tinymlaas.paths import INFERENCE_MODULE

    out = tmp_path_factory.mktemp("mpy")
    (out / "tinyml").mkdir()
    for src in sorted((INFERENCE_MODULE / "tinyml").glob("*.py")):
        target = out / "tinyml" / (src.stem + ".mpy")
        subprocess.run(["mpy-cross", "-march=x64", "-o", str(target), str(src)], check=True, capture_output=True)
    if not (out / "tinyml" / "__init__.mpy").exists():
        shutil.copy(INFERENCE_MODULE / "tinyml" / "__init__.py", out / "tinyml")
    return out
