"""Fit-to-device selection: which compiled variant of a model a device can run, and why the others cannot.

Capabilities are what the device reported in its TinyML LwM2M object (docs/tinyml-object.md), normalised to:
    runtime        "tinyml-mpy" | "tinyml-c" | "tflm"
    abi            blob kernel ABI the runtime implements (int)
    ops            op names the runtime supports
    heap_free      free heap, bytes
    largest_block  largest contiguous free heap block, bytes (the arena is one allocation); for a co-processor
                   (the bare-metal firmware on a UART, kernel flavour "c-coprocessor") its whole arena
    coprocessor    True when the model runs on such a co-processor: no heap margin, no runtime overhead
    fs_free        free bytes on the model filesystem / slot
    mac_rate       measured MAC/s of the device's kernels (optional; from its self-test benchmark)
    model_sha256   the blob the device runs now (absent when it runs none)
    model_arena    that model's arena: the heap figures above are taken with it loaded

What fits a device that runs a model: the installer unloads the running model before it loads the new one, so the
heap a new variant gets is the largest free block *plus* what the running model holds (its arena and its share of
the runtime's RAM). The variant that runs now fits by that rule whatever the figures say: it runs in that heap.
"""

from dataclasses import dataclass, field

# What a loaded model costs besides its arena: the runtime's fixed scratch (accumulators, im2col patch, weight
# streaming buffer), its tensor and op tables and the validator it imports. Measured per word size in
# docs/runtime-micropython.md ("RAM beyond the arena": 20.8-28.7 KB on a 32-bit Cortex-M, 34-47 KB on the 64-bit
# unix port), rounded up to the typical model; the C runtime needs only its per-call stack; TFLM its
# interpreter and persistent buffers beside the measured arena.
RUNTIME_OVERHEAD_BYTES = {
    ("tinyml-mpy", 32): 24 * 1024, ("tinyml-mpy", 64): 40 * 1024,
    ("tinyml-c", 32): 1024, ("tinyml-c", 64): 2048,
    ("tflm", 32): 4 * 1024, ("tflm", 64): 8 * 1024,
}
_64BIT = ("x86_64", "x64", "amd64", "aarch64", "arm64", "riscv64")


def word_bits(caps):
    arch = str(caps.get("arch") or "").lower()
    return 64 if any(a in arch for a in _64BIT) else 32


def runtime_overhead(caps):
    return RUNTIME_OVERHEAD_BYTES.get((caps.get("runtime"), word_bits(caps)), 0)
# Heap kept free for the LwM2M client and the application after the model is loaded.
RAM_MARGIN_BYTES = 8 * 1024
# Install needs the new package staged beside the active one, plus room for the filesystem's own metadata.
FLASH_MARGIN_BYTES = 4 * 1024
# Which artifact kinds each runtime executes.
RUNTIME_ARTIFACTS = {"tinyml-mpy": {"tmlb"}, "tinyml-c": {"tmlb"}, "tflm": {"tflite"}}


@dataclass
class Verdict:
    variant: dict
    fits: bool
    reasons: list = field(default_factory=list)   # why it does not fit (empty when it fits)
    ram_needed: int = None       # None when the variant was rejected before its costs mattered (wrong runtime)
    ram_available: int = None
    flash_needed: int = None
    flash_available: int = None
    est_latency_ms: float = None
    chosen: bool = False
    running: bool = False        # the device runs this variant now

    def summary(self):
        now = "runs on the device now" if self.running else None
        if self.chosen:
            return "chosen: %s (RAM %d of %d B, flash %d of %d B)%s" % (
                now or "fits", self.ram_needed, self.ram_available, self.flash_needed, self.flash_available,
                "" if self.est_latency_ms is None else ", ~%.0f ms" % self.est_latency_ms)
        if self.fits:
            return "%s, not chosen (a more accurate or smaller variant fits)" % (now or "fits")
        return "rejected: " + "; ".join(self.reasons)


def package_overhead(variant):
    # The install package adds a header, JSON metadata and golden vectors; bounded by what package.py writes.
    return 4096


