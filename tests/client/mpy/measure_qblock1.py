# Live heap of the client during a Q-Block1 push to /5/0/0 (lwm2m/qupload.py), inside MicroPython:
#   micropython measure_qblock1.py PACKAGE_FILE DATA_DIR TRUST_ANCHORS_JSON
# The blocks come as NON requests of one body (one Request-Tag) the way a lossy link delivers them: in each run of
# 10, about one in five is held back (a seeded generator decides) and delivered after the rest of its run, so the
# client keeps early blocks in its window. gc.collect() after every block; the live data over idle is sampled.
import gc
import json
import sys

gc.collect()
import tinyml_device
import tinyml.model  # the runtime's code, which the installer's checks use (frozen in flash on a board)
import tinyml.cose  # and the signature verifier's
from coap import block, qblock
from coap import message as cm

cfg = {"server": "coap://127.0.0.1:9", "endpoint": "m", "lifetime": 300, "data_dir": sys.argv[2],
       "ack_timeout_ms": 2000, "port": 0, "trust_anchors": json.loads(sys.argv[3]), "q_window": 10}
c = tinyml_device.build(cfg)
gc.collect()
base_free = gc.mem_free()
f = open(sys.argv[1], "rb")
f.seek(0, 2)
size = f.tell()
nblocks = -(-size // 1024)
seed = [12345]


def held_back():
    seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
    return seed[0] % 5 == 0


def deliver(num):
    f.seek(num * 1024)
    chunk = f.read(1024)
    m = cm.Message(cm.NON, cm.PUT, num & 0xFFFF, b"qbtest01")
    for p in ("5", "0", "0"):
        m.add(cm.URI_PATH, p)
    m.add(cm.CONTENT_FORMAT, 42).add(qblock.Q_BLOCK1, block.encode(num, num < nblocks - 1, 6))
    m.add(qblock.REQUEST_TAG, b"tag1")
    if num == 0:
        m.add(cm.SIZE1, size)
    m.payload = chunk
    data = cm.encode(m)
    del m, chunk
    resp = c.handle(cm.decode(data), b"peer")
    del data
    return resp


min_free_live = base_free
last = None
held = 0
for start in range(0, nblocks, 10):
    run = list(range(start, min(start + 10, nblocks)))
    later = [n for n in run if n and n != nblocks - 1 and held_back()]
    held += len(later)
    for num in [n for n in run if n not in later] + later:
        resp = deliver(num)
        if resp is not None:
            last = resp
        gc.collect()
        min_free_live = min(min_free_live, gc.mem_free())
print("blocks", nblocks, "held_back", held, "bytes", size, "final", cm.code_str(last.code) if last else None,
      "peak_live", base_free - min_free_live, "state", c.objects[5].state)
