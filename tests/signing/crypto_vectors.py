"""ECDSA P-256 / SHA-256 cases for the three verifiers (tests/vectors/crypto/README.md), and the runners that feed
them to the host (`cryptography`), the C verifier (tests/c/tml_sig_run.c) and the MicroPython one
(tests/signing/mpy_sig_run.py). Each case: label, public key bytes, message, signature (r || s) and what is expected:
"valid", "invalid" (any refusal), "bad key" (refused for the key) or "good key" (not refused for the key)."""

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from tinymlaas.devices import cruntime, unixport
from tinymlaas.devices.qemu import _lock, qemu_binary
from tinymlaas.paths import FIRMWARE, REPO
from tinymlaas.signing.keys import FileSigner, public_point, verify_es256

CRYPTO = REPO / "tests" / "vectors" / "crypto"
MPY_RUNNER = Path(__file__).with_name("mpy_sig_run.py")
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


@dataclass(frozen=True)
class Case:
    label: str
    pub: bytes
    msg: bytes
    sig: bytes
    expect: str

    def line(self):
        return "ecdsa %s %s %s" % (self.pub.hex() or "-", self.msg.hex() or "-", self.sig.hex() or "-")


def matches(expect, result):
    return {"valid": result == "valid", "invalid": result != "valid", "bad key": result == "invalid key",
            "good key": result != "invalid key"}[expect]


def wycheproof():
    doc = json.loads((CRYPTO / "wycheproof_ecdsa_secp256r1_sha256_p1363_test.json").read_text())
    out = []
    for group in doc["testGroups"]:
        pub = bytes.fromhex(group["publicKey"]["uncompressed"])
        for t in group["tests"]:
            assert t["result"] in ("valid", "invalid"), t  # this file has no "acceptable" cases
            out.append(Case("wycheproof #%d %s" % (t["tcId"], t["comment"]), pub, bytes.fromhex(t["msg"]),
                            bytes.fromhex(t["sig"]), t["result"]))
    return out


def _rsp_records(path):
    rec, out = {}, []
    for line in path.read_text().splitlines():
        if " = " in line and not line.startswith("#"):
            k, v = line.split(" = ", 1)
            rec[k.strip()] = v.strip()
            if k.strip() == "Result":
                out.append(rec)
                rec = {}
    return out


def _point(qx, qy):
    """0x04 || X || Y; coordinates wider than 32 bytes cannot be encoded, so such keys become a 1-byte-too-long
    encoding (every verifier must refuse it for the key as well)."""
    x, y = int(qx, 16), int(qy, 16)
    if x >> 256 or y >> 256:
        return b"\x04" + x.to_bytes(33, "big")[-33:] + y.to_bytes(33, "big")[-32:]
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def cavp_sigver():
    out = []
    for i, r in enumerate(_rsp_records(CRYPTO / "cavp_sigver_p256_sha256.rsp")):
        sig = int(r["R"], 16).to_bytes(32, "big") + int(r["S"], 16).to_bytes(32, "big")
        out.append(Case("CAVP SigVer #%d %s" % (i, r["Result"]), _point(r["Qx"], r["Qy"]), bytes.fromhex(r["Msg"]),
                        sig, "valid" if r["Result"].startswith("P") else "invalid"))
    return out


def cavp_pkv():
    """Public-key validation: signed with r = s = 1, so a good key gives a mismatch and a bad one a key refusal."""
    one = (1).to_bytes(32, "big") * 2
    return [Case("CAVP PKV #%d %s" % (i, r["Result"]), _point(r["Qx"], r["Qy"]), b"", one,
                 "good key" if r["Result"].startswith("P") else "bad key")
            for i, r in enumerate(_rsp_records(CRYPTO / "cavp_pkv_p256.rsp"))]


