"""A cycle-approximate Cortex-M4 model: the instruction timings of the Cortex-M4 Technical Reference Manual (Arm DDI
0439B, table 3-1 and section 3.3.2) applied to an execution profile (how often each translated block ran, and how
often its last instruction branched) taken from QEMU by tinymlaas.verify.m4trace.

Timings (cycles), with P the pipeline refill after a taken branch (the TRM gives 1-3: it depends on the target's
alignment and width and on whether the address was speculated; `p` below, 2 unless asked):
  data processing, MOVW/MOVT, extend, saturate, SIMD add, multiply and MAC of any width (MUL, MLA, MLS, SMULL, UMULL,
  SMLAL, SMLAxy, SMLAD, SMMULR, ...), IT, NOP                                                   1
  SDIV / UDIV                                                                                   12 (the TRM's 2-12:
                                                                                               early termination
                                                                                               is data dependent;
                                                                                               the upper bound)
  LDR/LDRB/LDRH/LDRSB/LDRSH/LDREX                                                               2, or 1 when it
                                                                                               directly follows a
                                                                                               single LDR whose
                                                                                               result it does not
                                                                                               use as an address
  STR/STRB/STRH with an immediate offset                                                        1 (TRM 3.3.2)
  STR with a register offset                                                                    2, or 1 after LDR
  LDRD / STRD                                                                                   3
  LDM/STM/PUSH/POP of N registers (VLDM/VSTM/VPUSH/VPOP: N words)                               1 + N
  VLDR / VSTR                                                                                   2
  VMLA/VMLS/VFMA/VFMS/VNMLA/VNMLS 3, VDIV/VSQRT 14, other FPU data processing                   1
  branch not taken                                                                              1
  B, BL, BX, BLX, CBZ/CBNZ taken; MOV/ADD to PC                                                 1 + P
  POP/LDM with PC                                                                               1 + N + P
  LDR PC                                                                                        2 + P
  TBB / TBH                                                                                     3 + P
Memory: every access zero-wait (SRAM; code and constant data in flash behind the STM32L4R5's ART accelerator at
120 MHz count as hits). Flash wait states on ART misses, unaligned-access penalties (+1/+2 cycles, invisible to a
block profile), interrupt entry/exit (12 cycles each) and conditional instructions skipped inside IT blocks
(counted as executed) are not modelled. The model is calibrated on hand-written kernels whose cycle counts follow
from these rules alone (tests/verify/test_m4cycles.py).
"""

import re
import subprocess
from dataclasses import dataclass

CONDS = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al"}
CLASSES = ("alu", "mul", "div", "load", "store", "ldst_multi", "branch", "fpu")

_LINE = re.compile(r"^\s*([0-9a-f]+):\t([0-9a-f]{4}(?: [0-9a-f]{4})?)\s*\t(\S+)\s*([^;@]*)")
_SYM = re.compile(r"^([0-9a-f]{8}) <(.+)>:$")


@dataclass(frozen=True)
class Insn:
    addr: int
    size: int
    mnemonic: str
    operands: str


class Disassembly:
    """Every Thumb instruction of an ELF (arm-none-eabi-objdump -d) and its functions' address ranges."""

    def __init__(self, elf):
        out = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True, check=True)
        self.insns = {}
        self.symbols = {}  # name -> start address
        starts = []
        for line in out.stdout.splitlines():
            m = _SYM.match(line)
            if m:
                addr = int(m.group(1), 16)
                self.symbols[m.group(2)] = addr
                starts.append((addr, m.group(2)))
                continue
            m = _LINE.match(line)
            if m:
                addr = int(m.group(1), 16)
                size = 2 if len(m.group(2)) == 4 else 4
                self.insns[addr] = Insn(addr, size, m.group(3), m.group(4).strip())
        starts.sort()
        self._starts = [a for a, _ in starts]
        self._names = [n for _, n in starts]

    def function_at(self, addr):
        """Name of the function (symbol) containing addr, or None."""
        import bisect

        i = bisect.bisect_right(self._starts, addr) - 1
        return self._names[i] if i >= 0 else None


def _base(mnemonic):
    """Mnemonic without width qualifier (.n/.w/.f32) and without the condition code an IT block adds."""
    m = mnemonic.split(".")[0].lower()
    if m in ("bls", "bhs", "blo", "bhi", "bne", "beq", "bcs", "bcc", "bmi", "bpl", "bvs", "bvc", "bge", "blt", "bgt",
             "ble", "bal"):
        return "bcond"
    return m


def _reglist_words(ops):
    """Words moved by an LDM/STM/PUSH/POP/VPUSH/VPOP register list like {r4, r5, r8-r11, lr} or {d8-d15}."""
    inner = ops[ops.index("{") + 1: ops.index("}")] if "{" in ops else ""
    n = 0
    for part in inner.split(","):
        part = part.strip()
        if not part:
            continue
        width = 2 if part.startswith("d") else 1
        if "-" in part:
            a, b = part.split("-")
            n += width * (int(b.strip()[1:]) - int(a.strip()[1:]) + 1)
        else:
            n += width
    return n


def _address_regs(ops):
    """Registers a load/store uses to form its address (inside the brackets)."""
    if "[" not in ops:
        return set()
    inner = ops[ops.index("[") + 1: ops.index("]")] if "]" in ops else ""
    return {r.strip().split()[0] for r in inner.split(",") if r.strip()}


def _first_reg(ops):
    return ops.split(",")[0].strip()


def _is_cond(m, prefix):
    return m.startswith(prefix) and m[len(prefix):] in CONDS


