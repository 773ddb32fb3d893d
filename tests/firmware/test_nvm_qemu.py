"""The firmware's non-volatile state under QEMU (docs/firmware.md, "Non-volatile state"): a semihosted image file
is the device's flash, kept across QEMU runs, so a QEMU run that ends is a power cut. QemuDevice(power_cut=N)
cuts the power at the N-th erase or program since boot, leaving that one half done. Checked: a power cut at every
flash write of a signed install leaves the old model active with its sequence number or the new one with its
own, never a lower number and never no model; the trust table follows signed anchor updates (the key rotation
the MicroPython device follows at /32770/0/29), refusing what it must with the MicroPython device's and the
host's words, keeps them across power cuts and through a cut at every write of an update."""

import hashlib
import json
import shutil

import pytest

from tinymlaas.devices.qemu import QemuDevice
from tinymlaas.devices.uart_protocol import Nak, ProtocolError
from tinymlaas.paths import VECTORS
from tinymlaas.signing import Manifest, SignatureError, generate_key, sign_manifest
from tinymlaas.signing import anchors as host_anchors
from tinymlaas.signing.anchors import AnchorUpdate, sign_update


def vector(name):
    entry = next(m for m in json.loads((VECTORS / "manifest.json").read_text())["models"] if m["name"] == name)
    blob = (VECTORS / entry["blob"]).read_bytes()
    n_in, n_out = sum(entry["input_bytes"]), sum(entry["output_bytes"])
    return blob, (VECTORS / entry["inputs"]).read_bytes()[:n_in], (VECTORS / entry["outputs"]).read_bytes()[:n_out]


def cut_power(image, board, cut, request):
    """Boot from `image` with the power going at write `cut` since boot, make the request (link -> ...) -> True
    when QEMU stopped before answering it (a refusal would be a Nak, raised)."""
    with QemuDevice(board, nvm=image, power_cut=cut) as dev:
        try:
            request(dev.link)
        except Nak:
            raise
        except (ProtocolError, OSError):  # the link dies with QEMU
            pass
        else:
            return False
        dev.proc.wait(timeout=30)
        return True


def test_a_power_cut_at_every_flash_write_of_a_signed_install_keeps_a_whole_model_and_its_sequence(tmp_path):
    board = "mps2-an386"
    old, x_old, y_old = vector("conv_same_stride2")
    new, x_new, y_new = vector("softmax_rows")
    base = tmp_path / "base.nvm"
    with QemuDevice(board, nvm=base) as dev:
        key = dev.signer
        assert dev.caps["storage"] == "flash"
        dev.link.install(old, key.envelope(old, sequence=100))
        old_state = (dev.link.caps()["model"], 100)
    env_new = key.envelope(new, sequence=200)
    trial = tmp_path / "trial.nvm"
    shutil.copy(base, trial)
    with QemuDevice(board, nvm=trial) as dev:  # a power cut (QEMU ended) kept the model and its number
        assert (dev.caps["model"], dev.caps["sequence"]) == old_state
        assert dev.link.infer(x_old)[0] == y_old
        dev.link.install(new, env_new)
        caps = dev.link.caps()
        writes, new_state = caps["nvm_writes"], (caps["model"], 200)
    assert writes >= 5 + len(new) // 1024  # erase, record, header, every chunk, manifest, commit word
    for cut in range(1, writes + 1):
        image = tmp_path / ("cut%d.nvm" % cut)
        shutil.copy(base, image)
        assert cut_power(image, board, cut, lambda link: link.install(new, env_new)), cut
        with QemuDevice(board, nvm=image) as dev:
            # the commit word is the last write, and a half-programmed one does not count: the old model, whole
            assert (dev.caps["model"], dev.caps["sequence"]) == old_state, cut
            assert dev.link.infer(x_old)[0] == y_old, cut
            if cut == 1:  # and the install then goes through
                assert "sequence=200" in dev.link.install(new, env_new) and dev.link.infer(x_new)[0] == y_new
    with QemuDevice(board, nvm=trial) as dev:  # after the whole install: the new model, and nothing older
        assert (dev.caps["model"], dev.caps["sequence"]) == new_state and dev.link.infer(x_new)[0] == y_new
        with pytest.raises(Nak, match="rollback"):
            dev.link.install(old, key.envelope(old, sequence=150))


