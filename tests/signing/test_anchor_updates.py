"""Key rotation: `tinymlaas keys rotate` makes anchor updates (signing/anchors.py) that the MicroPython device
takes (inference_module/tinyml/anchors.py) only from a key it trusts, for its vendor, in sequence order; what it
takes survives a restart, and the host's rule (anchors.apply) gives the same answers."""

import json
import os
import subprocess
import sys

import pytest

from tinymlaas.signing import anchors as A
from tinymlaas.signing.cose import SignatureError, sign1
from tinymlaas.signing.store import DEFAULT_VENDOR, KeyStore

# Each line of stdin: an update envelope in hex; the device answers "ok <seq> <kid,kid>" or "refused <reason>"
DEVICE = """
import sys
from binascii import unhexlify
from tinyml import anchors
from tinyml.trust import Trust
data_dir = sys.argv[1]
cfg = {"trust_anchors": %r}
stored = anchors.load(data_dir)
if stored:
    cfg["trust_anchors"] = stored[0]
trust = Trust.from_config(cfg)
seq = stored[1] if stored else 0
print("start", seq, trust.key_ids())
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        seq = anchors.apply(unhexlify(line), trust, seq, data_dir)
        print("ok", seq, trust.key_ids())
    except ValueError as e:
        print("refused", e.reason)
anchors.release()
print("cose loaded:", "tinyml.cose" in sys.modules, "anchors loaded:", "tinyml.anchors" in sys.modules)
"""


def device(mpy_run, tmp_path, initial, envelopes):
    out = mpy_run(DEVICE % (initial,), stdin="".join(e.hex() + "\n" for e in envelopes).encode(),
                  args=(str(tmp_path),))
    return out.strip().splitlines()


def kids(*signers):
    return ",".join(sorted(s.key_id.hex() for s in signers))


def flipped(data, at):
    b = bytearray(data)
    b[at] ^= 1
    return bytes(b)


def test_a_device_follows_two_rotations_and_refuses_what_it_must(mpy_run, tmp_path):
    store = KeyStore(tmp_path / "keys")
    k1 = store.signer()
    k2, u1, e1 = A.rotate(store)                      # K1 signs: add K2
    k3, u2, e2 = A.rotate(store, revoke_old=True)     # K2 signs: add K3, drop K2
    assert store.current_kid() == k3.key_id.hex() and A.revoked(store) == {k2.key_id.hex()}
    assert [s for s, _ in A.updates(store)] == [1, 2] and len(e1) <= 512
    initial = {k1.key_id.hex(): k1.public_point.hex()}  # provisioned before any rotation
    stranger = KeyStore(tmp_path / "other").signer()
    forged = A.sign_update(A.AnchorUpdate(3, DEFAULT_VENDOR, stranger.public_point), stranger)
    other_vendor = A.sign_update(A.AnchorUpdate(3, b"\x11" * 16, stranger.public_point), k3)
    not_an_update = sign1(b"\xa1\x01\x01", k3)
    (tmp_path / "flash").mkdir()
    lines = device(mpy_run, tmp_path / "flash", initial, [
        e2,                      # signed by K2, which the device does not trust yet
        flipped(e1, len(e1) - 5),  # a flipped byte in the signature
        flipped(e1, 30),         # ... in the payload
        e1, e1,                  # taken, then replayed
        e2, forged, other_vendor, not_an_update])
    assert lines[0] == "start 0 " + k1.key_id.hex()
    assert lines[1:] == [
        "refused unknown key", "refused bad signature", "refused bad signature",
        "ok 1 " + kids(k1, k2), "refused rollback",
        "ok 2 " + kids(k1, k3), "refused unknown key", "refused wrong vendor", "refused malformed anchor update",
        "cose loaded: False anchors loaded: False"]
    # what it took is kept: a restart starts from it, and the old updates stay refused
    again = device(mpy_run, tmp_path / "flash", initial, [e1])
    assert again[:2] == ["start 2 " + kids(k1, k3), "refused rollback"]
    assert json.loads((tmp_path / "flash" / "trust-anchors.json").read_text())["sequence"] == 2


def test_host_rule_and_chain_match_the_device(tmp_path):
    store = KeyStore(tmp_path / "keys")
    k1 = store.signer()
    A.rotate(store)
    k3, _, _ = A.rotate(store, revoke_old=True)
    chain = A.chain_for(store, [k1.key_id.hex()])
    assert len(chain) == 2
    have, seq = {k1.key_id: k1.public_point}, 0
    for envelope in chain:
        have, seq = A.apply(have, seq, A.verify_update(envelope, have))
    assert k3.key_id in have and seq == 2
    assert A.chain_for(store, [k3.key_id.hex()]) == []            # already trusts the signing key
    assert A.chain_for(store, ["00" * 8]) == []                   # nothing it trusts signed an update
    with pytest.raises(SignatureError, match="rollback"):
        A.apply(have, seq, A.verify_update(chain[1], {k: v for k, v in have.items()} | {
            bytes.fromhex(k): bytes.fromhex(v) for k, v in store.anchor_config().items()}))
    assert k1.key_id.hex() in A.device_anchors(store) and len(A.device_anchors(store)) == 2  # K2 revoked


def test_keys_cli_new_list_rotate_export(tmp_path):
    def cli(*args):
        # its own key store in --data: not the session's ($TINYMLAAS_KEYS, tests/conftest.py), which it would rotate
        env = {k: v for k, v in os.environ.items() if k != "TINYMLAAS_KEYS"}
        p = subprocess.run([sys.executable, "-m", "tinymlaas", "keys", *args, "--data", str(tmp_path)],
                           capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0, p.stderr
        return p.stdout

    first = json.loads(cli("new", "--json"))
    assert first["current"] is True
    rot = json.loads(cli("rotate", "--revoke-old", "--json"))
    assert rot["old_kid"] == first["kid"] and rot["revokes"] == first["kid"] and rot["anchor_update"] == 1
    listed = json.loads(cli("list", "--json"))
    by_kid = {k["kid"]: k for k in listed["keys"]}
    assert by_kid[rot["new_kid"]]["current"] and by_kid[first["kid"]]["revoked"]
    assert listed["anchor_updates"] == [1]
    assert "BEGIN PUBLIC KEY" in cli("export-public")
    assert list(json.loads(cli("export-public", "--format", "anchors"))) == [rot["new_kid"]]
    assert "PRIVATE" not in cli("list") + cli("export-public", first["kid"])


def test_provision_gives_every_key_but_the_revoked_ones(tmp_path, monkeypatch):
    from tinymlaas.commands.provision import trust_for

    monkeypatch.delenv("TINYMLAAS_KEYS", raising=False)  # the key store of --data, not the tests' shared one
    store = KeyStore(tmp_path / "keys")
    k1 = store.signer()
    k2, _, _ = A.rotate(store, revoke_old=True)
    spare = store.new_key()
    got = trust_for(tmp_path)["trust_anchors"]
    assert list(got) == [k2.key_id.hex(), spare.key_id.hex()]   # current first; K1 revoked by update 1
    assert got[k2.key_id.hex()] == k2.public_point.hex()
