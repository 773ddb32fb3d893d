# Live heap of a Q-Block2 download (lwm2m/qpull.py) inside MicroPython:
#   micropython measure_qpull.py COAP_URI [SLOTS [FREE]]
# The package goes into a sink that hashes what it is given, in order (as the installer takes it). Every 8 polls
# the heap is collected and the live data over idle sampled: what the window arena and the download's own
# state cost, whatever the link loses. Prints: error-or-None bytes sha256-hex peak-live-bytes blocks requests
# timeouts fallback; with FREE (bytes of heap left free for the download, the rest held by ballast, as beside a
# loaded model) also the window's slots.
import binascii
import gc
import hashlib
import socket
import sys

from coap.endpoint import Endpoint
from lwm2m import qpull


class HashSink:
    def __init__(self):
        self.h = hashlib.sha256()
        self.n = 0

    def begin(self, size):
        pass

    def write(self, off, chunk):
        assert off == self.n
        self.h.update(chunk)
        self.n += len(chunk)

    def finish(self):
        pass


s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
ep = Endpoint(s, ack_timeout_ms=300)
ep.q_window = int(sys.argv[2]) if len(sys.argv) > 2 else 10
sink = HashSink()
ended = []
ballast = []
gc.collect()
while len(sys.argv) > 3 and gc.mem_free() > int(sys.argv[3]):
    ballast.append(bytearray(256))
idle = gc.mem_free()
d = qpull.QDownload(ep, sys.argv[1], sink, ended.append)
d.start()
peak = 0
polls = 0
while not ended:
    ep.poll(100)
    polls += 1
    if polls % 8 == 0:
        gc.collect()
        peak = max(peak, idle - gc.mem_free())
st = d.stats
print(ended[0], sink.n, binascii.hexlify(sink.h.digest()).decode(), peak, st["blocks"], st["requests"], st["timeouts"],
      st["fallback"], *([d.slots] if ballast else []))