def test_the_ram_store_keeps_its_sequence_number_through_power_cuts(tmp_path):
    """STM32 under QEMU: models stay in RAM (lost with the power), the anti-rollback state goes to the image's
    alternating records before the model becomes active: no cut lowers it."""
    board = "stm32f4"
    blob, x, y = vector("conv_same_stride2")
    base = tmp_path / "base.nvm"
    with QemuDevice(board, nvm=base) as dev:
        key = dev.signer
        assert dev.caps["storage"] == "ram"
        dev.link.install(blob, key.envelope(blob, sequence=100))
        writes = dev.link.caps()["nvm_writes"]
    assert writes == 2  # one erase and one program of a state record
    env = key.envelope(blob, sequence=200)
    after = []
    for cut in range(1, writes + 1):
        image = tmp_path / ("cut%d.nvm" % cut)
        shutil.copy(base, image)
        assert cut_power(image, board, cut, lambda link: link.install(blob, env))
        with QemuDevice(board, nvm=image) as dev:
            now = (dev.caps["model"], dev.caps["sequence"])
            assert now == ("none", 100), (cut, now)  # the half-written record is ignored; the other one holds
            assert "sequence=200" in dev.link.install(blob, env) and dev.link.infer(x)[0] == y
        with QemuDevice(board, nvm=image) as dev:
            after.append((dev.caps["model"], dev.caps["sequence"]))
            with pytest.raises(Nak, match="rollback"):
                dev.link.install(blob, key.envelope(blob, sequence=150))
    assert after == [("none", 200)] * writes


def host_verdict(update_env, anchors, sequence, vendor):
    """The host's rule for the same update (signing.anchors: MicroPython's words) -> ("ok", kids) or the reason."""
    try:
        new, _ = host_anchors.apply(anchors, sequence, host_anchors.verify_update(update_env, anchors), vendor)
    except SignatureError as e:
        return e.reason
    return "ok"


def take(dev, envelope, instructions=None):
    """An anchor update -> ("ok", kids, anchor sequence) or the refusal; instructions: a list to add the Cortex-M4
    instructions of the check and the write to (exact under -icount)."""
    try:
        words = dict(w.partition("=")[::2] for w in dev.link.update_anchors(envelope).split())
    except Nak as e:
        assert e.name == "REJECTED", e
        return e.reason
    if instructions is not None:
        instructions.append(dev.instructions(int(words["cycles"])))
    return "ok", words["anchors"].split(","), int(words["anchor_sequence"])


