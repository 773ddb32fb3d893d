"""The STM32F4 firmware under Renode (stm32f4_discovery), through the same UART protocol code as QEMU and boards.

Renode is optional: `renode_binary()` says whether one is on PATH, and everything here raises RenodeUnavailable
with a clear message when none is. CI runs the firmware under QEMU instead (Renode has no offline package).
The platform script is renode/stm32f4.resc; the Robot Framework suite renode/firmware.robot calls
`python -m tinymlaas.devices.renode check ...` against the emulation it started.
"""

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..paths import REPO
from .firmware_trust import dev_signer
from .qemu import build_firmware
from .uart_protocol import DeviceLink, Nak, ProtocolError

RESC = REPO / "renode" / "stm32f4.resc"
ROBOT = REPO / "renode" / "firmware.robot"


class RenodeUnavailable(RuntimeError):
    pass


def renode_binary():
    """Path of `renode` on PATH, or None."""
    return shutil.which("renode")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RenodeDevice:
    """Renode running the STM32F4 firmware; `.link` is the DeviceLink on USART2."""

    def __init__(self, elf=None, timeout=60.0):
        exe = renode_binary()
        if not exe:
            raise RenodeUnavailable("Renode is not installed (no `renode` on PATH); use the QEMU backend, or install "
                                    "Renode from https://renode.io and retry")
        self.exe = exe
        self.elf = elf or build_firmware("stm32f4")
        self.timeout = timeout
        self.proc = None
        self.link = None
        self.caps = None

    def start(self):
        port = _free_port()
        script = "$bin=@%s; $port=%d; include @%s; start" % (self.elf, port, RESC)
        self.proc = subprocess.Popen([self.exe, "--disable-xwt", "--console", "--plain", "-e", script],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.link = DeviceLink.open("socket://127.0.0.1:%d" % port, timeout=self.timeout)
                self.link.signer = dev_signer("stm32f4", Path(self.elf).parent)  # a development build's key
                break
            except Exception as e:  # noqa: BLE001 -- until Renode opens the socket terminal
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RenodeUnavailable("Renode did not open the UART socket: %s" % e) from e
                time.sleep(0.2)
        # the boot frame may have gone out before we connected: ask for the capabilities instead
        self.caps = self.link.caps()
        return self

    def stop(self):
        if self.link:
            self.link.close()
            self.link = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def instructions(self, cycles):
        """Renode's SysTick follows its virtual time (PerformanceInMips), not an instruction count: no conversion."""
        return None


def check(port, model="kws", wrong_abi=False, installed=False, storage=None):
    """Install an MLPerf model into an already running emulation on `port` and compare with TFLite Micro.
    With wrong_abi, check instead that a blob for another ABI is refused and the device keeps answering.
    With installed, install nothing: the model must already be active (kept in flash across a reset).
    With storage, the device must report that model store ("flash" on Renode's stm32f4_discovery)."""
    from ..compiler import compile_tflite
    from ..paths import mlperf_model
    from ..verify.compare import compare
    from ..verify.inputs import input_specs, random_inputs
    from ..verify.judge import load_judge
    from .qemu import _blob_io, decode_outputs, encode_inputs

    path = mlperf_model(model)
    blob = compile_tflite(str(path)).blob
    link = DeviceLink.open("socket://127.0.0.1:%d" % port, timeout=120)
    link.signer = dev_signer("stm32f4")  # the suite runs the development build (renode/stm32f4.resc)
    try:
        caps = link.caps()
        print("device:", caps)
        if storage and caps.get("storage") != storage:
            print("the device uses the %s store, expected %s" % (caps.get("storage"), storage), file=sys.stderr)
            return 1
        if wrong_abi:
            bad = bytearray(blob)
            bad[12:14] = (2).to_bytes(2, "little")
            try:
                link.install(bytes(bad))
            except Nak as e:
                print("refused as expected:", e.reason)
                return 0 if "ABI 2" in e.reason and link.caps()["board"] == caps["board"] else 1
            print("a blob for ABI 2 was accepted")
            return 1
        if installed:
            if caps.get("model") != blob[24:32].hex():
                print("model %s is active, expected %s" % (caps.get("model"), blob[24:32].hex()), file=sys.stderr)
                return 1
        else:
            print(link.install(blob))
        data = path.read_bytes()
        inputs = random_inputs(input_specs(data), 2, seed=5)
        expected = load_judge(data).run(inputs)
        ins, outs = _blob_io(blob)
        got = []
        for one in inputs:
            raw, cycles = link.infer(encode_inputs(ins, one))
            got.append(decode_outputs(outs, raw))
            print("inference: %d SysTick cycles" % cycles)
        report = compare(expected, got)
        print("bit-exact with TFLite Micro:", report["bit_exact"])
        return 0 if report["bit_exact"] else 1
    except ProtocolError as e:
        print("protocol error:", e, file=sys.stderr)
        return 1
    finally:
        link.close()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tinymlaas.devices.renode")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="install and infer against a running Renode emulation (used by the .robot)")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--model", default="kws")
    c.add_argument("--wrong-abi", action="store_true")
    c.add_argument("--installed", action="store_true", help="expect the model already active; install nothing")
    c.add_argument("--storage", choices=["flash", "ram"], help="expect this model store")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    return check(args.port, args.model, args.wrong_abi, args.installed, args.storage)


if __name__ == "__main__":
    sys.exit(main())
