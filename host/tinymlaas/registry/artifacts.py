"""Content-addressed artifact storage: bytes are stored once under their SHA-256 and never change.

Files are written to a temporary name and renamed into place, so a crash leaves either no artifact or a
complete one; `get` re-hashes what it reads so a corrupted file is reported, never served.
"""

import hashlib
import os
from pathlib import Path


class ArtifactError(RuntimeError):
    pass


class ArtifactStore:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha):
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ArtifactError("not a SHA-256 hex digest: %r" % (sha,))
        return self.root / sha[:2] / sha

    def put(self, data):
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        path = self._path(sha)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp%d" % os.getpid())
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return sha

    def get(self, sha):
        path = self._path(sha)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError("artifact %s is missing from %s" % (sha[:12], self.root)) from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise ArtifactError("artifact %s is corrupted on disk (hash mismatch): %s" % (sha[:12], path))
        return data

    def has(self, sha):
        return self._path(sha).exists()
