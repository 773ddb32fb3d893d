"""The signed envelope through the three readers: host (tinymlaas.signing), C (tml_cose.c, ASan + UBSan) and
MicroPython (tinyml/cose.py). Crafted refusals get the same reason from all three; every truncation of a valid
envelope is refused; the anti-rollback and device-class rule (admit) is the same on both devices. Kind "c-module":
MicroPython's cose.verify dispatching to `_tinyml.cose_verify` (the firmware's C module when the binary has it, else
its stand-in), so the dispatch converts results and refusals without changing a word."""

import pytest

from tinymlaas.signing import ManifestError, verify_manifest

import crypto_vectors as V
from envelopes import BLOB_SHA, CLASS, VENDOR, crafted, fixed_signer, manifest
from tinymlaas.signing import sign_manifest
from tinymlaas.signing import manifest as M

SIGNER, STRANGER = fixed_signer("device readers"), fixed_signer("stranger")
ANCHOR = "anchor " + (SIGNER.key_id + SIGNER.public_point).hex()
CRAFTED = crafted(SIGNER, STRANGER)


def host_answer(env):
    try:
        m = verify_manifest(env, {SIGNER.key_id: SIGNER.public_point})
    except ManifestError as e:
        return "refused " + e.reason
    return "ok %d %s %s" % (m.sequence, m.name, m.version)


@pytest.mark.parametrize("kind", ["c", "micropython", "c-module"])
def test_crafted_envelopes_same_answer_as_host(kind, tmp_path):
    lines = [ANCHOR] + ["cose " + (env.hex() or "-") for _, env, _ in CRAFTED]
    answers = V.run_lines(kind, lines, tmp_path)
    expected = [host_answer(env) for _, env, _ in CRAFTED]
    assert [a.split(" ", 1)[0] for a in expected] == ["ok" if r is None else "refused" for _, _, r in CRAFTED]
    assert list(zip([c[0] for c in CRAFTED], answers)) == list(zip([c[0] for c in CRAFTED], expected))


@pytest.mark.parametrize("kind", ["c", "micropython"])
def test_every_truncation_is_refused(kind, tmp_path):
    env = sign_manifest(manifest(), SIGNER)
    lines = [ANCHOR] + ["cose " + (env[:n].hex() or "-") for n in range(len(env))]
    lines += ["manifest " + (manifest().encode()[:n].hex() or "-") for n in range(len(manifest().encode()))]
    answers = V.run_lines(kind, lines, tmp_path)
    assert set(answers) == {"refused malformed COSE_Sign1", "refused malformed manifest"}


def admit_line(vendor, klass, installed, env):
    slot = "00" if installed is None else (installed[0].to_bytes(8, "big") + installed[1]).hex()
    return "admit %s %s %s %s" % (vendor.hex(), klass.hex(), slot, env.hex())


@pytest.mark.parametrize("kind", ["c", "micropython", "c-module"])
def test_admit_rule(kind, tmp_path):
    env = sign_manifest(manifest(sequence=7), SIGNER)
    other_class = M.class_id(VENDOR, "stm32f4")
    other_blob = bytes(32)
    cases = [
        ((VENDOR, CLASS, None), "admitted"),
        ((VENDOR, CLASS, (6, other_blob)), "admitted"),
        ((VENDOR, CLASS, (7, BLOB_SHA)), "admitted"),  # the same model again
        ((VENDOR, CLASS, (7, other_blob)), "rollback"),  # same number, other model
        ((VENDOR, CLASS, (8, BLOB_SHA)), "rollback"),
        ((VENDOR, CLASS, (1 << 63, BLOB_SHA)), "rollback"),
        ((M.vendor_id("other.example"), CLASS, None), "wrong vendor"),
        ((VENDOR, other_class, None), "wrong device class"),
    ]
    lines = [ANCHOR] + [admit_line(*args, env) for args, _ in cases]
    lines.append(admit_line(VENDOR, CLASS, None, sign_manifest(manifest(), STRANGER)))
    assert V.run_lines(kind, lines, tmp_path) == [want for _, want in cases] + ["unknown key"]


def test_device_reads_trust_anchors_from_config(mpy_run):
    """The config form the host writes (anchor_config) is what the MicroPython reader takes; a kid that is not the
    point's, or a point off the curve, is refused when the config is read, not at the first install."""
    from tinymlaas.signing.keys import anchor_config

    config = anchor_config([SIGNER.public_point, STRANGER.public_point])
    env = sign_manifest(manifest(), SIGNER)
    wrong_kid = {STRANGER.key_id.hex(): SIGNER.public_point.hex()}
    off_curve = {SIGNER.key_id.hex(): (SIGNER.public_point[:-1] + bytes([SIGNER.public_point[-1] ^ 1])).hex()}
    out = mpy_run("from tinyml import cose\n"
                  "a = cose.anchors(%r)\n"
                  "print(len(a), cose.verify(%r, a).name)\n"
                  "for bad in (%r, %r, {'zz': '00'}):\n"
                  "    try:\n"
                  "        cose.anchors(bad)\n"
                  "    except cose.SignatureError as e:\n"
                  "        print(e.reason)\n" % (config, env, wrong_kid, off_curve))
    assert out.split("\n")[:4] == ["2 kws", "bad trust anchor", "bad trust anchor", "bad trust anchor"]

