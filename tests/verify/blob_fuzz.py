"""The differential half shared by the op fuzz tests (tests/backends/test_classic_fuzz.py,
tests/verify/test_patch_fuzz.py): mutated blobs through the host reader (then its reference executor), the C
loader built with AddressSanitizer + UBSan (tests/c/tml_run.c; every accepted blob then run once with exact-size
buffers) and the MicroPython loader (every accepted blob then invoked in the VM)."""

import subprocess
from pathlib import Path

import numpy as np
from test_reader_fuzz import HOST_STRICTER_THAN_C, HOST_STRICTER_THAN_MPY, disagreement

from tinymlaas.blob.reader import BlobFormatError, parse
from tinymlaas.blob.reference import NP_DTYPE, Executor

ARGV_BLOBS = 500  # blobs per --validate process, so that its argv stays short


def host_verdict(data):
    """None when the host reader accepts `data` (and its executor then runs it on zeros), else the refusal."""
    try:
        blob = parse(data)
    except BlobFormatError as e:
        return str(e)
    if blob.arena_bytes <= 1 << 20:
        with np.errstate(all="ignore"):
            Executor(blob).run([np.zeros(blob.tensors[t].shape, NP_DTYPE[blob.tensors[t].dtype]) for t in blob.inputs])
    return None


def check_sanitized_c(blobs, tmp_path):
    """-> (disagreements host/C, blobs both accepted); asserts every accepted blob runs clean in the ASan build."""
    from tinymlaas.devices import cruntime
    runner = cruntime.build(cruntime.BUILD / "tml_run_asan")
    paths = []
    for k, b in enumerate(blobs):
        paths.append(tmp_path / ("m%05d.tmlb" % k))
        paths[-1].write_bytes(b)
    lines = []
    for at in range(0, len(paths), ARGV_BLOBS):
        proc = subprocess.run([str(runner), "--validate"] + [str(p) for p in paths[at:at + ARGV_BLOBS]],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines += proc.stdout.splitlines()
    assert len(lines) == len(blobs)
    found, accepted = [], 0
    for data, path, line in zip(blobs, paths, lines):
        code, _, reason = line.partition(" ")
        host, c = host_verdict(data), None if code == "0" else reason
        if c is None and host is None:
            accepted += 1
            blob = parse(data)
            (tmp_path / "in.bin").write_bytes(b"".join(b"\0" * blob.tensors[t].nbytes for t in blob.inputs))
            run = subprocess.run([str(runner), str(path), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, (path.name, run.stderr[-3000:])
        d = disagreement(host, c, HOST_STRICTER_THAN_C)
        if d:
            found.append(d)
    return found, accepted


def check_micropython(blobs, tmp_path, kernels=None):
    """-> (disagreements host/MicroPython, blobs the VM loaded and ran); asserts nothing but BlobError escaped."""
    from tinymlaas.devices import unixport
    (tmp_path / "blobs.bin").write_bytes(b"".join(len(b).to_bytes(4, "little") + b for b in blobs))
    args = [tmp_path / "blobs.bin", "invoke"] + ([kernels] if kernels else [])
    lines = unixport.run(script=Path(__file__).with_name("mpy_load_many.py"), args=args, heap="2m",
                         timeout=1800).stdout.decode().splitlines()
    assert len(lines) == len(blobs)
    crashes = [ln for ln in lines if ln.startswith("CRASH")]
    assert not crashes, crashes[:5]
    found = [d for d in (disagreement(host_verdict(b), None if ln == "OK" else ln[4:], HOST_STRICTER_THAN_MPY)
                         for b, ln in zip(blobs, lines)) if d]
    return found, lines.count("OK")
