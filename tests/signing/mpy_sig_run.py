# MicroPython twin of tests/c/tml_sig_run.c: the same commands, one a line, from the file in argv[1], and the same
# answers (fields are hex, "-" is empty), through inference_module/tinyml/p256.py and cose.py. Run in the `micropython` unix port only.
import sys
import hashlib
from binascii import hexlify, unhexlify

from tinyml import cose, p256

NAMES = ("valid", "invalid key", "invalid range", "invalid mismatch")
anchors = {}


def manifest_line(fn, data):
    try:
        m = fn(data)
    except cose.SignatureError as e:
        return "refused " + e.reason
    return "ok %d %s %s" % (m.sequence, m.name, m.version)


def update_line(payload):
    from tinyml import anchors as A

    try:
        seq, vendor, point, revoke = A.decode(payload)
    except cose.SignatureError as e:
        return "refused " + e.reason
    return "ok %d %s %s %s" % (seq, hexlify(vendor).decode(), hexlify(point).decode(),
                               hexlify(revoke).decode() if revoke else "-")


def admit(vendor, klass, installed, env):
    try:
        m = cose.verify(env, anchors)
    except cose.SignatureError as e:
        return e.reason
    slot = None if len(installed) == 1 else (int.from_bytes(installed[:8], "big"), installed[8:])
    return cose.admit(m, vendor, klass, slot) or "admitted"


def run(line):
    parts = line.split()
    if not parts:
        return None
    cmd = parts[0]
    try:
        f = [b"" if x == "-" else unhexlify(x) for x in parts[1:]]
    except ValueError:
        return "error not hex"
    if cmd == "anchor" and len(f) == 1 and len(f[0]) == 73:
        anchors[f[0][:8]] = f[0][8:]
        return None
    if cmd == "ecdsa" and len(f) == 3:
        if len(f[0]) != 65:
            return NAMES[p256.BAD_KEY]
        if len(f[2]) != 64:
            return "invalid size"
        return NAMES[p256.verify(f[0], hashlib.sha256(f[1]).digest(), f[2])]
    if cmd == "cose" and len(f) == 1:
        return manifest_line(lambda d: cose.verify(d, anchors), f[0])
    if cmd == "manifest" and len(f) == 1:
        return manifest_line(cose.decode_manifest, f[0])
    if cmd == "update" and len(f) == 1:
        return update_line(f[0])
    if cmd == "admit" and len(f) == 4:
        return admit(*f)
    return "error bad command " + cmd


with open(sys.argv[1]) as src:
    for line in src:
        out = run(line)
        if out is not None:
            print(out)
print("done")
