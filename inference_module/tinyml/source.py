"""Byte sources a blob is read from: a buffer in RAM (zero copy) or an open file (bounded reads).

Both expose `size`, `read(offset, n) -> bytes-like` (small reads at load time) and
`view(offset, n, buf) -> buffer` (weights at run time: a memoryview slice of the blob, or `buf` filled from
the file); a FileSource also `fill(offset, n, buf)`s. Every caller has already checked that the range lies inside the blob.
"""


class MemorySource:
    streaming = False

    def __init__(self, data):
        self.mv = memoryview(data)
        self.size = len(self.mv)

    def read(self, offset, n):
        return self.mv[offset:offset + n]

    def view(self, offset, n, buf):
        return self.mv[offset:offset + n]

    def hash_range(self, h, start, end, buf):
        h.update(self.mv[start:end])

    def close(self):
        pass


class FileSource:
    streaming = True

    def __init__(self, path, base=0, length=None):
        # base/length: the blob is bytes [base, base+length) of the file (e.g. inside an install package).
        self.f = open(path, "rb")
        self.f.seek(0, 2)
        end = self.f.tell()
        self.base = base
        self.pos = -1  # blob offset the file is at after fill() (-1: unknown); a read there needs no seek
        self.size = end - base if length is None else length
        if base < 0 or self.size < 0 or base + self.size > end:
            self.f.close()
            raise OSError("blob range outside the file")

    def read(self, offset, n):
        self.pos = -1
        self.f.seek(self.base + offset)
        data = self.f.read(n)
        if len(data) != n:
            raise OSError("short read")
        return data

    def view(self, offset, n, buf):
        mv = memoryview(buf)[:n]
        self.pos = -1
        self.f.seek(self.base + offset)
        if self.f.readinto(mv) != n:
            raise OSError("short read")
        return mv

    def fill(self, offset, n, buf):
        """Read blob bytes [offset, offset+n) into the start of buf (no memoryview made: the kernels' hot path).
        Consecutive fills of one op's weight blocks are sequential: no seek between them."""
        f = self.f
        if offset != self.pos:
            f.seek(self.base + offset)
        self.pos = -1
        if f.readinto(buf, n) != n:
            raise OSError("short read")
        self.pos = offset + n

    def hash_range(self, h, start, end, buf):
        # Bounded chunks: never more than len(buf) bytes of the file in RAM at once.
        mv = memoryview(buf)
        self.pos = -1
        self.f.seek(self.base + start)
        pos = start
        while pos < end:
            k = min(len(buf), end - pos)
            got = self.f.readinto(mv[:k])
            if got != k:
                raise OSError("short read")
            h.update(mv[:k])
            pos += k

    def close(self):
        self.f.close()