@pytest.mark.parametrize("board", ["mps2-an386", "stm32f4"])
def test_the_trust_table_follows_signed_anchor_updates_and_keeps_them_through_power_cuts(board, tmp_path):
    blob, x, y = vector("conv_same_stride2")
    image = tmp_path / "dev.nvm"
    keys = [generate_key(tmp_path / ("k%d.pem" % i)) for i in range(9)]
    stranger = generate_key(tmp_path / "stranger.pem")
    with QemuDevice(board, nvm=image) as dev:
        dev_key = dev.signer
        k0, vendor = dev_key.signer, dev_key.vendor_id
        anchors = {k0.key_id: k0.public_point}  # what the device trusts, by the host's rule
        assert dev.caps["anchors"] == k0.key_id.hex() and dev.caps["anchor_sequence"] == 0

        def signed_by(signer, sequence):
            return sign_manifest(Manifest(sequence=sequence, vendor_id=vendor, class_id=dev_key.class_id,
                                          component="model", blob_sha256=hashlib.sha256(blob).digest(),
                                          blob_bytes=len(blob), name="m", version="1",
                                          vectors_sha256=hashlib.sha256(b"").digest()), signer)

        with pytest.raises(Nak, match="unknown key"):
            dev.link.install(blob, signed_by(keys[1], 1))
        good = sign_update(AnchorUpdate(1, vendor, keys[1].public_point), k0)
        off_curve = bytearray(keys[1].public_point)
        off_curve[-1] ^= 1
        refusals = [
            ("unknown key", sign_update(AnchorUpdate(1, vendor, keys[1].public_point), stranger)),
            ("bad signature", good[:-1] + bytes([good[-1] ^ 1])),
            ("wrong vendor", sign_update(AnchorUpdate(1, bytes(16), keys[1].public_point), k0)),
            ("malformed anchor update", sign_update(AnchorUpdate(1, vendor, bytes(off_curve)), k0)),
            ("malformed anchor update", sign_update(AnchorUpdate(1, vendor, keys[1].public_point,
                                                                 keys[1].key_id), k0)),
            ("malformed COSE_Sign1", good[:-3]),
        ]
        for reason, env in refusals:
            assert take(dev, env) == reason
            if reason != "malformed COSE_Sign1":
                assert host_verdict(env, anchors, 0, vendor) == reason
        assert dev.link.caps()["anchors"] == k0.key_id.hex()  # nothing changed

        assert take(dev, good) == ("ok", [k0.key_id.hex(), keys[1].key_id.hex()], 1)
        anchors[keys[1].key_id] = keys[1].public_point
        assert take(dev, good) == "rollback" == host_verdict(good, anchors, 1, vendor)
        assert "sequence=1" in dev.link.install(blob, signed_by(keys[1], 1))
        # a rotation that revokes the old key: its packages are refused from then on
        revoking = sign_update(AnchorUpdate(2, vendor, keys[2].public_point, k0.key_id), keys[1])
        assert take(dev, revoking) == ("ok", [keys[1].key_id.hex(), keys[2].key_id.hex()], 2)
        with pytest.raises(Nak, match="unknown key"):
            dev.link.install(blob, signed_by(k0, 2))
        assert "sequence=2" in dev.link.install(blob, signed_by(keys[2], 2))
        assert dev.link.infer(x)[0] == y
        trusted = [keys[1].key_id.hex(), keys[2].key_id.hex()]

    for seq in (3, 4):  # a power cut at each write of an update: the old set or the new one
        with QemuDevice(board, nvm=image) as dev:
            writes = dev.caps["nvm_writes"]
            assert dev.caps["anchors"].split(",") == trusted and dev.caps["anchor_sequence"] == seq - 1
        update = sign_update(AnchorUpdate(seq, vendor, keys[seq].public_point), keys[2])
        for cut in (1, 2):
            copy = tmp_path / ("cut-%d-%d.nvm" % (seq, cut))
            shutil.copy(image, copy)
            assert cut_power(copy, board, writes + cut, lambda link: link.update_anchors(update))
            with QemuDevice(board, nvm=copy) as dev:
                assert dev.caps["anchors"].split(",") == trusted and dev.caps["anchor_sequence"] == seq - 1
        with QemuDevice(board, nvm=image) as dev:
            assert take(dev, update)[0] == "ok"
        trusted.append(keys[seq].key_id.hex())

    with QemuDevice(board, nvm=image) as dev:  # up to 8 anchors, as on the MicroPython device
        cost = []
        for seq in range(5, 9):
            assert take(dev, sign_update(AnchorUpdate(seq, vendor, keys[seq].public_point), keys[2]), cost)[0] == "ok"
        assert all(5_000_000 < n < 10_000_000 for n in cost), cost  # one ECDSA verification, the bound
        assert take(dev, sign_update(AnchorUpdate(9, vendor, stranger.public_point), keys[2])) == "too many anchors"
        assert len(dev.link.caps()["anchors"].split(",")) == 8
        assert "sequence=3" in dev.link.install(blob, signed_by(keys[8], 3))


def test_without_non_volatile_memory_an_anchor_update_is_refused_and_changes_nothing():
    with QemuDevice("stm32f4") as dev:
        key = dev.signer
        update = sign_update(AnchorUpdate(1, key.vendor_id, generate_key_point()), key.signer)
        with pytest.raises(Nak) as e:
            dev.link.update_anchors(update)
        assert e.value.name == "STORAGE" and "no non-volatile memory" in e.value.reason
        assert dev.link.caps()["anchors"] == key.signer.key_id.hex()


def generate_key_point():
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.X962,
                                                                             PublicFormat.UncompressedPoint)
