# Computes, inside MicroPython, what RFC 8613 Appendix C (and RFC 3610 / RFC 5869) publish test vectors for, and
# prints it as one JSON object; tests/client/test_oscore.py holds the published values and compares.
#   micropython oscore_vectors.py
import binascii
import json

from coap import aes_ccm, oscore
from coap import message as cm

h = binascii.unhexlify


def hx(b):
    return binascii.hexlify(b).decode()


SECRET = h("0102030405060708090a0b0c0d0e0f10")
SALT = h("9e7ca92223786340")
ID_CONTEXT = h("37cbf3210017a2d3")

# (name, sender ID, recipient ID, salt, ID context): C.1.1, C.1.2, C.2.1, C.2.2, C.3.1, C.3.2
CONTEXTS = [
    ("C.1.1", b"", b"\x01", SALT, None), ("C.1.2", b"\x01", b"", SALT, None),
    ("C.2.1", b"\x00", b"\x01", b"", None), ("C.2.2", b"\x01", b"\x00", b"", None),
    ("C.3.1", b"", b"\x01", SALT, ID_CONTEXT), ("C.3.2", b"\x01", b"", SALT, ID_CONTEXT),
]


def context(name, seq=0):
    for n, sid, rid, salt, idc in CONTEXTS:
        if n == name:
            return oscore.Context(SECRET, sid, rid, salt, idc, seq)


def derivations(out):
    for name, sid, rid, salt, idc in CONTEXTS:
        c = context(name)
        out[name] = {
            "sender_key": hx(c.sender_key), "recipient_key": hx(c.recipient_key), "common_iv": hx(c.common_iv),
            "sender_nonce": hx(oscore._nonce(c.common_iv, sid, b"\x00")),
            "recipient_nonce": hx(oscore._nonce(c.common_iv, rid, b"\x00")),
        }


def protect_request(name, plain):
    c = context(name, 20)
    protected, _ = c.protect_request(cm.decode(h(plain)))
    return hx(cm.encode(protected))


def protect_response(name, plain, fresh_piv):
    c = context(name, 0)
    msg = cm.decode(h(plain))
    protected = c.protect_response(msg, oscore.RequestId(b"", b"\x14", False), fresh_piv)
    return hx(cm.encode(protected))


def round_trip(out):
    # each protected vector opened by the peer's context gives the plain message back
    client, server = context("C.1.1", 20), context("C.1.2")
    plain = cm.decode(h("44015d1f00003974396c6f63616c686f737483747631"))
    protected, rid = client.protect_request(plain)
    opened, srid = server.unprotect_request(cm.decode(cm.encode(protected)))
    out["rt_request"] = hx(cm.encode(opened))
    response = cm.decode(h("64455d1f00003974ff48656c6c6f20576f726c6421"))
    back = client.unprotect_response(cm.decode(cm.encode(server.protect_response(response, srid))), rid)
    out["rt_response"] = hx(cm.encode(back))


def main():
    out = {}
    derivations(out)
    out["C.4"] = protect_request("C.1.1", "44015d1f00003974396c6f63616c686f737483747631")
    out["C.5"] = protect_request("C.2.1", "440171c30000b932396c6f63616c686f737483747631")
    out["C.6"] = protect_request("C.3.1", "44012f8eef9bbf7a396c6f63616c686f737483747631")
    out["C.7"] = protect_response("C.1.2", "64455d1f00003974ff48656c6c6f20576f726c6421", False)
    out["C.8"] = protect_response("C.1.2", "64455d1f00003974ff48656c6c6f20576f726c6421", True)
    out["ccm_3610_1"] = hx(aes_ccm.encrypt(h("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"), h("00000003020100a0a1a2a3a4a5"),
                                           h("0001020304050607"), h("08090a0b0c0d0e0f101112131415161718191a1b1c1d1e")))
    out["hkdf_5869_1"] = hx(oscore.hkdf_sha256(h("000102030405060708090a0b0c"), b"\x0b" * 22,
                                               h("f0f1f2f3f4f5f6f7f8f9"), 42))
    round_trip(out)
    print(json.dumps(out))


main()
