# RAM high-water of the client during a block-wise push to /5/0/0, inside MicroPython:
#   micropython measure_block1.py PACKAGE_FILE DATA_DIR [TRUST_ANCHORS_JSON]
# Each 1024-byte block is read from the file into a fresh datagram-sized buffer (as recvfrom would deliver it),
# decoded and handled by the LwM2M client with the real installer. gc.mem_free() is sampled after every block
# without collecting (allocation high-water incl. garbage) and with gc.collect() (live data high-water).
import gc
import json
import sys

gc.collect()
import tinyml_device
import tinyml.model  # the runtime's code, which the installer's checks use (frozen in flash on a board)
import tinyml.cose  # and the signature verifier's
from coap import block
from coap import message as cm

cfg = {"server": "coap://127.0.0.1:9", "endpoint": "m", "lifetime": 300, "data_dir": sys.argv[2],
       "ack_timeout_ms": 2000, "port": 0, "trust_anchors": json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}}
c = tinyml_device.build(cfg)
gc.collect()
base_free = gc.mem_free()
heap = gc.mem_free() + gc.mem_alloc()
f = open(sys.argv[1], "rb")
f.seek(0, 2)
size = f.tell()
f.seek(0)
num = 0
min_free_raw = base_free
min_free_live = base_free
addr = b"peer"
while True:
    chunk = f.read(1024)
    more = f.tell() < size
    m = cm.Message(cm.CON, cm.PUT, num & 0xFFFF, b"\x01")
    for p in ("5", "0", "0"):
        m.add(cm.URI_PATH, p)
    m.add(cm.CONTENT_FORMAT, 42).add(cm.BLOCK1, block.encode(num, more, 6))
    if num == 0:
        m.add(cm.SIZE1, size)
    m.payload = chunk
    data = cm.encode(m)
    del m, chunk
    resp = c.handle(cm.decode(data), addr)
    del data
    want = cm.CONTINUE if more else cm.CHANGED
    if resp.code != want:
        raise SystemExit("block %d answered %s: %s" % (num, cm.code_str(resp.code), bytes(resp.payload)))
    min_free_raw = min(min_free_raw, gc.mem_free())
    gc.collect()
    min_free_live = min(min_free_live, gc.mem_free())
    num += 1
    if not more:
        break
print("heap", heap, "idle_free", base_free, "blocks", num, "bytes", size,
      "peak_alloc", base_free - min_free_raw, "peak_live", base_free - min_free_live, "state", c.objects[5].state)
