"""Fuzzing the signed-manifest readers. C: libFuzzer + ASan + UBSan over tml_cose_verify, tml_manifest_parse and
tml_p256_verify (tests/c/tml_cose_fuzz.c), seeded with envelopes signed by the key its anchor trusts, so mutated
signatures and payloads reach the ECDSA code. Devices: seeded mutations of envelopes and manifests through
tinyml/cose.py in the real VM and through the C reader, each answer compared with the host reader's. Short by
default; `--fuzz-long` runs 1,000,000 libFuzzer inputs and 100,000 device inputs (docs/fuzzing.md)."""

import random
import shutil
import subprocess

import pytest

from tinymlaas.devices import cruntime
from tinymlaas.signing import ManifestError, sign_manifest
from tinymlaas.signing import cose as C
from tinymlaas.signing import manifest as M
from tinymlaas.signing import SignatureError
from tinymlaas.signing.anchors import AnchorUpdate, sign_update
from tinymlaas.signing.anchors import decode as host_anchor_decode

import crypto_vectors as V
from envelopes import FUZZ_SIGNER, fixed_signer, manifest

pytestmark = pytest.mark.fuzz


def seed_manifests():
    return [manifest(), manifest(sequence=0, name="a", version="0"),
            manifest(sequence=(1 << 64) - 1, component="m" * 64, name="n" * 64, version="v" * 64),
            manifest(sequence=300, blob_bytes=0xFFFFFFFF, name="vww", version="2.10-rc1")]


def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def test_c_reader_fuzz(request, tmp_path):
    assert shutil.which("clang"), "clang is needed for the libFuzzer target"
    runs = 1_000_000 if request.config.getoption("--fuzz-long") else 20_000
    fuzzer = cruntime.build(cruntime.BUILD / "tml_cose_fuzz")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # one envelope the anchor trusts, its sequence number chosen so that the target offers it the anchor (an FNV-1a
    # hash of the input = 0 mod 64, tml_cose_fuzz.c); the others signed by a key it does not know
    untrusted = fixed_signer("fuzz, untrusted")
    trusted = next(env for env in (sign_manifest(manifest(sequence=n), FUZZ_SIGNER) for n in range(100_000))
                   if fnv1a(env) % 64 == 0)
    (corpus / "trusted").write_bytes(trusted)
    for i, m in enumerate(seed_manifests()):
        (corpus / ("env%d" % i)).write_bytes(sign_manifest(m, untrusted))
        (corpus / ("manifest%d" % i)).write_bytes(m.encode())
    for i, revoke in enumerate((None, untrusted.key_id)):  # anchor updates, whole and their payloads alone
        update = AnchorUpdate(i + 1, bytes(16), FUZZ_SIGNER.public_point, revoke)
        (corpus / ("update%d" % i)).write_bytes(sign_update(update, untrusted))
        (corpus / ("update-payload%d" % i)).write_bytes(update.encode())
    proc = subprocess.run([str(fuzzer), "-runs=%d" % runs, "-max_len=1024", "-seed=1", "-print_final_stats=1",
                           "-artifact_prefix=%s/" % tmp_path, str(corpus)],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "stat::number_of_executed_units: %d" % runs in proc.stderr


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        i = rng.randrange(len(b) + 1)
        if op < 0.45 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op < 0.65 and b:
            b[min(i, len(b) - 1)] = rng.choice([0x00, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x40, 0x5F, 0x7F, 0x80,
                                                0x9F, 0xA0, 0xBF, 0xC0, 0xF5, 0xFF])
        elif op < 0.8:
            del b[i:i + rng.randint(1, 8)]
        elif op < 0.9:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        else:
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[j:j + rng.randint(1, 16)]
    return bytes(b)


def host_answer(verify, data):
    """The host reader's answer in the runners' words."""
    try:
        m = verify(data)
    except ManifestError as e:
        return "refused " + e.reason
    return "ok %d %s %s" % (m.sequence, m.name, m.version)


def update_answer(data):
    """The host's answer for an anchor update's payload, in the runners' words."""
    try:
        u = host_anchor_decode(data)
    except SignatureError as e:
        return "refused " + e.reason
    return "ok %d %s %s %s" % (u.sequence, u.vendor_id.hex(), u.anchor.hex(), u.revoke.hex() if u.revoke else "-")


def test_device_readers_fuzz(request, tmp_path):
    """Mutated envelopes and manifests through the MicroPython and the C reader (ASan + UBSan), every answer equal
    to the host reader's. Envelopes are mostly signed by a key no anchor has (parsing only, so 100 k inputs stay
    fast in MicroPython); one input in 50 is a mutated envelope of the trusted key, which reaches ECDSA."""
    count = 100_000 if request.config.getoption("--fuzz-long") else 4_000
    rng = random.Random(12)
    trusted, untrusted = fixed_signer("fuzz, trusted"), fixed_signer("fuzz, untrusted")
    anchors = {trusted.key_id: trusted.public_point}
    envelopes = {s: [sign_manifest(m, s) for m in seed_manifests()] for s in (trusted, untrusted)}
    payloads = [m.encode() for m in seed_manifests()]
    lines = ["anchor " + (trusted.key_id + trusted.public_point).hex()]
    expected = []
    updates = [AnchorUpdate(n, bytes(range(16)), trusted.public_point, kid).encode()
               for n, kid in ((1, None), (2 ** 40, untrusted.key_id))]
    for i in range(count):
        if i % 8 == 2:  # a trust-anchor update's payload (what ANCHORS and /32770/0/29 read after the signature)
            data = mutate(rng, rng.choice(updates))
            lines.append("update " + (data.hex() or "-"))
            expected.append(update_answer(data))
        elif i % 2:
            data = mutate(rng, rng.choice(envelopes[trusted if i % 100 == 1 else untrusted]))
            lines.append("cose " + (data.hex() or "-"))
            expected.append(host_answer(lambda d: C.verify_manifest(d, anchors), data))
        else:
            data = mutate(rng, rng.choice(payloads))
            lines.append("manifest " + (data.hex() or "-"))
            expected.append(host_answer(M.decode, data))
    for kind in ("micropython", "c"):
        answers = V.run_lines(kind, lines, tmp_path)
        assert len(answers) == count, kind
        assert [(line, want, got) for line, want, got in zip(lines[1:], expected, answers) if want != got][:5] == []
    # the mutations reach every outcome, not only the first check
    assert {"refused bad signature", "refused unknown key", "refused malformed manifest",
            "refused unsupported manifest version", "refused unsupported algorithm",
            "refused malformed anchor update"} <= set(expected), set(expected)
    assert sum(e.startswith("ok") for line, e in zip(lines[1:], expected) if line.startswith("update")) > 0
