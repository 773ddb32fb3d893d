"""Model installer: receives an install package (docs/package-format.md) in chunks, verifies it, self-tests the
model it carries and switches the active model atomically. Called by the LwM2M client for object 5.

Files under `root`:
    staging.pkg       the package being downloaded (append-only)
    slot0.pkg / slot1.pkg   installed packages; one is active, the other is the previous model or unused
    active            JSON pointer to the active slot (replaced with os.rename, the only commit point)
    active.tmp        the next pointer while it is written

Crash safety: until `active` is renamed over, the old pointer and the slot it names are untouched; after it, the
new pointer is complete (written, flushed and closed before the rename). Startup removes a stale active.tmp, or
completes the rename when a filesystem without atomic replace lost `active` between remove and rename.
RAM: one 512-byte chunk buffer, the package's JSON metadata (<= 4 KB), the signed manifest's envelope (<= 512 B)
and its ECDSA verification (about 5 KB transient, docs/manifest.md) and, during activate(), the model itself.

Trust (docs/manifest.md): a package is installed only when its COSE_Sign1 envelope verifies under one of the
device's trust anchors, names the device's vendor and class, has a sequence number above the active model's (or
the same one for the same blob) and hashes to the blob and vectors it carries. The sequence number and blob
digest of the active model are kept in the `active` pointer, so the anti-rollback state changes in the same
rename as the model does: a power cut at any moment leaves the old pair or the new one, never a lower number.
"""

import os
import json
import struct
import hashlib

from .errors import BlobError

MAGIC = b"TMLP"
VERSION = 2  # version 1 (unsigned) is refused
HEADER_BYTES = 32
ENVELOPE_MAX = 512
TRAILER_BYTES = 32
MAX_META = 4096
CHUNK = 512
MARGIN = 4096  # free space kept for the pointer file and filesystem metadata

# LwM2M /5/0/5 Update Result codes
NOT_ENOUGH_FLASH = 2
OUT_OF_RAM = 3
INTEGRITY_FAILURE = 5
UNSUPPORTED_PACKAGE = 6
UPDATE_FAILED = 8

IDLE = "Idle"
DOWNLOADING = "Downloading"
DOWNLOADED = "Downloaded"


class InstallError(Exception):
    def __init__(self, result, message):
        super().__init__(message)
        self.result = result
        self.message = message

    def __str__(self):
        return "%s (LwM2M update result %d)" % (self.message, self.result)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _hex(b):
    return "".join("%02x" % v for v in b)



