"""Signed installs on the bare-metal firmware under QEMU (docs/firmware.md, "Signed installs"): COMMIT carries the
model's COSE_Sign1 manifest, and the firmware installs only what a key of its trust table signed, for its vendor
and class, for exactly the blob it received, with a sequence number above the one it installed last. Every refusal
is a REJECTED NAK with the reason, and the previous model keeps answering inferences."""

import hashlib
import json

import pytest

from tinymlaas.devices.firmware_trust import DevSigner
from tinymlaas.devices.qemu import QemuDevice
from tinymlaas.devices.uart_protocol import REQ_BEGIN, REQ_CHUNK, REQ_COMMIT, Nak, encode_frame
from tinymlaas.paths import VECTORS
from tinymlaas.signing import Manifest, generate_key, sign_manifest

BOARDS = ["mps2-an386", "stm32f4"]


def vector(name):
    entry = next(m for m in json.loads((VECTORS / "manifest.json").read_text())["models"] if m["name"] == name)
    blob = (VECTORS / entry["blob"]).read_bytes()
    n_in, n_out = sum(entry["input_bytes"]), sum(entry["output_bytes"])
    x = (VECTORS / entry["inputs"]).read_bytes()[:n_in]
    y = (VECTORS / entry["outputs"]).read_bytes()[:n_out]
    return blob, x, y


def flipped(data, index):
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def refused(link, blob, envelope):
    with pytest.raises(Nak) as e:
        link.install(blob, envelope)
    assert e.value.name == "REJECTED" and e.value.request == REQ_COMMIT, e.value
    return e.value.reason


