"""Execution profiles of Cortex-M4 code under QEMU, for the cycle model of tinymlaas.verify.m4cycles.

Debian's qemu-system-arm accepts `-plugin` but ships no TCG plugins, so the profile comes from QEMU's own logs:
`-d in_asm` prints each block when it is translated (its instruction addresses), `-d exec,nochain` prints the start
address of every block executed, in order, with chaining between blocks off so none is skipped. From the ordered
stream follow the run count of every block and whether its last instruction branched (the next block does not
start at its fall-through address). The log goes through a FIFO into a reader thread: nothing is written to disk.

Regions: a region starts when a given function is entered and ends when a block of the function that called it
runs again (the call returned). Inside tml_invoke, the firmware's per-op hook (profile_op) splits the region into
layers: a layer is everything between the hook's return at the op's start and its call at the op's end.
"""

import os
import subprocess
import tempfile
import threading
from contextlib import contextmanager

from .m4cycles import Disassembly, Profile, block_cost


class BlockCounter:
    """Parses a QEMU `-d in_asm,exec,nochain` log and counts block runs and taken exits per region and layer."""

    def __init__(self, dis, entries, layer_hook=None):
        """entries: {function name: region name}; layer_hook: the function called at each op's start and end."""
        self.dis = dis
        self.entries = {dis.symbols[f]: name for f, name in entries.items()}
        self.hook = dis.symbols.get(layer_hook) if layer_hook else None
        self.blocks = {}  # start pc -> instruction addresses
        self.fall = {}  # start pc -> fall-through address
        self.regions = []  # (name, {layer: {pc: [runs, taken]}})

    def _func_range(self, pc):
        name = self.dis.function_at(pc)
        lo = self.dis.symbols.get(name, pc)
        later = [a for a in self.dis.symbols.values() if a > lo]
        return lo, (min(later) if later else 1 << 32)

    def feed(self, lines):
        cur, region, prev_pc, prev_entry = None, None, None, None
        caller_lo = caller_hi = 0
        layer, pending, n_layers, invoke_lo, invoke_hi = None, False, 0, 0, 0
        counts = None
        for line in lines:
            c = line[:1]
            if c == "T":  # Trace 0: 0x7f..host.. [cs_base/pc/flags/cflags] symbol
                i = line.find("[")
                if i < 0:
                    continue
                pc = int(line[i + 10:i + 18], 16)
                if region is None:
                    name = self.entries.get(pc)
                    if name is None:
                        prev_pc = pc
                        continue
                    caller_lo, caller_hi = self._func_range(prev_pc if prev_pc is not None else pc)
                    invoke_lo, invoke_hi = self._func_range(pc)
                    counts = {}
                    region = (name, counts)
                    self.regions.append(region)
                    layer, pending, n_layers, prev_entry = None, False, 0, None
                elif caller_lo <= pc < caller_hi:  # returned: the return itself was the region's last taken exit
                    if prev_entry is not None and pc != self.fall.get(prev_pc):
                        prev_entry[1] += 1
                    region, prev_entry, prev_pc = None, None, pc
                    continue
                if self.hook is not None:
                    if pc == self.hook:
                        if layer is None:
                            pending = True
                        else:
                            layer = None
                    elif pending and invoke_lo <= pc < invoke_hi:
                        pending, layer, n_layers = False, n_layers, n_layers + 1
                if prev_entry is not None and pc != self.fall.get(prev_pc):
                    prev_entry[1] += 1
                per = counts.get(layer)
                if per is None:
                    per = counts[layer] = {}
                entry = per.get(pc)
                if entry is None:
                    entry = per[pc] = [0, 0]
                entry[0] += 1
                prev_entry, prev_pc = entry, pc
            elif c == "0" and cur is not None:  # 0x00001234:  f853 1b04  ldr ...
                cur.append(int(line[2:10], 16))
            elif c == "I" and line.startswith("IN:"):
                cur = []
            elif cur is not None and not line.strip():
                if cur:
                    self.blocks[cur[0]] = cur
                    last = self.dis.insns.get(cur[-1])
                    self.fall[cur[0]] = cur[-1] + (last.size if last else 2)
                cur = None

    def profiles(self, region_index=-1):
        """{layer: Profile} of one region (layer None: outside any op), plus the total under key 'total'."""
        _, counts = self.regions[region_index]
        costs = {}
        out, total = {}, Profile()
        for layer, per in counts.items():
            prof = Profile()
            for pc, (runs, taken) in per.items():
                cost = costs.get(pc)
                if cost is None:
                    cost = costs[pc] = block_cost(self.dis, self.blocks[pc])
                prof.add(cost, runs, taken if cost.ends_in_branch else 0)
            out[layer] = prof
            total.merge(prof)
        out["total"] = total
        return out


@contextmanager
def log_fifo(counter):
    """A FIFO for QEMU's -D; a thread feeds what QEMU writes to counter. Yields the FIFO's path."""
    d = tempfile.mkdtemp(prefix="tinymlaas-m4trace-")
    path = os.path.join(d, "qemu.log")
    os.mkfifo(path)
    errors = []

    def read():
        try:
            with open(path, "r", errors="replace") as f:
                counter.feed(f)
        except Exception as e:  # noqa: BLE001 -- re-raised in the caller's thread
            errors.append(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        yield path
    finally:
        t.join(timeout=0.5)
        if t.is_alive():  # QEMU may have exited without opening the FIFO: let the reader's open() return
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            t.join(timeout=120)
        os.unlink(path)
        os.rmdir(d)
    if errors:
        raise errors[0]


def profile_elf(elf, entries, timeout=60):
    """Run a semihosted ELF to its exit under QEMU (mps2-an386) and profile the regions of `entries`."""
    from ..devices.qemu import qemu_binary

    counter = BlockCounter(Disassembly(elf), entries)
    with log_fifo(counter) as fifo:
        subprocess.run([qemu_binary(), "-M", "mps2-an386", "-nographic", "-semihosting", "-kernel", str(elf),
                        "-d", "in_asm,exec,nochain", "-D", fifo], check=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return counter


def profile_inference(blob, inputs, board="mps2-an386", kernels="dsp", elf=None, runs=1):
    """Install `blob` on the firmware under QEMU and profile `runs` inferences of `inputs` (one array per graph
    input) in a row: the first widens CONV_2D weights into the scratch and keeps them (docs/c-runtime.md), the
    later ones are the device's steady state. Returns (BlockCounter, the last outputs' bytes); counter.profiles(k)
    has one Profile per layer of inference k and the total."""
    from ..devices.qemu import QemuDevice, _blob_io, build_firmware, encode_inputs

    elf = elf or build_firmware(board, kernels)
    counter = BlockCounter(Disassembly(elf), {"tml_invoke": "invoke"}, layer_hook="profile_op")
    ins, _ = _blob_io(blob)
    with log_fifo(counter) as fifo:
        with QemuDevice(board, elf=elf, icount=False, timeout=120, qemu_args=["-d", "in_asm,nochain", "-D", fifo]) as dev:
            dev.link.install(blob)
            for _ in range(runs):
                out, _ = dev.link.infer(encode_inputs(ins, inputs), timeout=600, around_invoke=lambda on: dev.monitor(
                    "log in_asm,nochain" + (",exec" if on else "")))
    if len(counter.regions) != runs:
        raise RuntimeError("expected %d tml_invoke regions in QEMU's execution log, saw %d" % (runs, len(counter.regions)))
    return counter, out
