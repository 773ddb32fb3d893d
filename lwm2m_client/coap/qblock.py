# Q-Block1 / Q-Block2 (RFC 9177) pieces shared by the device's pull (Q-Block2) and push (Q-Block1) receivers:
# the option numbers and the reorder window that hands blocks to a sink in order.
#
# Memory: a Window is one fixed arena of `slots` blocks (bytearray(slots * block size)) plus one small int per
# slot, allocated when a transfer starts and dropped when it ends; nothing grows with the body. With the default
# 10 slots of 1024 bytes that is 10,240 + ~100 bytes, i.e. ~1 KB per block in flight.

Q_BLOCK1 = 19
Q_BLOCK2 = 31
REQUEST_TAG = 292
MISSING_BLOCKS = 272  # application/missing-blocks+cbor-seq
MAX_PAYLOADS = 10  # RFC 9177 §7.2 default: blocks in flight at most


class Window:
    """Blocks `base` .. `base + slots - 1` of one body, arriving in any order, handed to write(num, chunk) in
    order. The block at `base` goes straight through; later ones wait in a fixed arena slot (num % slots)."""

    def __init__(self, slots, size):
        self.slots = slots
        self.size = size
        self.arena = bytearray(slots * size)
        self.lens = [-1] * slots  # bytes held in each slot, -1: empty
        self.base = 0
        self.highest = -1  # highest block number seen

    def has(self, num):
        return num < self.base or (num < self.base + self.slots and self.lens[num % self.slots] >= 0)

    def put(self, num, chunk, write):
        """Take block `num`: True if it was new and kept; False if a duplicate or beyond the window."""
        if num >= self.base + self.slots or self.has(num):
            return False
        if num > self.highest:
            self.highest = num
        if num != self.base:
            i = num % self.slots
            n = len(chunk)
            self.arena[i * self.size:i * self.size + n] = chunk
            self.lens[i] = n
            return True
        write(num, chunk)
        self.base += 1
        mv = memoryview(self.arena)
        while True:
            i = self.base % self.slots
            n = self.lens[i]
            if n < 0:
                return True
            write(self.base, mv[i * self.size:i * self.size + n])
            self.lens[i] = -1
            self.base += 1

    def missing(self, upto):
        """Block numbers below `upto` (within the window) not received yet."""
        top = min(upto, self.base + self.slots)
        return [n for n in range(self.base, top) if self.lens[n % self.slots] < 0]
