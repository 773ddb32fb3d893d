"""An emulated MicroPython board on a serial port: the real `micropython` unix port behind a pseudo-terminal.

Two ptys joined by a relay thread play the USB-serial cable: the `micropython` process has one pty as its
console (in raw mode, like a UART: no OPOST/ONLCR, so the raw REPL's bytes pass untouched), and `port` is the
other pty's path, which mpremote / pyserial open like /dev/ttyUSB0. The board's flash is `root` (the process's
working directory), so relative paths on the board are files under `root`.

The unix port has no soft reset (Ctrl-D on an empty raw-REPL line exits the process), so host code must enter the
raw REPL without one (mpremote's `resume`), which is what tinymlaas provisioning does with every board. Ctrl-C
while a program runs is delivered as on a board (see `_interrupt_char`).
"""

import os
import select
import signal
import subprocess
import threading
import time
import tty

from tinymlaas.devices.unixport import binary, interrupt


class ReplBoard:
    def __init__(self, root, heap="2m"):
        self.root = str(root)
        self._console_master, console_slave = os.openpty()
        tty.setraw(console_slave)
        self._port_master, port_slave = os.openpty()
        tty.setraw(port_slave)
        self.port = os.ttyname(port_slave)
        self._port_slave = port_slave           # kept open: the port stays valid while the host reopens it
        env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
        # An empty MICROPYPATH entry ("") is the working directory: the board's own filesystem, nothing from
        # the source tree. `.frozen` is kept as on a board.
        env["MICROPYPATH"] = ".frozen:"
        self.proc = subprocess.Popen([binary(), "-X", "heapsize=" + heap], stdin=console_slave,
                                     stdout=console_slave, stderr=console_slave, cwd=self.root, env=env,
                                     start_new_session=True)
        os.close(console_slave)
        self.console = bytearray()              # everything the board printed (for assertions)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()
        self._wait_for_banner()

    def _wait_for_banner(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b">>> " not in self.console:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("micropython did not start: %r" % bytes(self.console))
            time.sleep(0.01)

    def _relay(self):
        fds = [self._console_master, self._port_master]
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:                 # EIO: the other side closed (process gone / port closed)
                    if fd == self._console_master:
                        return
                    continue
                if fd == self._console_master:
                    self.console += data
                    os.write(self._port_master, data)
                else:
                    os.write(self._console_master, self._interrupt_char(data))

    def _interrupt_char(self, data):
        """A board's UART driver turns Ctrl-C into KeyboardInterrupt while a program runs (MicroPython's
        interrupt char) and drops the byte. The unix port gets that only as SIGINT, and catches SIGINT exactly
        while it has an interrupt char set, i.e. while running code; otherwise Ctrl-C goes to the REPL as a byte."""
        if b"\x03" in data and self._sigint_caught():
            interrupt(self.proc.pid)
            return data.replace(b"\x03", b"")
        return data

    def _sigint_caught(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        except OSError:
            pass
        return False

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stop.set()
        self._thread.join(2)
        for fd in (self._console_master, self._port_master, self._port_slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
