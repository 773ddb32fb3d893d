# Object 5 Firmware Update, carrying tinymlaas model packages (docs/package-format.md) to the installer of the
# inference module. Push: the server writes /5/0/0 block by block (Block1), each block goes straight to
# Installer.write. Pull: the server writes a coap:// URI to /5/0/1 and the device fetches it with Q-Block2
# (lwm2m/qpull.py), or plain Block2 when the endpoint has no Q-Block window, uses OSCORE or the server lacks it.
# Update (/5/0/2) activates the staged model: golden vectors run before the active slot switches.
import gc

from .objects import INTEGER, NONE, OPAQUE, STRING, LwObject, ResourceError, WriteError
from . import pull

IDLE = 0
DOWNLOADING = 1
DOWNLOADED = 2
UPDATING = 3

R_INITIAL = 0
R_SUCCESS = 1
R_NO_FLASH = 2
R_NO_RAM = 3
R_CONNECTION_LOST = 4
R_INTEGRITY = 5
R_UNSUPPORTED_TYPE = 6
R_INVALID_URI = 7
R_FAILED = 8
R_UNSUPPORTED_PROTOCOL = 9

# CoAP answer to a push write that the installer refused, by Update Result
_CODE_FOR_RESULT = {R_NO_FLASH: 0x8D, R_NO_RAM: 0xA0, R_INTEGRITY: 0x80, R_UNSUPPORTED_TYPE: 0x80, R_FAILED: 0xA0}


class PackageSink:
    """Streams package bytes into the installer and keeps /5/0/3 State and /5/0/5 Update Result in step."""

    def __init__(self, fw, pull=False):
        self.fw = fw
        self.pull = pull  # this sink is the pull download's own
        self.size = None

    def _fail(self, result, msg):
        self.fw.set_state(IDLE, result)
        size1 = None
        if result == R_NO_FLASH:
            try:
                size1 = self.fw.installer.free_bytes()
            except Exception:
                pass
        raise WriteError(_CODE_FOR_RESULT.get(result, 0x80), msg, size1)

    def _call(self, fn):
        if self.fw.installer is None:
            self._fail(R_FAILED, "this firmware has no model installer")
        try:
            return fn()
        except MemoryError:
            self._fail(R_NO_RAM, "out of RAM")
        except self.fw.install_error as e:
            self._fail(getattr(e, "result", R_FAILED) or R_FAILED, str(e))
        except OSError as e:
            self._fail(R_NO_FLASH if e.args and e.args[0] == 28 else R_FAILED, "flash: %s" % e)  # 28 ENOSPC

    def begin(self, size):
        fw = self.fw
        if fw.state == UPDATING or (fw.pulling and not self.pull):
            raise WriteError(0xA3, "an update or a pull download is running")
        self.size = size
        if size == 0:
            return  # an empty write resets the state machine (see finish)
        self._call(lambda: fw.installer.begin(size))
        fw.set_state(DOWNLOADING, R_INITIAL)

    def write(self, offset, chunk):
        if self.size == 1 and offset == 0 and len(chunk) == 1 and chunk[0] == 0:
            self.size = 0  # a single NUL byte also resets (LwM2M 1.1, /5/0/0 description)
            return
        self._call(lambda: self.fw.installer.write(offset, chunk))

    def finish(self):
        fw = self.fw
        if self.size == 0:
            fw.set_state(IDLE, R_INITIAL)
            return
        self._call(lambda: fw.installer.finish())
        fw.set_state(DOWNLOADED, R_INITIAL)

    def abort(self):
        if self.fw.installer is not None:
            self.fw.installer.abort()
        self.fw.set_state(IDLE, R_INITIAL)


