"""Packages offered for pull delivery, served block-wise (RFC 7959 Block2) at /fw/<sha256>.

Serving is stateless: each GET names its block (NUM/SZX), the server slices the stored bytes. A package is
addressed by its SHA-256, so a URI always means the same bytes and the device can verify what it fetched.
"""

import hashlib
from pathlib import Path

MAX_SZX = 6  # 1024 bytes: SZX 7 is reserved over UDP (RFC 8323 BERT only)


class BlockOutOfRange(ValueError):
    pass


def block_slice(data_len, num, szx):
    """(start, end, more) of block NUM at size 2**(szx+4); NUM past the end raises BlockOutOfRange."""
    size = 1 << (szx + 4)
    start = num * size
    if start >= data_len and not (data_len == 0 and num == 0):
        raise BlockOutOfRange("block %d of size %d starts past the %d-byte package" % (num, size, data_len))
    end = min(start + size, data_len)
    return start, end, end < data_len


class PackageStore:
    """sha256 hex -> bytes, kept in memory and (when a directory is given) on disk so URIs survive restarts."""

    def __init__(self, directory=None):
        self.directory = Path(directory) if directory else None
        self._mem = {}
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)

    def add(self, data):
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        self._mem[sha] = data
        if self.directory and not (self.directory / sha).exists():
            tmp = self.directory / (sha + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(self.directory / sha)
        return sha

    def get(self, sha):
        if sha in self._mem:
            return self._mem[sha]
        if self.directory and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
            p = self.directory / sha
            if p.is_file():
                self._mem[sha] = p.read_bytes()
                return self._mem[sha]
        return None

    def remove(self, sha):
        self._mem.pop(sha, None)
        if self.directory:
            (self.directory / sha).unlink(missing_ok=True)