@pytest.mark.parametrize("board", BOARDS)
def test_only_signed_newer_installs_for_this_device_are_accepted(board, tmp_path):
    old, x_old, y_old = vector("conv_same_stride2")
    new, x_new, y_new = vector("softmax_rows")
    with QemuDevice(board) as dev:
        link, dev_key = dev.link, dev.signer
        caps = dev.caps
        assert caps["sequence"] == "none" and caps["anchors"] == dev_key.signer.key_id.hex()
        assert (caps["vendor"], caps["class"]) == (dev_key.vendor_id.hex(), dev_key.class_id.hex())

        summary = link.install(old, dev_key.envelope(old, sequence=100))
        assert "sequence=100" in summary and link.caps()["sequence"] == 100
        assert link.infer(x_old)[0] == y_old
        model = link.caps()["model"]

        stranger = generate_key(tmp_path / "stranger.pem")
        manifest_of_new = dev_key.envelope(new, sequence=200)
        payload = Manifest(**_fields(dev_key, new, 200)).encode()
        at_payload = manifest_of_new.index(payload)
        cases = [
            ("unknown key", new, sign_manifest(Manifest(**_fields(dev_key, new, 200)), stranger)),
            ("rollback", new, dev_key.envelope(new, sequence=99)),            # an older package replayed
            ("rollback", new, dev_key.envelope(new, sequence=100)),           # same number, another blob
            ("wrong device class", new, dev_key.envelope(new, sequence=200, class_id=bytes(16))),
            ("wrong vendor", new, dev_key.envelope(new, sequence=200, vendor_id=bytes(16))),
            ("wrong component", new, dev_key.envelope(new, sequence=200, component="firmware")),
            ("bad signature", new, flipped(manifest_of_new, len(manifest_of_new) - 1)),   # in the signature
            ("bad signature", new, flipped(manifest_of_new, at_payload + len(payload) // 2)),  # in the manifest
            ("blob digest does not match the manifest", flipped(new, len(new) - 1), manifest_of_new),  # in the blob
            ("blob size does not match the manifest", new, dev_key.envelope(old, sequence=200)),
            ("malformed COSE_Sign1", new, manifest_of_new[:-1]),
            ("unsigned install", new, b""),
        ]
        for reason, blob, envelope in cases:
            got = refused(link, blob, envelope)
            assert got.startswith(reason), (reason, got)
            # the previous model is still the one answering, and the anti-rollback state did not move
            assert link.infer(x_old)[0] == y_old, reason
            caps = link.caps()
            assert (caps["model"], caps["sequence"]) == (model, 100), reason

        assert "sequence=100" in link.install(old, dev_key.envelope(old, sequence=100))  # the same package again
        assert "sequence=200" in link.install(new, manifest_of_new)
        assert link.infer(x_new)[0] == y_new

        # a reset (RAM powered): no model any more, but the sequence number stays; the old package is refused
        dev.reset()
        caps = link.wait_boot()
        assert (caps["model"], caps["sequence"]) == ("none", 200)
        assert refused(link, old, dev_key.envelope(old, sequence=150)) == "rollback"
        assert "sequence=201" in link.install(old, dev_key.envelope(old, sequence=201))
        assert link.infer(x_old)[0] == y_old


def _fields(dev_key, blob, sequence):
    """Manifest fields for `blob` (vendor and class: the development build's, or none given without dev_key)."""
    return dict(sequence=sequence, vendor_id=dev_key.vendor_id if dev_key else bytes(16),
                class_id=dev_key.class_id if dev_key else bytes(16), component="model",
                blob_sha256=hashlib.sha256(blob).digest(), blob_bytes=len(blob), name="dev-build", version="0",
                vectors_sha256=hashlib.sha256(b"").digest())


def test_verification_cost_under_qemu():
    """COMMIT's signature check in Cortex-M4 instructions (QEMU -icount: SysTick cycles x 1e9 / 25 MHz) and
    stack, as the firmware reports them: inside the issue's targets (10 M instructions, 4 KB)."""
    blob, _, _ = vector("conv_same_stride2")
    with QemuDevice("mps2-an386") as dev:
        words = dict(w.partition("=")[::2] for w in dev.link.install(blob).split()[1:])
    instructions = dev.instructions(int(words["verify_cycles"]))
    assert 5_000_000 < instructions < 10_000_000, instructions
    assert 1_000 < int(words["verify_stack"]) < 4096, words


COPROC_SCRIPT = """
import os, socket, sys
sys.path.insert(0, %r)
from tinyml import coproc
from tinyml.errors import BlobError

s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
s.settimeout(1)
link = coproc.Link(s)


def run(model, x):
    model.input_buffer(0)[:] = x
    model.invoke()
    return bytes(model.output_buffer(0)).hex()


d = %r


def remote(name, n):  # the blob ends the file; the envelope comes from the package's header
    path = d + "/" + name
    return coproc.RemoteModel(link, path, os.stat(path)[6] - n, n)


good = remote("good.pkg", %d)
print("installed", good.installed.split()[0], link.caps()["sequence"])
print("out", run(good, bytes.fromhex(%r)))
for name in ("other-class.pkg", "v1.pkg"):
    try:
        remote(name, %d)  # another model, so that it must be installed
    except BlobError as e:
        print("refused", str(e))
print("out", run(good, bytes.fromhex(%r)))
"""


def package_v2(blob, envelope, version=2):
    """The parts of an install package of version 2 that the co-processor path reads (docs/package-format.md):
    header with envelope_bytes in its last word, the envelope after it; the blob follows (here, directly)."""
    import struct

    head = b"TMLP" + struct.pack("<HHIIIIII", version, 32, 0, 0, len(blob), 0, 0, len(envelope) if version > 1 else 0)
    return head + (envelope if version > 1 else b"") + blob


def test_the_coprocessor_path_sends_the_packages_signed_manifest(mpy_run, tmp_path):
    """tinyml/coproc.py (MicroPython) installs on the STM32 firmware with the envelope of the package: accepted when
    signed for the co-processor, refused (its reason in BlobError) for another class or without a signature, and
    the installed model keeps answering."""
    from tinymlaas.paths import INFERENCE_MODULE

    blob, x, y = vector("conv_same_stride2")
    other, _, _ = vector("softmax_rows")
    with QemuDevice("stm32f4", connect=False) as qemu:
        key = qemu.signer
        good = package_v2(blob, key.envelope(blob, sequence=7))
        (tmp_path / "good.pkg").write_bytes(good)
        (tmp_path / "other-class.pkg").write_bytes(package_v2(other, key.envelope(other, sequence=8,
                                                                                  class_id=bytes(16))))
        (tmp_path / "v1.pkg").write_bytes(package_v2(other, b"", version=1))
        code = COPROC_SCRIPT % (str(INFERENCE_MODULE), qemu.port, str(tmp_path), len(blob), x.hex(), len(other),
                                x.hex())
        out = mpy_run(code, timeout=300).splitlines()
    assert out[0] == "installed installed 7" and out[1] == "out " + y.hex()
    assert out[2] == "refused co-processor refused the blob: wrong device class"
    assert out[3].startswith("refused co-processor refused the blob: unsigned install")
    assert out[4] == "out " + y.hex()


def test_a_build_trusts_the_owners_keys_and_class(tmp_path):
    """`make TRUST_ANCHOR="owner.pub next.pub" DEVICE_CLASS=...`: the firmware accepts manifests signed by either
    key (a rotation) for that class, and refuses the development key and the default class."""
    import subprocess
    import sys

    from tinymlaas.devices.firmware_trust import dev_signer
    from tinymlaas.paths import FIRMWARE
    from tinymlaas.signing import class_id, vendor_id

    owner, following = generate_key(tmp_path / "owner.pem"), generate_key(tmp_path / "next.pem")
    for name, key in (("owner.pub", owner), ("next.pub", following)):
        (tmp_path / name).write_bytes(key.public_pem())
    build = tmp_path / "build"
    proc = subprocess.run(["make", "-s", "-C", str(FIRMWARE), "BOARD=mps2-an386", "BUILD=%s" % build,
                           "TRUST_ANCHOR=%s %s" % (tmp_path / "owner.pub", tmp_path / "next.pub"),
                           "VENDOR_DOMAIN=example.com", "DEVICE_CLASS=sensor-v2", "PYTHON=" + sys.executable],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert dev_signer("mps2-an386", build) is None  # no development key in an owner's build
    blob, x, y = vector("conv_same_stride2")
    vendor = vendor_id("example.com")
    fields = dict(_fields(None, blob, 1), vendor_id=vendor, class_id=class_id(vendor, "sensor-v2"))
    with QemuDevice("mps2-an386", elf=build / "tinymlaas.elf") as dev:
        assert dev.signer is None
        assert dev.caps["anchors"] == "%s,%s" % (owner.key_id.hex(), following.key_id.hex())
        assert dev.caps["class"] == fields["class_id"].hex()
        dev_key = DevSigner(FIRMWARE.parent / "build" / "firmware" / "mps2-an386" / "dev-signing.pem",
                            board="mps2-an386")
        assert refused(dev.link, blob, sign_manifest(Manifest(**fields), dev_key.signer)) == "unknown key"
        assert refused(dev.link, blob, sign_manifest(Manifest(**dict(fields, class_id=dev_key.class_id)),
                                                     owner)) == "wrong device class"
        assert "sequence=1" in dev.link.install(blob, sign_manifest(Manifest(**fields), owner))
        assert "sequence=2" in dev.link.install(blob, sign_manifest(Manifest(**dict(fields, sequence=2)), following))
        assert dev.link.infer(x)[0] == y


def test_a_reset_during_a_signed_commit_never_lowers_the_sequence():
    """QEMU's system_reset at spread-out moments of a signed COMMIT (the first at once, during the ECDSA check; the
    last after its reply): the device comes back with the old sequence number or the new one, never lower, and
    then installs the next package normally. The RAM store's state, kept in RAM no section covers."""
    import time

    blob, x, y = vector("conv_same_stride2")
    with QemuDevice("mps2-an386") as dev:
        link, key = dev.link, dev.signer
        link.install(blob, key.envelope(blob, sequence=10))
        t0 = time.monotonic()
        link.install(blob, key.envelope(blob, sequence=11))
        install_s = time.monotonic() - t0
        seen, sequence = [], 11
        for k in range(7):
            link.request(REQ_BEGIN, blob[:64])
            link.request(REQ_CHUNK, (64).to_bytes(4, "little") + blob[64:])
            if k < 6:
                link.write_raw(encode_frame(REQ_COMMIT, 0x42, key.envelope(blob, sequence=sequence + 1)))
                time.sleep(install_s * k / 6)
            else:
                link.request(REQ_COMMIT, key.envelope(blob, sequence=sequence + 1))
            dev.reset()
            caps = link.wait_boot(timeout=30)
            assert caps["sequence"] in (sequence, sequence + 1), (k, caps["sequence"], sequence)
            seen.append(caps["sequence"] - sequence)
            sequence = caps["sequence"]
        assert "sequence=%d" % (sequence + 1) in link.install(blob, key.envelope(blob, sequence=sequence + 1))
        assert link.infer(x)[0] == y
    assert seen[0] == 0 and seen[-1] == 1, seen  # a reset inside the check keeps the old number, one after it the new
