"""The same ECDSA P-256 / SHA-256 vectors through the three verifiers: the host (`cryptography`), C
(tml_p256.c under ASan + UBSan on the host, and built for the Cortex-M4 under QEMU) and MicroPython
(tinyml/p256.py in the real VM). Wycheproof (262), NIST CAVP
SigVer (15) and PKV (12), and the project's own edge cases (tests/vectors/crypto/README.md)."""

import collections

import pytest

import crypto_vectors as V

CASES = V.all_cases()


def test_vector_files_are_all_read():
    by_source = collections.Counter(c.label.split(" ")[0] for c in CASES)
    assert by_source == {"wycheproof": 262, "CAVP": 27, "edge:": 19}
    assert collections.Counter(c.expect for c in V.wycheproof()) == {"valid": 173, "invalid": 89}
    assert sum(c.expect == "bad key" for c in V.cavp_pkv()) == 8


def test_host_verifier():
    wrong = [(c.label, c.expect, r) for c, r in ((c, V.host_result(c)) for c in CASES) if not V.matches(c.expect, r)]
    assert wrong == []


def test_device_verifiers(tmp_path):
    """C and MicroPython: every case as expected, and the same answer from both, word for word."""
    lines = [c.line() for c in CASES]
    answers = {kind: V.run_lines(kind, lines, tmp_path) for kind in ("c", "micropython")}
    for kind, got in answers.items():
        assert len(got) == len(CASES), kind
        assert [(c.label, c.expect, a) for c, a in zip(CASES, got) if not V.matches(c.expect, a)] == [], kind
    assert answers["micropython"] == answers["c"]
    # every kind of answer occurs, so agreement is not agreement on one word
    assert set(answers["c"]) == {"valid", "invalid key", "invalid range", "invalid mismatch", "invalid size"}


def test_cortex_m4_build(tmp_path):
    """The C verifier as arm-none-eabi-gcc builds it for the firmware, run under QEMU (about a second for all)."""
    answers = V.run_lines("m4", [c.line() for c in CASES], tmp_path)
    assert len(answers) == len(CASES)
    assert [(c.label, c.expect, a) for c, a in zip(CASES, answers) if not V.matches(c.expect, a)] == []


def test_micropython_inverse_without_three_argument_pow(mpy_run):
    """Ports built without MICROPY_PY_BUILTINS_POW3 invert with the extended Euclidean algorithm."""
    out = mpy_run("from tinyml import p256\n"
                  "for a in (1, 2, 3, p256.N - 1, 0x1234567890abcdef << 100):\n"
                  "    for m in (p256.N, p256.P):\n"
                  "        assert p256._euclid_inverse(a, m) == pow(a, m - 2, m), (a, m)\n"
                  "        assert p256._euclid_inverse(a, m) * a % m == 1\n"
                  "print('ok')\n")
    assert out.strip() == "ok"