class Installer:
    def __init__(self, root, loader=None, trust=None):
        """loader(path, offset=, length=) -> a model: tinyml.model.load by default; tinyml.coproc.loader(link)
        runs the packages' blobs on a co-processor instead. trust: a tinyml.trust.Trust (None: no trust anchors,
        every package is refused as signed by an unknown key)."""
        self.root = root.rstrip("/") or "/"
        self.loader = loader
        self.trust = trust  # tinyml.trust.Trust; None: no anchors
        self.last_error = ""  # why the last package was refused ("" after a success): TinyML /32770/0/24
        if not _exists(self.root):
            os.mkdir(self.root)
        self.state = IDLE
        self._f = None
        self._written = 0
        self._expect = None
        self._staged = None  # parsed header + meta after finish()
        self._recover()

    def _path(self, name):
        return self.root + "/" + name

    def _recover(self):
        act, tmp = self._path("active"), self._path("active.tmp")
        if _exists(tmp):
            if _exists(act):
                _remove(tmp)  # the switch never happened; the old pointer stands
            else:
                os.rename(tmp, act)  # a non-atomic filesystem died between remove and rename
        _remove(self._path("staging.pkg"))  # a download interrupted by a reboot starts again

    # ----- space -----

    def free_bytes(self):
        st = os.statvfs(self.root)
        return st[0] * st[4]  # f_bsize * f_bavail

    def _reclaimable(self):
        """Bytes begin() frees: the inactive slot (the previous model) is overwritten by the next install."""
        slot = self._inactive_slot()
        try:
            return os.stat(self._path(slot))[6]
        except OSError:
            return 0

    # ----- download -----

    def begin(self, size=None):
        self.abort()
        if size is not None and size > self.free_bytes() + self._reclaimable() - MARGIN:
            raise InstallError(NOT_ENOUGH_FLASH, "package of %d bytes does not fit (%d bytes free)" % (size, self.free_bytes()))
        _remove(self._path(self._inactive_slot()))
        self._f = open(self._path("staging.pkg"), "wb")
        self._written = 0
        self._expect = size
        self.state = DOWNLOADING

    def write(self, offset, chunk):
        if self._f is None:
            raise InstallError(UPDATE_FAILED, "write() without begin()")
        if offset != self._written:
            raise InstallError(UPDATE_FAILED, "chunk at offset %d, expected %d" % (offset, self._written))
        n = len(chunk)
        if self._expect is not None and self._written + n > self._expect:
            self.abort()
            raise InstallError(UPDATE_FAILED, "more data than the announced %d bytes" % self._expect)
        if n > self.free_bytes() - MARGIN:
            self.abort()
            raise InstallError(NOT_ENOUGH_FLASH, "filesystem full after %d bytes" % self._written)
        try:
            self._f.write(chunk)
        except OSError as e:
            self.abort()
            raise InstallError(NOT_ENOUGH_FLASH, "write failed: %s" % e)
        self._written += n

    def abort(self):
        """Drop a download in progress (the active model is not affected)."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
        _remove(self._path("staging.pkg"))
        self._staged = None
        self._written = 0
        self.state = IDLE

    def finish(self):
        """Complete the download: check header/type (6), SHA-256 (5) and the blob itself; state -> Downloaded."""
        if self._f is None:
            raise InstallError(UPDATE_FAILED, "finish() without begin()")
        self._f.close()
        self._f = None
        try:
            try:
                self._staged = self._verify(self._path("staging.pkg"), self._written)
            except InstallError:
                raise
            except MemoryError:
                raise InstallError(OUT_OF_RAM, "not enough RAM to check the package")
            except Exception as e:  # an unreadable file, a malformed header field: never a raw exception to LwM2M
                raise InstallError(UPDATE_FAILED, "package check failed: %r" % (e,))
        except InstallError as e:
            self.abort()
            self.last_error = e.message
            raise
        self.state = DOWNLOADED
        return self._staged["meta"]

    def _verify(self, path, size):
        if self._expect is not None and size != self._expect:
            raise InstallError(INTEGRITY_FAILURE, "received %d of %d bytes" % (size, self._expect))
        if size < HEADER_BYTES + TRAILER_BYTES:
            raise InstallError(UNSUPPORTED_PACKAGE, "package too short (%d bytes)" % size)
        buf = bytearray(CHUNK)
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            magic, ver, hb, meta_n, vec_n, blob_n, nvec, flags, env_n = struct.unpack("<4sHHIIIIII", head)
            if magic != MAGIC:
                raise InstallError(UNSUPPORTED_PACKAGE, "not a tinymlaas package (magic %r)" % magic)
            if ver == 1:
                raise InstallError(UNSUPPORTED_PACKAGE, "unsigned package (version 1): this device accepts only "
                                   "signed packages (version 2)")
            if ver != VERSION or hb != HEADER_BYTES or flags:
                raise InstallError(UNSUPPORTED_PACKAGE, "unsupported package version %d (this device reads %d)" % (ver, VERSION))
            if not 0 < env_n <= ENVELOPE_MAX:
                raise InstallError(UNSUPPORTED_PACKAGE, "malformed COSE_Sign1: envelope of %d bytes" % env_n)
            if HEADER_BYTES + env_n + meta_n + vec_n + blob_n + TRAILER_BYTES != size:
                raise InstallError(INTEGRITY_FAILURE, "package sections (%d+%d+%d+%d) do not match its %d bytes" % (env_n, meta_n, vec_n, blob_n, size))
            if meta_n > MAX_META:
                raise InstallError(UNSUPPORTED_PACKAGE, "package metadata of %d bytes exceeds %d" % (meta_n, MAX_META))
            # One pass over the file: hash of the package body and, separately, of the vector and blob ranges.
            h_all = hashlib.sha256(head)
            h_vec = hashlib.sha256()
            h_blob = hashlib.sha256()
            vec_off = HEADER_BYTES + env_n + meta_n
            blob_off = vec_off + vec_n
            body_end = size - TRAILER_BYTES
            pos = HEADER_BYTES
            mv = memoryview(buf)
            while pos < body_end:
                k = min(CHUNK, body_end - pos)
                if f.readinto(mv[:k]) != k:
                    raise InstallError(INTEGRITY_FAILURE, "short read at %d" % pos)
                h_all.update(mv[:k])
                if pos + k > vec_off and pos < blob_off:
                    h_vec.update(mv[max(0, vec_off - pos):min(k, blob_off - pos)])
                if pos + k > blob_off:
                    h_blob.update(mv[max(0, blob_off - pos):k])
                pos += k
            if f.read(TRAILER_BYTES) != h_all.digest():
                raise InstallError(INTEGRITY_FAILURE, "package SHA-256 mismatch")
            f.seek(HEADER_BYTES)
            envelope = f.read(env_n)
            from .strictjson import loads  # strict: MicroPython's json.loads misreads malformed text

            try:
                meta = loads(f.read(meta_n))
            except ValueError as e:
                raise InstallError(UNSUPPORTED_PACKAGE, "package metadata: %s" % e)
            if not isinstance(meta, dict):
                raise InstallError(UNSUPPORTED_PACKAGE, "package metadata is not a JSON object")
        m = self._check_manifest(envelope)
        del envelope
        if m.blob_bytes != blob_n or m.blob_sha256 != h_blob.digest():
            raise InstallError(INTEGRITY_FAILURE, "model blob does not match the signed manifest")
        if m.vectors_sha256 != h_vec.digest():
            raise InstallError(INTEGRITY_FAILURE, "golden vectors do not match the signed manifest")
        sha = _hex(m.blob_sha256)
        # The blob must be one this runtime executes (format version, ABI, every record): checked now, so
        # "Downloaded" means installable.
        from .blob import parse
        from .source import FileSource
        src = FileSource(path, blob_off, blob_n)
        try:
            prog = parse(src)
        except BlobError as e:
            raise InstallError(UNSUPPORTED_PACKAGE, "model rejected: %s" % e)
        finally:
            src.close()
        sizes = [prog.tensors[t][4] for t in prog.inputs] + [prog.tensors[t][4] for t in prog.outputs]
        if sum(sizes) * nvec != vec_n:
            raise InstallError(UNSUPPORTED_PACKAGE, "test vectors (%d bytes) do not match the model's I/O" % vec_n)
        return {"meta": meta, "name": m.name, "version": m.version, "sha256": sha, "blob_offset": blob_off,
                "blob_bytes": blob_n, "vec_offset": vec_off, "n_vectors": nvec,
                "arena_bytes": prog.arena_bytes, "package_bytes": size, "sequence": m.sequence}

    def _check_manifest(self, envelope):
        """The verified manifest of `envelope`, admitted for this device and its active model, or InstallError."""
        from .trust import check

        m, refusal = check(envelope, self.trust, self.installed())
        if refusal:
            raise InstallError(*refusal)
        return m

    def installed(self):
        """(sequence, blob SHA-256) of the active model, as cose.admit takes it; None without a signed one."""
        p = self._pointer()
        if not p or p.get("sequence") is None:
            return None
        from binascii import unhexlify

        return p["sequence"], unhexlify(p["sha256"])

    def installed_sequence(self):
        """Sequence number of the active model's manifest, 0 when none (TinyML /32770/0/25)."""
        i = self.installed()
        return i[0] if i else 0

    # ----- activation -----

    def _pointer(self):
        try:
            with open(self._path("active")) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return None

    def _inactive_slot(self):
        p = self._pointer()
        return "slot1.pkg" if p and p.get("slot") == "slot0.pkg" else "slot0.pkg"

    def activate(self):
        """Self-test the downloaded model, then make it the active one -> active(). On any failure the old model
        stays."""
        self.activate_model().close()
        return self.active()

    def activate_model(self):
        """activate(), keeping the self-tested model loaded: -> that model, now the active one (the caller closes
        it). The model is loaded once per update, so the heap sees one load, not a load, a free and a reload."""
        try:
            model = self._activate_model()
        except InstallError as e:
            self.last_error = e.message
            raise
        self.last_error = ""
        return model

    def _activate_model(self):
        if self.state != DOWNLOADED or self._staged is None:
            raise InstallError(UPDATE_FAILED, "nothing downloaded to activate")
        info = self._staged
        slot = self._inactive_slot()
        path = self._path(slot)
        self._staged = None
        self.state = IDLE
        try:
            os.rename(self._path("staging.pkg"), path)  # onto the inactive slot; the active one is untouched
            model = self._self_test(path, info)
        except MemoryError:
            raise InstallError(OUT_OF_RAM, "not enough RAM to run the model (arena %d bytes)" % info["arena_bytes"])
        except BlobError as e:
            raise InstallError(UPDATE_FAILED, "model failed to load: %s" % e)
        except ValueError as e:  # SelfTestError
            raise InstallError(UPDATE_FAILED, "golden test failed: %s" % e)
        except Exception as e:
            raise InstallError(UPDATE_FAILED, "activation failed: %r" % (e,))
        # the anti-rollback state (sequence, blob sha256) goes in the same pointer, so it changes with the model
        pointer = {"slot": slot, "name": info["name"], "version": info["version"], "sha256": info["sha256"],
                   "arena_bytes": info["arena_bytes"], "blob_bytes": info["blob_bytes"],
                   "blob_offset": info["blob_offset"], "vec_offset": info["vec_offset"], "n_vectors": info["n_vectors"],
                   "sequence": info["sequence"]}
        if "anomaly" in info["meta"]:  # an anomaly model's score and threshold (lwm2m/anomaly.py raises its alarms)
            pointer["anomaly"] = info["meta"]["anomaly"]
        if "head" in info["meta"]:  # a trainable head's config (lwm2m/learning.py, docs/learning.md)
            pointer["head"] = info["meta"]["head"]
        tmp = self._path("active.tmp")
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(pointer))
            self._drop_head(pointer)
            try:
                os.rename(tmp, self._path("active"))  # the commit point
            except OSError:
                _remove(self._path("active"))  # filesystems without atomic replace; _recover() completes it
                os.rename(tmp, self._path("active"))
        except BaseException:
            model.close()
            raise
        return model

    def _drop_head(self, pointer):
        """A learned head belongs to one model: it goes when a package with another blob or head config becomes
        active. Removed just before the commit point, once nothing but the rename can fail: a power cut between
        the two loses the old model's head (it starts again from its initial one), never gives the new model the
        old one's."""
        old = self._pointer()
        if old and old.get("sha256") == pointer["sha256"] and old.get("head") == pointer.get("head"):
            return
        for name in ("head.bin", "head.tmp"):
            _remove(self._path(name))

    def _load(self, path, offset, length, **kw):
        if self.loader is not None:
            return self.loader(path, offset=offset, length=length)
        from .model import load
        return load(path, offset=offset, length=length, **kw)

    def _self_test(self, path, info):
        """-> the model at `path`, loaded and passing its golden vectors."""
        import gc
        gc.collect()
        m = self._load(path, info["blob_offset"], info["blob_bytes"])
        try:
            run_vectors(m, path, info["vec_offset"], info["n_vectors"])
        except BaseException:
            m.close()
            raise
        return m

    def active(self):
        p = self._pointer()
        if not p:
            return None
        return {"name": p["name"], "version": p["version"], "sha256": p["sha256"], "arena_bytes": p["arena_bytes"],
                "blob_bytes": p["blob_bytes"], "state": "active", "anomaly": p.get("anomaly"), "head": p.get("head")}

    def self_test_active(self):
        """Re-run the active package's golden vectors (e.g. at boot); returns the count or raises InstallError."""
        p = self._pointer()
        if not p:
            return 0
        m = self.load_active()
        try:
            run_vectors(m, self._path(p["slot"]), p["vec_offset"], p["n_vectors"])
        except ValueError as e:
            raise InstallError(UPDATE_FAILED, "active model failed its golden test: %s" % e)
        finally:
            m.close()
        return p["n_vectors"]

    def load_active(self, **kw):
        p = self._pointer()
        if not p:
            return None
        return self._load(self._path(p["slot"]), p["blob_offset"], p["blob_bytes"], **kw)


def run_vectors(m, path, offset, count):
    """Run `count` golden vectors stored at `offset` of file `path` on model m. Inputs are read straight into
    the arena and outputs compared chunk by chunk, so a vector costs no RAM beyond one chunk buffer."""
    from .errors import SelfTestError
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    with open(path, "rb") as f:
        f.seek(offset)
        for k in range(count):
            for i in range(len(m.inputs)):
                view = m.input_buffer(i)
                if f.readinto(view) != len(view):
                    raise SelfTestError("vector %d: input %d truncated" % (k, i))
            m.invoke()
            for j in range(len(m.outputs)):
                view = m.output_buffer(j)
                pos = 0
                while pos < len(view):
                    n = min(CHUNK, len(view) - pos)
                    if f.readinto(mv[:n]) != n:
                        raise SelfTestError("vector %d: expected output %d truncated" % (k, j))
                    if mv[:n] != view[pos:pos + n]:
                        raise SelfTestError("vector %d: output %d differs from the golden result near byte %d" % (k, j, pos))
                    pos += n