def judge(variant, caps, latency_budget_ms=None):
    """Check one variant against one device's capabilities."""
    v = Verdict(variant=variant, fits=True)
    runtime = caps.get("runtime")
    kind = variant.get("artifact_kind")
    if kind not in RUNTIME_ARTIFACTS.get(runtime, ()):
        # Nothing else about this variant matters to this device.
        v.reasons.append("a %s artifact (runtime %s) does not run on the device's %s runtime"
                         % (kind, variant.get("runtime"), runtime or "unknown"))
        v.fits = False
        return v
    feats = variant.get("features") or {}
    if "abi" in feats and caps.get("abi") is not None and feats["abi"] != caps["abi"]:
        v.reasons.append("needs blob ABI %s, device runtime implements ABI %s" % (feats["abi"], caps["abi"]))
    if feats.get("mpy_abi") and caps.get("mpy_abi") and feats["mpy_abi"] != caps["mpy_abi"]:
        v.reasons.append(".mpy ABI %s does not match the device's %s" % (feats["mpy_abi"], caps["mpy_abi"]))
    dev_ops = caps.get("ops")
    if dev_ops:
        missing = sorted(set(variant.get("ops") or ()) - set(dev_ops))
        if missing:
            v.reasons.append("device runtime lacks op(s) %s" % ", ".join(missing))
    v.running = bool(caps.get("model_sha256")) and variant.get("artifact_sha256") == caps["model_sha256"]
    block = caps.get("largest_block") or caps.get("heap_free") or 0
    if caps.get("coprocessor"):
        # a co-processor's arena holds the model's tensors and nothing else (the firmware's own RAM is apart)
        v.ram_needed, v.ram_available = int(variant["ram_bytes"]), int(block)
        why = "needs an arena of %d B, the co-processor has %d B" % (v.ram_needed, v.ram_available)
    else:
        freed = int(caps.get("model_arena") or 0)
        freed += runtime_overhead(caps) if freed else 0
        v.ram_needed = int(variant["ram_bytes"]) + runtime_overhead(caps)
        v.ram_available = max(0, int(block) + freed - RAM_MARGIN_BYTES)
        why = ("needs %d B of RAM (arena %d + %d-bit runtime %d), device has %d B (largest free block %d%s - margin %d)"
               % (v.ram_needed, variant["ram_bytes"], word_bits(caps), v.ram_needed - variant["ram_bytes"],
                  v.ram_available, block, " + %d the running model frees" % freed if freed else "", RAM_MARGIN_BYTES))
    if v.ram_needed > v.ram_available and not v.running:
        v.reasons.append(why)
    v.flash_needed = int(variant["flash_bytes"]) + package_overhead(variant)
    v.flash_available = max(0, int(caps.get("fs_free") or 0) - FLASH_MARGIN_BYTES)
    if v.flash_needed > v.flash_available and not v.running:
        v.reasons.append("needs %d B of flash for the package, device has %d B free (- margin %d)"
                         % (v.flash_needed, caps.get("fs_free") or 0, FLASH_MARGIN_BYTES))
    rate = caps.get("mac_rate")
    if rate:
        v.est_latency_ms = 1000.0 * variant["macs"] / rate
        if latency_budget_ms is not None and v.est_latency_ms > latency_budget_ms:
            v.reasons.append("estimated %.0f ms per inference exceeds the %.0f ms budget" % (v.est_latency_ms, latency_budget_ms))
    elif latency_budget_ms is not None:
        v.reasons.append("latency budget given but the device has not reported a benchmark (mac_rate)")
    # a device that would refuse the signed package (unknown key, other vendor or class): the service knows it
    # from what the device reports (service/signing.py) and says so before sending anything
    if not v.running:
        v.reasons.extend(((caps.get("signing") or {}).get("refusals") or {}).get(variant.get("runtime"), ()))
    v.fits = not v.reasons
    return v


def choose(variants, caps, latency_budget_ms=None):
    """Judge every variant; mark and return (chosen or None, verdicts). Most accurate fitting variant wins;
    ties go to the one needing less RAM, then less flash."""
    verdicts = [judge(v, caps, latency_budget_ms) for v in variants]
    fitting = [v for v in verdicts if v.fits]
    if not fitting:
        return None, verdicts
    # fitting: costs known; among equals the running variant wins (nothing to install)
    best = max(fitting, key=lambda v: (v.variant.get("accuracy") or 0.0, v.running, -v.ram_needed, -v.flash_needed))
    best.chosen = True
    return best, verdicts
