"""Seeded mutation fuzz of the device's datagram path inside MicroPython (tests/client/mpy/fuzz_codec.py):
10,000 inputs by default, 100,000 per seed with --fuzz-long. Any exception other than the codec's own
rejections, or a MicroPython crash, fails."""

import re
from pathlib import Path

import pytest

from tinymlaas.devices import unixport

SCRIPT = Path(__file__).parent / "mpy" / "fuzz_codec.py"


@pytest.mark.fuzz
@pytest.mark.parametrize("seed, with_installer", [(1, False), (2, True)])
def test_fuzz_device_codec_and_handler(request, tmp_path, seed, with_installer):
    count = 100_000 if request.config.getoption("--fuzz-long") else 5_000
    args = (seed, count) + ((tmp_path / "flash",) if with_installer else ())
    proc = unixport.run(script=SCRIPT, args=args, heap="512k", timeout=900)
    out = proc.stdout.decode()
    m = re.search(r"inputs (\d+) decoded (\d+) rejected (\d+) requests (\d+) crashes (\d+)", out)
    assert m, out
    inputs, decoded, rejected, requests, crashes = map(int, m.groups())
    assert crashes == 0, out
    assert inputs == count
    # the mutations must exercise both sides: rejected datagrams and requests that reach the LwM2M handler
    assert rejected > count // 10 and requests > count // 10, out
