"""Bare-metal firmware under QEMU: build (or reuse) it, boot it, and talk to it over its emulated UART.

The UART is exposed as a TCP server (`-serial tcp:127.0.0.1:P,server=on,wait=on`) and reached with the same
pyserial code a real board uses (uart_protocol.DeviceLink). `-icount shift=0,align=off,sleep=off` makes every
instruction advance virtual time by exactly 1 ns, so the firmware's SysTick count converts to an exact,
deterministic instruction count: instructions = cycles * 1e9 / (the SysTick clock QEMU models for the machine).

Adapter `qemu-cortex-m4` for `tinymlaas verify` is QemuRuntime below.
"""

import fcntl
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..paths import FIRMWARE, REPO
from .firmware_trust import dev_signer, device_build
from .uart_protocol import DeviceLink, ProtocolError


@dataclass(frozen=True)
class Board:
    name: str  # firmware BOARD=
    machine: str  # qemu -M
    uart_index: int  # which -serial the firmware's UART is (earlier ones are sent to null)
    qemu_systick_hz: int  # SysTick clock QEMU models for this machine (core clock, CLKSOURCE=1)
    nvm_bytes: int  # size of its emulated non-volatile memory image (firmware/common/nvm.h)


NVM_UNITS = 2 * 1024  # the two state units every image starts with
BOARDS = {
    # the image also holds the flash store's two 384 KB model slots (boards/mps2-an386/flash.c)
    "mps2-an386": Board("mps2-an386", "mps2-an386", 0, 25_000_000, NVM_UNITS + 2 * 384 * 1024),
    # STM32F405: USART1 is the first -serial, USART2 (the firmware's) the second. QEMU clocks it at 168 MHz.
    # Models stay in RAM under QEMU (its STM32 flash is ROM); the image keeps the firmware's state only.
    "stm32f4": Board("stm32f4", "netduinoplus2", 1, 168_000_000, NVM_UNITS),
}


def nvm_image(path, board="mps2-an386"):
    """An erased (0xFF) non-volatile memory image for `board` at path, unless one is there -> path. Give it to
    QemuDevice(nvm=path): the device keeps its models (mps2-an386), anti-rollback state and trust anchors in it
    across QEMU runs, i.e. across power cuts."""
    path = Path(path)
    if not path.exists():
        path.write_bytes(b"\xff" * BOARDS[board].nvm_bytes)
    return path


class QemuError(RuntimeError):
    pass


def qemu_binary():
    exe = shutil.which("qemu-system-arm")
    if not exe:
        raise QemuError("qemu-system-arm is not installed (Debian package qemu-system-arm)")
    return exe