def _small_x_point():
    """A curve point whose X is below 2^256 - p, so X + p still fits in 32 bytes (p = 3 mod 4: sqrt = v^((p+1)/4))."""
    x = 1
    while True:
        v = (x ** 3 - 3 * x + B) % P
        y = pow(v, (P + 1) // 4, P)
        if y * y % P == v:
            return x, y
        x += 1


def edge_cases():
    key = ec.derive_private_key(int.from_bytes(hashlib.sha256(b"tinymlaas edge cases").digest(), "big") % N,
                                ec.SECP256R1())
    pub = public_point(key.public_key())
    msg = b"signed model manifest"
    sig = FileSigner(key).sign(msg)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    x, y = int.from_bytes(pub[1:33], "big"), int.from_bytes(pub[33:], "big")
    sx, sy = _small_x_point()

    def rs(r_, s_):
        return r_.to_bytes(32, "big") + s_.to_bytes(32, "big")

    cases = [
        ("valid signature", pub, sig, "valid"),
        ("high s (n - s) is valid ECDSA", pub, rs(r, N - s), "valid"),
        ("r = 0", pub, rs(0, s), "invalid"),
        ("s = 0", pub, rs(r, 0), "invalid"),
        ("r = n", pub, rs(N, s), "invalid"),
        ("s = n", pub, rs(r, N), "invalid"),
        ("s + n (same residue)", pub, rs(r, s + N) if s + N < 1 << 256 else rs(r, N), "invalid"),
        ("r = s = 2^256 - 1", pub, b"\xff" * 64, "invalid"),
        ("signature 63 bytes", pub, sig[:63], "invalid"),
        ("signature 65 bytes", pub, sig + b"\x00", "invalid"),
        ("point at infinity (0x00)", b"\x00", sig, "bad key"),
        ("all-zero point", b"\x04" + bytes(64), sig, "bad key"),
        ("compressed key", bytes([2 + (y & 1)]) + pub[1:33], sig, "bad key"),
        ("point off the curve (y + 1)", b"\x04" + pub[1:33] + ((y + 1) % P).to_bytes(32, "big"), sig, "bad key"),
        ("x + p, a valid x's residue", b"\x04" + (sx + P).to_bytes(32, "big") + sy.to_bytes(32, "big"), sig,
         "bad key"),
        ("the same point with x < p", b"\x04" + sx.to_bytes(32, "big") + sy.to_bytes(32, "big"), sig, "good key"),
        ("y = p", b"\x04" + pub[1:33] + P.to_bytes(32, "big"), sig, "bad key"),
        ("prefix 0x06 (hybrid)", b"\x06" + pub[1:], sig, "bad key"),
        ("the negated key", b"\x04" + pub[1:33] + (P - y).to_bytes(32, "big"), sig, "invalid"),
    ]
    return [Case("edge: " + label, k, msg, sg, want) for label, k, sg, want in cases]


def all_cases():
    return wycheproof() + cavp_sigver() + cavp_pkv() + edge_cases()


def host_result(case):
    """The host's answer through `cryptography`, in the runners' words."""
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), case.pub)
        if case.pub[:1] != b"\x04":
            raise ValueError("only uncompressed points are accepted")
    except ValueError:
        return "invalid key"
    return "valid" if verify_es256(case.pub, case.msg, case.sig) else "invalid"


STAND_IN = REPO / "tests" / "device" / "c_module_stand_in"
THROUGH_C_MODULE = """import sys
try:
    from _tinyml import cose_verify
except ImportError:  # a firmware without the C reader: its stand-in (tests/device/c_module_stand_in)
    import tinyml_c_stand_in
    sys.modules["_tinyml"] = tinyml_c_stand_in
from tinyml import cose
assert cose._c_verify is not None
exec(open(%r).read())
"""


def run_through_c_module(path, heap):
    """The MicroPython runner with tinyml.cose.verify dispatching to `_tinyml.cose_verify`: the firmware's C module
    when it has one (MICROPYTHON=...), else the stand-in behind the same interface."""
    script = path.parent / "through_c_module.py"
    script.write_text(THROUGH_C_MODULE % str(MPY_RUNNER))
    return unixport.run(script=script, heap=heap, args=[path], path=[STAND_IN]).stdout.decode()


def run_m4(path):
    """tests/c/tml_sig_run.c built for the Cortex-M4 (firmware/Makefile `sig`) under QEMU with semihosting."""
    with _lock(REPO / "build" / "firmware" / ".lock"):
        subprocess.run(["make", "-s", "-C", str(FIRMWARE), "BOARD=mps2-an386", "sig"], check=True,
                       capture_output=True)
    elf = REPO / "build" / "firmware" / "mps2-an386" / "tml_sig_run.elf"
    work = path.parent / "m4"
    work.mkdir(exist_ok=True)
    (work / "tml_sig_input.txt").write_bytes(path.read_bytes())
    proc = subprocess.run([qemu_binary(), "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null",
                           "-icount", "shift=0,align=off,sleep=off", "-semihosting", "-kernel", str(elf)],
                          cwd=work, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def run_lines(kind, lines, tmp_path, heap="256k"):
    """Feed command lines to the C runner (kind "c", ASan + UBSan; "m4", the Cortex-M4 build under QEMU) or the
    MicroPython one ("micropython") -> one answer per answering command."""
    path = tmp_path / ("sig_input_%s.txt" % kind)
    path.write_text("\n".join(lines) + "\n")
    if kind == "m4":
        out = run_m4(path)
    elif kind == "c":
        exe = cruntime.build(cruntime.BUILD / "tml_sig_run_asan")
        proc = subprocess.run([str(exe), str(path)], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr[-3000:]
        out = proc.stdout
    elif kind == "c-module":
        out = run_through_c_module(path, heap)
    else:
        out = unixport.run(script=MPY_RUNNER, heap=heap, args=[path]).stdout.decode()
    answers = out.splitlines()
    assert answers and answers[-1] == "done", out[-2000:]
    return answers[:-1]