class Firmware(LwObject):
    oid = 5
    version = "1.0"
    resources = {0: (OPAQUE, "W"), 1: (STRING, "RW"), 2: (NONE, "E"), 3: (INTEGER, "R"), 5: (INTEGER, "R"),
                 6: (STRING, "R"), 7: (STRING, "R"), 8: (INTEGER, "RM"), 9: (INTEGER, "R")}

    def __init__(self, installer, install_error, on_activated=None, on_activating=None, on_reset=None):
        super().__init__()
        self.on_reset = on_reset  # called when an empty URI cancels: the client drops a half-done transfer
        self.on_activating = on_activating  # called before activation: free the running model's RAM
        self.installer = installer
        self.install_error = install_error
        self.on_activated = on_activated  # called after a new model became active (reload the TinyML object)
        self.state = IDLE
        self.result = R_INITIAL
        self.uri = ""
        self.pulling = False
        self.download = None

    def set_state(self, state, result):
        if state != self.state:
            self.state = state
            self.changed(0, 3)
        if result != self.result:
            self.result = result
            self.changed(0, 5)

    def _active(self, key):
        try:
            a = self.installer.active()
        except Exception:
            a = None
        return str(a.get(key, "")) if a else ""

    def read(self, iid, rid):
        if rid == 1:
            return self.uri
        if rid == 3:
            return self.state
        if rid == 5:
            return self.result
        if rid == 6:
            return self._active("name")
        if rid == 7:
            return self._active("version")
        if rid == 8:
            return (0,)  # Multiple; one instance: CoAP (RFC 7252)
        if rid == 9:
            return 2  # push and pull
        raise ResourceError(0x85)

    def sink(self, iid, rid):
        return PackageSink(self) if rid == 0 else None

    def write(self, iid, rid, value):
        if rid != 1:
            raise ResourceError(0x85)
        if self.state in (DOWNLOADING, UPDATING) and value:
            raise ResourceError(0xA3, "a download or update is running")
        self.uri = value
        if not value:  # an empty URI cancels a download and resets the state machine
            if self.download is not None:
                self.download.cancel()
                self._pull_ended(None)
            if self.installer is not None and self.state != UPDATING:
                self.installer.abort()
            if self.on_reset and self.state != UPDATING:
                self.on_reset()
            self.set_state(IDLE, R_INITIAL)
            return
        try:
            pull.parse_uri(value)
        except pull.PullError as e:
            self.set_state(IDLE, e.result)
            return  # the write succeeds; Update Result tells the server why nothing happens
        self.set_state(DOWNLOADING, R_INITIAL)
        self.pulling = True
        self.client.defer(self._start_pull)  # after the 2.04 has gone out

    def _start_pull(self):
        try:
            ep = self.client.ep
            sink = PackageSink(self, pull=True)
            if ep.q_window and ep.security is None:  # Q-Block2 (RFC 9177), plain Block2 if the server lacks it
                from .qpull import QDownload

                self.download = QDownload(ep, self.uri, sink, self._pull_ended)
            else:
                self.download = pull.Download(ep, self.uri, sink, self._pull_ended)
        except pull.PullError as e:
            self._pull_ended(e)
            return
        self.download.start()

    def _pull_ended(self, err):
        self.pulling = False
        self.download = None
        if isinstance(err, pull.PullError):
            if self.installer is not None:
                self.installer.abort()
            self.set_state(IDLE, err.result)
        elif err is not None and not isinstance(err, WriteError):  # WriteError: the sink has set the state
            self.set_state(IDLE, R_FAILED)

    def execute(self, iid, rid, arg):
        if rid != 2:
            raise ResourceError(0x85)
        if self.state != DOWNLOADED:
            raise ResourceError(0x85, "no downloaded package to update")
        self.set_state(UPDATING, R_INITIAL)
        self.client.defer(self._activate)

    def _activate(self):
        # Back to the heap of a boot with the new model: the running model freed, the client's caches cut to
        # what must survive, one collection; the new model loaded once (the self-tested one runs) into the space
        # the old one left; then what survived is moved down beside it (client.settle()).
        if self.on_activating:
            self.on_activating()
        if self.client:
            self.client.shed()
        gc.collect()
        model = None
        try:
            model = self.installer.activate_model()
            result = R_SUCCESS
        except MemoryError:
            result = R_NO_RAM
        except self.install_error as e:
            result = getattr(e, "result", R_FAILED) or R_FAILED
        except Exception:
            result = R_FAILED
        gc.collect()  # the self-test's garbage, before the TinyML object allocates what it keeps
        if self.on_activated:
            self.on_activated(model)  # the new model, or the previous one loaded again after a failure
        elif model is not None:
            model.close()
        if self.client:
            self.client.settle()
        self.set_state(IDLE, result)
        if result != R_SUCCESS:
            return
        self.changed(0, 6)
        self.changed(0, 7)