@contextmanager
def _lock(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # parallel test workers share one build directory
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_firmware(board="mps2-an386", kernels="dsp", trust=None):
    """`make -C firmware BOARD=board KERNELS=kernels` (a no-op when up to date) -> path of the ELF. trust: a device
    config's trust (devices.emulated.device_trust()) the firmware's trust table must hold instead of the build's
    development key (firmware_trust.device_build)."""
    if board not in BOARDS:
        raise QemuError("unknown board %r (known: %s)" % (board, ", ".join(BOARDS)))
    if not shutil.which("arm-none-eabi-gcc"):
        raise QemuError("arm-none-eabi-gcc is not installed (Debian gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    out = REPO / "build" / "firmware" / (board + ("-portable" if kernels == "portable" else ""))
    make_vars = []
    if trust is not None:
        out, make_vars = device_build(out, trust)
        make_vars.append("BUILD=%s" % out)
    with _lock(REPO / "build" / "firmware" / ".lock"):
        proc = subprocess.run(["make", "-s", "-C", str(FIRMWARE), "BOARD=" + board, "KERNELS=" + kernels,
                               "PYTHON=" + sys.executable] + make_vars,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise QemuError("firmware build failed:\n" + (proc.stdout + proc.stderr)[-3000:])
    return out / "tinymlaas.elf"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuDevice:
    """One QEMU process running the firmware. Use as a context manager; `.link` is the DeviceLink."""

    def __init__(self, board="mps2-an386", kernels="dsp", elf=None, timeout=20.0, connect=True, icount=True,
                 qemu_args=(), trust=None, nvm=None, power_cut=None):
        """connect=False leaves the UART's TCP port (self.port) to another client, e.g. a MicroPython device
        driving the firmware as its co-processor (tinyml/coproc.py); trust= that device's trust (device_trust())
        builds the firmware to install what the device installs. icount=False and qemu_args (e.g. `-d exec`
        tracing) serve the cycle model (tinymlaas.verify.m4cycles), which counts executed blocks instead.
        nvm: path of the device's non-volatile memory image (nvm_image(); made erased when missing), reached by
        semihosting; without it the device has none (models and state in RAM). power_cut=N: the power goes at its
        N-th erase or program since boot (that one half done, docs/firmware.md), and QEMU exits."""
        self.connect = connect
        self.nvm = nvm_image(nvm, self.board_name(board)) if nvm is not None else None
        self.power_cut = power_cut
        self.icount = icount
        self.qemu_args = list(qemu_args)
        self.port = None
        self.board = BOARDS[board] if isinstance(board, str) else board
        self.elf = elf or build_firmware(self.board.name, kernels, trust)
        # a development build trusts the key beside its ELF: installs are signed with it unless given an envelope
        self.signer = dev_signer(self.board.name, Path(self.elf).parent)
        self.timeout = timeout
        self.proc = None
        self.link = None
        self.caps = None

    def start(self):
        port = _free_port()
        serial_args = []
        for _ in range(self.board.uart_index):
            serial_args += ["-serial", "null"]
        serial_args += ["-serial", "tcp:127.0.0.1:%d,server=on,wait=on" % port]
        self._monitor_dir = tempfile.mkdtemp(prefix="tinymlaas-qemu-")
        monitor = "unix:%s/monitor.sock,server=on,wait=off" % self._monitor_dir
        cmd = [qemu_binary(), "-M", self.board.machine, "-nographic", "-monitor", monitor, "-kernel", str(self.elf)]
        cmd += (["-icount", "shift=0,align=off,sleep=off"] if self.icount else []) + self.qemu_args + serial_args
        if self.nvm is not None:
            if "," in str(self.nvm) or " " in str(self.nvm):
                raise QemuError("the NVM image path must have no commas or spaces: %s" % self.nvm)
            cmd += ["-semihosting-config", "enable=on,target=native,arg=tinymlaas,arg=nvm=%s%s"
                    % (self.nvm, ",arg=cut=%d" % self.power_cut if self.power_cut else "")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.port = port
        if not self.connect:
            return self
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.link = DeviceLink.open("socket://127.0.0.1:%d" % port, timeout=self.timeout)
                self.link.signer = self.signer
                break
            except Exception as e:  # noqa: BLE001 -- pyserial raises SerialException until QEMU listens
                if self.proc.poll() is not None:
                    raise QemuError("QEMU exited: %s" % self.proc.stderr.read().decode(errors="replace")[-2000:])
                if time.monotonic() > deadline:
                    self.stop()
                    raise QemuError("QEMU's serial port did not open: %s" % e)
                time.sleep(0.05)
        try:
            self.caps = self.link.wait_boot()
        except ProtocolError:
            self.stop()
            raise
        return self

    def reset(self):
        """Reset the emulated MCU (QEMU's system_reset: the ELF's segments are loaded again, the rest of RAM keeps
        its bytes as a board's SRAM does) while its UART's TCP connection stays up, like pressing a board's reset
        button with the serial cable attached."""
        self.monitor("system_reset", prompt=False)

    def monitor(self, command, prompt=True):
        """Run one QEMU monitor command (e.g. `log exec,nochain`); return once it is echoed (prompt=True: and the
        monitor prompts again, i.e. the command has run)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect("%s/monitor.sock" % self._monitor_dir)
            s.sendall(command.encode() + b"\n")
            buf = b""
            while command.encode() not in buf or (prompt and not buf.rstrip().endswith(b"(qemu)")):
                chunk = s.recv(4096)  # the monitor echoes the command, then prompts again once it has run it
                if not chunk:
                    break
                buf += chunk

    def stop(self):
        if self.link:
            try:
                self.link.close()
            except Exception:  # noqa: BLE001
                pass
            self.link = None
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        if getattr(self, "_monitor_dir", None):
            shutil.rmtree(self._monitor_dir, ignore_errors=True)
            self._monitor_dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @staticmethod
    def board_name(board):
        return board if isinstance(board, str) else board.name

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def instructions(self, cycles):
        """SysTick cycles -> instructions executed (exact under -icount shift=0, up to one SysTick period)."""
        return round(cycles * 1e9 / self.board.qemu_systick_hz)


def _blob_io(blob_bytes):
    from ..blob import format as F
    from ..blob.reader import parse

    blob = parse(blob_bytes)

    def tensor(t):
        return blob.tensors[t] if isinstance(t, int) else t

    np_types = {F.DTYPE_INT8: np.int8, F.DTYPE_UINT8: np.uint8, F.DTYPE_INT16: np.int16,
                F.DTYPE_INT32: np.int32, F.DTYPE_FLOAT32: np.float32}
    ins = [(tuple(tensor(t).shape), np_types[tensor(t).dtype]) for t in blob.inputs]
    outs = [(tuple(tensor(t).shape), np_types[tensor(t).dtype]) for t in blob.outputs]
    return ins, outs


def encode_inputs(input_specs, arrays):
    data = b""
    for (shape, dtype), x in zip(input_specs, arrays):
        data += np.ascontiguousarray(x, dtype=dtype).reshape(shape).tobytes()
    return data


def decode_outputs(output_specs, data):
    outs, off = [], 0
    for shape, dtype in output_specs:
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        outs.append(np.frombuffer(data[off: off + n], dtype=dtype).reshape(shape).copy())
        off += n
    return outs


class QemuRuntime:
    """Adapter `qemu-cortex-m4` for tinymlaas verify: install the blob over the UART, run every input set."""

    name = "qemu-cortex-m4"
    first_run_differs = True  # the first inference widens CONV_2D weights into the scratch and keeps them

    def __init__(self, board="mps2-an386", kernels="dsp"):
        from ..verify.runtimes import RuntimeUnavailable

        try:
            qemu_binary()
            self.elf = build_firmware(board, kernels)
        except QemuError as e:
            raise RuntimeUnavailable(str(e)) from e
        self.board = board
        self.last_instructions = []

    def run(self, blob_bytes, inputs):
        from ..blob.reader import BlobFormatError
        from ..verify.runtimes import BlobRejected
        from .uart_protocol import Nak

        results = []
        self.last_instructions = []
        with QemuDevice(self.board, elf=self.elf) as dev:
            try:
                dev.link.install(blob_bytes)  # the device's own loader decides, and its reason is reported
            except Nak as e:
                raise BlobRejected("device refused the blob: %s" % e.reason) from e
            try:
                in_specs, out_specs = _blob_io(blob_bytes)
            except BlobFormatError as e:
                raise BlobRejected("host reader refused a blob the device accepted: %s" % e) from e
            for one in inputs:
                data, cycles = dev.link.infer(encode_inputs(in_specs, one))
                self.last_instructions.append(dev.instructions(cycles))
                results.append(decode_outputs(out_specs, data))
        return results
