# Seeded mutation fuzz of the device's CoAP/LwM2M input path, run inside MicroPython:
#   micropython fuzz_codec.py SEED COUNT [DATA_DIR]
# Each input is a mutated valid datagram. It goes through cm.decode, cm.bad_option, and, when it decodes as a
# request, the LwM2M client's request handler (routing, Block1/Block2, TLV/SenML/CBOR/text decoding, observe,
# write-attributes) with the device's real objects; with DATA_DIR, object 5 writes go to the real installer.
# Expected rejections (FormatError and error responses) are fine; any other exception is a crash and is
# printed with the input.
import binascii
import random
import socket
import sys
import time

from coap import message as cm
from coap.endpoint import Endpoint
from lwm2m import client as lc
from lwm2m import cbor, senml, tlv
from lwm2m.obj_device import Device, Security, Server
from lwm2m.obj_firmware import Firmware
from lwm2m.obj_tinyml import TinyML


def msg(code, path, payload=b"", mtype=cm.CON, **opts):
    m = cm.Message(mtype, code, 0x1234, b"\x01\x02")
    for p in path.strip("/").split("/"):
        m.add(cm.URI_PATH, p)
    for k, v in opts.items():
        for x in (v if isinstance(v, list) else [v]):
            m.add(getattr(cm, k), x)
    m.payload = payload
    return bytes(cm.encode(m))


CORPUS = [
    msg(cm.GET, "/3/0", ACCEPT=11542),
    msg(cm.GET, "/32770/0/22", OBSERVE=0),
    msg(cm.GET, "/3/0/0", OBSERVE=1, mtype=cm.NON),
    msg(cm.GET, "/32770", ACCEPT=112, BLOCK2=b"\x12"),
    msg(cm.GET, "/3", ACCEPT=40),
    msg(cm.PUT, "/1/0/1", b"120", CONTENT_FORMAT=0),
    msg(cm.PUT, "/3/0/9", URI_QUERY=["pmin=1", "pmax=30", "gt=5.5", "st=1"]),
    msg(cm.POST, "/1/0", binascii.unhexlify("c10178c1060100"), CONTENT_FORMAT=11542),
    msg(cm.POST, "/1/0", bytes(senml.encode_cbor("/1/0/", [("1", 60), ("7", "U")])), CONTENT_FORMAT=112),
    msg(cm.PUT, "/1/0", senml.encode_json("/1/0/", [("2", 1)]), CONTENT_FORMAT=110),
    msg(cm.PUT, "/5/0/0", b"\x55" * 64, CONTENT_FORMAT=42, BLOCK1=b"\x0a", SIZE1=b"\x10\x00"),
    msg(cm.PUT, "/5/0/0", b"\x55" * 16, CONTENT_FORMAT=42, BLOCK1=b"\x10"),
    msg(cm.PUT, "/5/0/1", b"coap://127.0.0.1:9/fw/abc", CONTENT_FORMAT=0),
    msg(cm.POST, "/5/0/2"),
    msg(cm.PUT, "/32770/0/21", b"\x00" * 40, CONTENT_FORMAT=42),
    msg(cm.POST, "/32770/0/19"),
    bytes(cm.encode(cm.Message(cm.ACK, cm.EMPTY, 7))),
]
INTERESTING = (0, 1, 0x0C, 0x0D, 0x0E, 0x0F, 0x7F, 0x80, 0xD0, 0xE0, 0xF0, 0xFF)


def mutate(data):
    b = bytearray(data)
    for _ in range(random.getrandbits(2) + 1):
        op = random.getrandbits(3)
        n = len(b)
        i = random.getrandbits(16) % (n + 1)
        if op == 0 and n:
            b[i % n] ^= 1 << random.getrandbits(3)
        elif op == 1 and n:
            b[i % n] = INTERESTING[random.getrandbits(8) % len(INTERESTING)]
        elif op == 2:
            b = b[:i] + bytes((random.getrandbits(8),)) + b[i:]
        elif op == 3 and n:
            b = b[:i % n] + b[i % n + 1:]
        elif op == 4:
            b = b[:i]
        elif op == 5 and n:
            j = random.getrandbits(16) % n
            b = b[:i] + b[j:j + 1 + random.getrandbits(3)] + b[i:]
        elif op == 6 and n:
            b[i % n] = random.getrandbits(8)
        else:
            b += bytes(random.getrandbits(8) for _ in range(random.getrandbits(3)))
    return bytes(b)


def main(seed, count, data_dir=None):
    random.seed(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
    ep = Endpoint(s)
    nowhere = socket.getaddrinfo("127.0.0.1", 9)[0][-1]
    c = lc.Client(ep, nowhere, "fuzz")
    c.add(Security("coap://127.0.0.1:9"))
    c.add(Server())
    c.add(Device({}))
    installer, install_error = None, Exception
    if data_dir:
        from tinyml.installer import InstallError, Installer

        installer, install_error = Installer(data_dir), InstallError
    tml = c.add(TinyML(installer, data_dir or "."))
    c.add(Firmware(installer, install_error, on_activated=tml.reload, on_activating=tml.unload))
    stats = {"decoded": 0, "rejected": 0, "requests": 0, "crashes": 0}
    t0 = time.ticks_ms()
    for k in range(count):
        data = mutate(CORPUS[k % len(CORPUS)])
        try:
            m = cm.decode(data)
        except cm.FormatError:
            stats["rejected"] += 1
            continue
        stats["decoded"] += 1
        try:
            if cm.bad_option(m) is None and m.is_request():
                stats["requests"] += 1
                c.handle(m, nowhere)
            for v in (cbor, tlv):
                try:
                    v.decode(m.payload)
                except ValueError:
                    pass
        except MemoryError:
            pass  # bounded by -X heapsize: the input asked for more than the device has, answered 5.00 on a device
        except Exception as e:
            stats["crashes"] += 1
            if stats["crashes"] <= 5:
                print("CRASH", type(e).__name__, e, binascii.hexlify(data).decode())
        c.jobs = []  # deferred work (reboot, pull) is not part of the codec under test
        c.upload = None if k % 50 == 0 else c.upload
    print("inputs", count, "decoded", stats["decoded"], "rejected", stats["rejected"], "requests",
          stats["requests"], "crashes", stats["crashes"], "ms", time.ticks_diff(time.ticks_ms(), t0))


main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
