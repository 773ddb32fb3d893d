"""Check a MicroPython firmware built with tinymlaas's manifest and `_tinyml` module (docs/boards.md).

    python firmware/micropython/verify_build.py --qemu ports/qemu/build-MPS2_AN385/firmware.elf
    python firmware/micropython/verify_build.py --unix ports/unix/build-standard/micropython

Boots the firmware (QEMU mps2-an385 with its UART on a pty, or the unix binary behind a pty), enters the raw REPL
with mpremote's transport, and runs every single-input vector in tests/vectors through the C runtime
(`_tinyml.Model`) and the frozen viper kernels (`tinyml.load(blob, kernels="viper")`); both must equal the golden
output, and `tinyml.load(blob)` must pick the C module by itself. The blobs are sent inside the executed code, so
the board needs no filesystem. Exit status 0 when every vector is bit-exact.
"""

import argparse
import os
import re
import subprocess
import sys
import tty
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors"

RUN = """b = %r
t, a = _tinyml.check_header(b[:64])
m = _tinyml.Model(b, bytearray(a))
if m.sizes()[:2] == (1, 1):
    n = m.input_info(0)[4]
    x = %r[:n]
    m.input(0)[:] = x
    m.invoke()
    v = tinyml.load(b, kernels='viper')
    v.input_buffer(0)[:] = x
    v.invoke()
    print(bytes(m.output(0)).hex(), bytes(v.output_buffer(0)).hex(), tinyml.load(b).kernels)
else:
    print('skip skip skip')
"""


def vector_code(blob_path):
    """The code that runs one vector on the board: prints the C module's output, the viper kernels' output (hex)
    and the kernels `tinyml.load` picks by itself (c-module on a firmware with `_tinyml`)."""
    return RUN % (blob_path.read_bytes(), blob_path.with_suffix(".in.bin").read_bytes())


def boot_qemu(elf):
    p = subprocess.Popen(["qemu-system-arm", "-machine", "mps2-an385", "-nographic", "-monitor", "null",
                          "-semihosting", "-serial", "pty", "-kernel", elf], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    m = re.search(r"(/dev/pts/\d+)", p.stdout.readline())
    if not m:
        p.kill()
        raise SystemExit("qemu did not open a pty")
    return p, m.group(1), True


def boot_unix(binary):
    master, slave = os.openpty()
    tty.setraw(slave)
    env = dict(os.environ, MICROPYPATH=".frozen")      # frozen modules only: nothing from the source tree
    p = subprocess.Popen([binary], stdin=slave, stdout=slave, stderr=slave, env=env)
    return p, _pair(master), False


def _pair(master):
    """The unix binary's console is a pty slave; give mpremote the other end through a second pty (relay)."""
    import select
    import threading

    m2, s2 = os.openpty()
    tty.setraw(s2)

    def relay():
        while True:
            for fd in select.select([master, m2], [], [])[0]:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                os.write(m2 if fd == master else master, data)

    threading.Thread(target=relay, daemon=True).start()
    return os.ttyname(s2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--qemu", help="firmware.elf of ports/qemu BOARD=MPS2_AN385")
    g.add_argument("--unix", help="micropython binary of ports/unix")
    args = ap.parse_args()
    from mpremote.transport_serial import SerialTransport

    proc, port, soft_reset = boot_qemu(args.qemu) if args.qemu else boot_unix(args.unix)
    try:
        t = SerialTransport(port, 115200, timeout=1)
        t.enter_raw_repl(soft_reset=soft_reset)
        print(t.exec("import sys, gc, _tinyml, tinyml; gc.collect(); print(sys.implementation._machine, "
                     "'mpy', sys.implementation._mpy, _tinyml.kernel_set(), 'heap free', gc.mem_free())")
              .decode().strip())
        bad = checked = 0
        for blob_path in sorted(VECTORS.glob("*.blob")):
            xin = blob_path.with_suffix(".in.bin")
            yout = blob_path.with_suffix(".out.bin")
            if not xin.exists() or not yout.exists():
                continue
            if blob_path.stat().st_size > 32 * 1024:
                # Sent as a literal inside the code, a blob needs ~3x its size of heap while compiling.
                print("%-28s not run: %d-byte blob is too large to send as code" % (blob_path.stem,
                                                                                   blob_path.stat().st_size))
                continue
            try:
                c_hex, py_hex, auto = t.exec(vector_code(blob_path)).decode().split()
            except Exception as e:  # the board raised: report it and go on with the next vector
                checked += 1
                bad += 1
                print("%-28s ERROR %s" % (blob_path.stem, str(e).strip().splitlines()[-1]))
                continue
            if c_hex == "skip":
                continue
            ref = yout.read_bytes()[:len(c_hex) // 2]
            exact = bytes.fromhex(c_hex) == ref == bytes.fromhex(py_hex)
            verdict = "bit-exact (C and viper)" if exact else "MISMATCH"
            if auto != "c-module":
                verdict += ", and tinyml.load(blob) picks %s, not the C module" % auto
            checked += 1
            bad += not (exact and auto == "c-module")
            print("%-28s %s" % (blob_path.stem, verdict))
        t.close()
    finally:
        proc.terminate()
    print("%d of %d vectors bit-exact" % (checked - bad, checked))
    return 1 if bad or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
