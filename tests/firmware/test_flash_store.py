"""The STM32F4 flash model store and state records: the firmware's own C (slot_flash.c, nvstate.c + the flash
driver) on the host, against the register-level model of the STM32F405 flash interface in flash_sim.c (the stand-in
for hardware: QEMU's STM32 flash is ROM without an interface), and the slot images the host writes for factory
provisioning."""

import struct
import subprocess

import pytest

from tinymlaas.boards.stm32_slots import CAPACITY, SlotError, slot_image
from tinymlaas.paths import FIRMWARE, REPO, VECTORS

TEST = REPO / "build" / "firmware" / "host" / "flash_store_test"
# One worker builds and runs it: two `make store-test` at once let one exec the binary while the other's linker
# was still writing it (EACCES).
pytestmark = pytest.mark.xdist_group("flash_store")
BLOBS = [VECTORS / n for n in ("softmax_rows.blob", "float_io_cnn.blob", "conv_same_stride2.blob")]


@pytest.fixture(scope="module")
def store_test():
    proc = subprocess.run(["make", "-s", "-C", str(FIRMWARE), "store-test"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return TEST


def boot(store_test, tmp_path, a=None, b=None, sequence=False):
    """Boot the store from slot images (bytes or None for erased) -> (slot, blob bytes, refused), and with
    sequence=True the anti-rollback sequence number the store reports (None: no state)."""
    args = []
    for name, img in (("a.bin", a), ("b.bin", b)):
        if img is None:
            args.append("-")
        else:
            (tmp_path / name).write_bytes(img)
            args.append(str(tmp_path / name))
    proc = subprocess.run([str(store_test), "--boot"] + args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, slot, n, _, refused, _, seq = proc.stdout.split()
    return (slot, int(n), int(refused)) + ((None if seq == "none" else int(seq),) if sequence else ())


def test_store_survives_reboots_bad_blobs_and_a_power_cut_at_every_flash_operation(store_test):
    proc = subprocess.run([str(store_test)] + [str(p) for p in BLOBS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert out.rstrip().endswith(", 0 failed"), out
    cut = next(line for line in out.splitlines() if line.startswith("ok power cut at every install operation"))
    ops, cuts = [int(w) for w in cut.split(": ")[1].replace(",", "").split() if w.isdigit()][:2]
    # installing a 2,704-byte blob: 3 sector erases, the record, 676 blob words, the commit word
    assert ops == cuts and ops > len(BLOBS[1].read_bytes()) // 4
    assert "0 without a model" in cut and "sequence never below 5" in cut
    assert "falls back to the previous one" in out and "never brings back the older model" in out
    # the anti-rollback state (signed manifests' sequence numbers): kept by ERASE and by a boot-time fallback,
    # and no power cut during the install that erases the revoked newer model's slot lowers it
    assert "ok the store keeps the sequence number of the newest install" in out
    assert "ok ERASE keeps the anti-rollback state" in out
    assert "ok the fallback keeps the revoked model's sequence number" in out
    # the firmware's state records (anchors, anchor sequence) in sectors 1-2: a cut at every operation of an update
    # (one sector erase, the record's words) leaves the old state or the new one
    state = next(line for line in out.splitlines() if "power cut at every operation of a state update" in line)
    ops = int(state.split(": ")[1].split()[0])
    assert state.startswith("ok ") and ops > 100 and "0 other" in state, state
    assert "ok the driver refuses to erase the code's first sector" in out
    fallback = next(line for line in out.splitlines() if "install after a fallback" in line)
    assert fallback.startswith("ok ") and "sequence never below 3" in fallback


def test_a_committed_image_from_the_host_boots_from_flash(store_test, tmp_path):
    blob = BLOBS[0].read_bytes()
    assert boot(store_test, tmp_path, a=slot_image(blob)) == ("A", len(blob), 0)
    assert boot(store_test, tmp_path, b=slot_image(blob)) == ("B", len(blob), 0)
    assert boot(store_test, tmp_path) == ("none", 0, 0)


def test_a_factory_image_carries_the_anti_rollback_state(store_test, tmp_path):
    """slot_image(installed=(sequence, digest)) writes a signed install's state: the board boots with it (a revoked
    slot keeps vouching for it), and an image without it vouches for nothing."""
    import hashlib

    old, new = BLOBS[0].read_bytes(), BLOBS[1].read_bytes()
    state = (1796200000123, hashlib.sha256(new).digest())
    assert boot(store_test, tmp_path, a=slot_image(new, installed=state), sequence=True) == ("A", len(new), 0,
                                                                                           state[0])
    assert boot(store_test, tmp_path, a=slot_image(new), sequence=True) == ("A", len(new), 0, None)
    revoked = bytearray(slot_image(new, seq=2, installed=state))
    revoked[20:24] = b"\0\0\0\0"
    assert boot(store_test, tmp_path, a=slot_image(old, seq=1, installed=(5, bytes(32))), b=bytes(revoked),
                sequence=True) == ("A", len(old), 0, state[0])
    with pytest.raises(SlotError, match="64-bit"):
        slot_image(new, installed=(1 << 64, bytes(32)))


def test_the_newest_committed_slot_wins(store_test, tmp_path):
    old, new = BLOBS[0].read_bytes(), BLOBS[1].read_bytes()
    assert boot(store_test, tmp_path, a=slot_image(old, seq=7), b=slot_image(new, seq=8)) == ("B", len(new), 0)
    assert boot(store_test, tmp_path, a=slot_image(new, seq=9), b=slot_image(old, seq=8)) == ("A", len(new), 0)


def test_an_uncommitted_or_revoked_slot_is_ignored(store_test, tmp_path):
    old, new = BLOBS[0].read_bytes(), BLOBS[1].read_bytes()
    uncommitted = slot_image(new, seq=2, committed=False)
    assert boot(store_test, tmp_path, a=slot_image(old, seq=1), b=uncommitted) == ("A", len(old), 0)
    revoked = bytearray(slot_image(new, seq=2))
    revoked[20:24] = b"\0\0\0\0"
    assert boot(store_test, tmp_path, a=slot_image(old, seq=1), b=bytes(revoked)) == ("A", len(old), 0)


def test_a_damaged_record_or_blob_falls_back(store_test, tmp_path):
    old, new = BLOBS[0].read_bytes(), BLOBS[1].read_bytes()
    bad_seq = bytearray(slot_image(new, seq=2))
    bad_seq[8:12] = struct.pack("<I", 0x12345678)  # ~seq no longer matches seq
    assert boot(store_test, tmp_path, a=slot_image(old, seq=1), b=bytes(bad_seq)) == ("A", len(old), 0)
    bad_blob = bytearray(slot_image(new, seq=2))
    bad_blob[256 + len(new) - 1] ^= 0x40  # the runtime's SHA-256 check refuses it
    assert boot(store_test, tmp_path, a=slot_image(old, seq=1), b=bytes(bad_blob)) == ("A", len(old), 1)
    assert boot(store_test, tmp_path, b=bytes(bad_blob)) == ("none", 0, 1)


def test_slot_image_refuses_what_the_firmware_would_not_boot():
    with pytest.raises(SlotError, match="not a valid blob"):
        slot_image(b"TMLB" + b"\0" * 100)
    blob = BLOBS[0].read_bytes()
    with pytest.raises(SlotError, match="holds %d" % CAPACITY):
        slot_image(blob + b"\0" * CAPACITY)


def test_slot_image_command_writes_what_the_firmware_boots(store_test, tmp_path):
    from tinymlaas.paths import mlperf_model

    out = tmp_path / "kws.slot"
    proc = subprocess.run(["tinymlaas", "slot-image", str(mlperf_model("kws")), "-o", str(out), "--slot", "b"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "st-flash write %s 0x080A0000" % out in proc.stdout
    slot, n, refused = boot(store_test, tmp_path, b=out.read_bytes())
    assert (slot, refused) == ("B", 0) and n == len(out.read_bytes()) - 256

    proc = subprocess.run(["tinymlaas", "slot-image", str(tmp_path / "missing.tflite"), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such model file" in proc.stderr