def classify(insn):
    """(class, cycles when it does not branch and is not pipelined, kind): kind is 'load' for a single load (the
    next access may pipeline behind it), 'store' for a single store, else ''. A taken branch adds P (block_cost)."""
    m, ops = _base(insn.mnemonic), insn.operands
    writes_pc = _first_reg(ops) == "pc"
    if m in ("b", "bl", "blx", "bx", "bcond") or _is_cond(m, "bx") or _is_cond(m, "bl"):
        return "branch", 1, ""
    if m in ("cbz", "cbnz"):
        return "branch", 1, ""
    if m in ("tbb", "tbh"):
        return "branch", 3, ""
    if m.startswith("ldm") or m.startswith("stm") or m in ("pop", "push") or _is_cond(m, "pop") or _is_cond(m, "push"):
        return "ldst_multi", 1 + _reglist_words(ops), ""
    if m in ("vpush", "vpop") or m.startswith("vldm") or m.startswith("vstm"):
        return "ldst_multi", 1 + _reglist_words(ops), ""
    if m.startswith("ldrd") or m.startswith("strd"):
        return ("load" if m[0] == "l" else "store"), 3, ""
    if m.startswith("ldr") or m.startswith("ldrex"):
        return "load", 2, ("" if writes_pc else "load")
    if m.startswith("str"):
        reg_offset = any(r.startswith("r") or r in ("ip", "lr", "sl", "fp") for r in
                         [o.strip() for o in (ops[ops.index("[") + 1: ops.index("]")] if "]" in ops else "").split(",")[1:]])
        return "store", 2 if reg_offset else 1, "store"
    if m in ("sdiv", "udiv") or _is_cond(m, "sdiv") or _is_cond(m, "udiv"):
        return "div", 12, ""
    if m in ("vldr", "vstr"):
        return ("load" if m == "vldr" else "store"), 2, ""
    if m in ("vdiv", "vsqrt"):
        return "fpu", 14, ""
    if m in ("vmla", "vmls", "vfma", "vfms", "vnmla", "vnmls", "vfnma", "vfnms"):
        return "fpu", 3, ""
    if m.startswith("v"):
        return "fpu", 1, ""
    if "mul" in m or "mla" in m or "mls" in m or m.startswith("smla") or m.startswith("smua") or \
            m.startswith("smus") or m.startswith("smls") or m.startswith("usad"):
        return "mul", 1, ""
    return "alu", 1, ""


@dataclass
class BlockCost:
    """Static cost of one translated block: cycles when its last instruction does not branch, per class too."""
    insns: int
    cycles: int
    by_class: dict
    refill_if_taken: int  # pipeline refills (P each) added when the block ends in a taken branch
    ends_in_branch: bool
    fallthrough: int  # address after the block's last instruction


def block_cost(dis, addrs):
    """Cost of the straight-line run of instructions at `addrs` (a block QEMU translated)."""
    cycles, by_class, prev_load_dest = 0, dict.fromkeys(CLASSES, 0), None
    last = None
    for a in addrs:
        insn = dis.insns.get(a)
        if insn is None:  # not in the ELF's code (e.g. a literal pool QEMU decoded): count it as 1 cycle
            by_class["alu"] += 1
            cycles += 1
            prev_load_dest, last = None, None
            continue
        cls, c, kind = classify(insn)
        if kind in ("load", "store") and prev_load_dest is not None and prev_load_dest not in _address_regs(
                insn.operands) and c > 1:
            c -= 1  # pipelined behind the previous LDR (TRM 3.3.2)
        prev_load_dest = _first_reg(insn.operands) if kind == "load" else None
        cycles += c
        by_class[cls] += c
        last = insn
    ends = last is not None and (classify(last)[0] == "branch" or _first_reg(last.operands) == "pc" or
                                 (_base(last.mnemonic) == "pop" and "pc" in last.operands))
    fall = addrs[-1] + (dis.insns[addrs[-1]].size if addrs[-1] in dis.insns else 2)
    return BlockCost(len(addrs), cycles, by_class, 1 if ends else 0, ends, fall)


@dataclass
class Profile:
    """What ran in one region (an inference, one layer, one calibration kernel)."""
    instructions: int = 0
    base_cycles: int = 0  # cycles with every taken branch's refill left out
    taken: int = 0  # taken branches (each costs P more cycles)
    by_class: dict = None

    def __post_init__(self):
        if self.by_class is None:
            self.by_class = dict.fromkeys(CLASSES, 0)

    def add(self, cost, runs, taken):
        self.instructions += cost.insns * runs
        self.base_cycles += cost.cycles * runs
        self.taken += taken
        for k, v in cost.by_class.items():
            self.by_class[k] += v * runs

    def merge(self, other):
        self.instructions += other.instructions
        self.base_cycles += other.base_cycles
        self.taken += other.taken
        for k, v in other.by_class.items():
            self.by_class[k] += v

    def cycles(self, p=2):
        return self.base_cycles + p * self.taken

    def summary(self, macs=None, mhz=120, p=2):
        d = {"instructions": self.instructions, "cycles": self.cycles(p), "cycles_p1": self.cycles(1),
             "cycles_p3": self.cycles(3), "taken_branches": self.taken,
             "cycles_by_class": dict(self.by_class, branch_refill=p * self.taken),
             "ms_at_%dmhz" % mhz: self.cycles(p) / (mhz * 1e3)}
        if macs:
            d.update(macs=macs, mac_per_cycle=macs / self.cycles(p), mac_per_instruction=macs / self.instructions)
        return d
