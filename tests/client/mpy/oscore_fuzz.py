# Seeded bad input for the device's OSCORE codec, run inside MicroPython:
#   micropython oscore_fuzz.py SEED COUNT
# COUNT cases spread over the kinds below, each against a server context that shares keys with the client. A case
# must end in the codec's rejection (FormatError from decoding the datagram, OscoreError from OSCORE) or, where the
# damage is outside the protected part, in a correct plain message; anything else is a crash. Prints one JSON
# object: per kind, how many cases, which OscoreError reasons, how many accepted, and the crashes.
import json
import random
import sys

from coap import message as cm
from coap import oscore

SECRET = bytes(range(16))
SALT = b"\x9e\x7c\xa9\x22\x23\x78\x63\x40"
CLIENT_ID = b"\x01"
SERVER_ID = b"\x02"


def request(ctx, n):
    m = cm.Message(cm.CON, cm.GET if n & 1 else cm.PUT, n & 0xFFFF, bytes((n & 0xFF,)))
    m.add(cm.URI_HOST, "device").add(cm.URI_PATH, "32770").add(cm.URI_PATH, "0").add(cm.CONTENT_FORMAT, 60)
    m.payload = bytes(random.getrandbits(8) for _ in range(random.getrandbits(5)))
    protected, _ = ctx.protect_request(m)
    return bytes(cm.encode(protected))


def with_option(datagram, value):
    m = cm.decode(datagram)
    m.remove(oscore.OSCORE)
    m.add(oscore.OSCORE, value)
    return bytes(cm.encode(m))


def random_option(client, n):
    value = bytes(random.getrandbits(8) for _ in range(random.getrandbits(5)))
    return with_option(request(client, n), value)


def truncated_option(client, n):
    datagram = request(client, n)
    value = cm.decode(datagram).opt(oscore.OSCORE)
    return with_option(datagram, value[:random.getrandbits(8) % len(value)])


def ciphertext_flip(client, n):
    b = bytearray(request(client, n))
    sealed = len(cm.decode(b).payload)
    i = len(b) - 1 - random.getrandbits(16) % sealed
    b[i] ^= 1 << random.getrandbits(3)
    return bytes(b)


def datagram_flip(client, n):
    b = bytearray(request(client, n))
    b[random.getrandbits(16) % len(b)] ^= 1 << random.getrandbits(3)
    return bytes(b)


STRANGER = oscore.Context(SECRET, b"\x07", SERVER_ID, SALT)


def wrong_kid(client, n):
    return request(STRANGER, n)


KINDS = [
    ("random_option", random_option), ("truncated_option", truncated_option),
    ("ciphertext_flip", ciphertext_flip), ("datagram_flip", datagram_flip), ("wrong_kid", wrong_kid),
]


def unprotect(server, datagram):
    """'accepted', 'format' or the OscoreError reason; other exceptions propagate."""
    try:
        msg = cm.decode(datagram)
    except cm.FormatError:
        return "format"
    try:
        server.unprotect_request(msg)
    except oscore.OscoreError as e:
        return e.reason
    return "accepted"


def random_response(client, request_id):
    """Outcome of unprotecting a response with a random OSCORE option value and random sealed bytes."""
    m = cm.Message(cm.ACK, cm.CHANGED, 1, b"\x01")
    m.add(oscore.OSCORE, bytes(random.getrandbits(8) for _ in range(random.getrandbits(3))))
    m.payload = bytes(random.getrandbits(8) for _ in range(random.getrandbits(5)))
    try:
        client.unprotect_response(cm.decode(cm.encode(m)), request_id)
    except oscore.OscoreError as e:
        return e.reason
    except cm.FormatError:
        return "format"
    return "accepted"


def record(stats, kind, outcome):
    entry = stats.setdefault(kind, {"cases": 0, "outcomes": {}})
    entry["cases"] += 1
    entry["outcomes"][outcome] = entry["outcomes"].get(outcome, 0) + 1


def main(seed, count):
    random.seed(seed)
    client = oscore.Context(SECRET, CLIENT_ID, SERVER_ID, SALT)
    server = oscore.Context(SECRET, SERVER_ID, CLIENT_ID, SALT)
    stats = {}
    crashes = []
    for n in range(count):
        kind, make = KINDS[n % len(KINDS)]
        datagram = make(client, n)
        try:
            outcome = unprotect(server, datagram)
        except Exception as e:  # a crash is anything the codec does not raise on purpose
            crashes.append("%s %r %s" % (kind, e, datagram))
            continue
        record(stats, kind, outcome)
        if outcome == "accepted":
            # a datagram the server accepted once must be refused as a replay from then on
            record(stats, "replay", unprotect(server, datagram))
    _, request_id = client.protect_request(cm.Message(cm.CON, cm.GET, 1, b"\x01"))
    for _ in range(count // len(KINDS)):
        record(stats, "random_response", random_response(client, request_id))
    print(json.dumps({"kinds": stats, "crashes": crashes[:20], "crash_count": len(crashes)}))


main(int(sys.argv[1]), int(sys.argv[2]))
