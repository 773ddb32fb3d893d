# tinyml_repl: conveniences for working with a tinymlaas device at the MicroPython REPL.
#
#   >>> import tinyml_repl as t
#   >>> t.status()             # config, registration target, installed model, heap and flash free, .mpy ABI
#   >>> t.models()             # installed model packages (active one marked) and loose .blob files
#   >>> m = t.load()           # the active model (or t.load("flash/x.blob"))
#   >>> m.inspect()
#   >>> y = t.predict(m, t.zeros(m))     # prints the output and the time (any bytearray of the input's size)
#   >>> t.bench(m, 20)         # min / mean / max microseconds over 20 inferences
#   >>> i = t.installer()      # install a signed package by hand: i.begin(n); i.write(0, p); i.finish(); i.activate()
#   >>> t.run()                # start the LwM2M device main in the foreground (Ctrl-C de-registers)
#
# Everything goes through the public tinyml API and the installer; nothing is cached between calls, so it
# costs no RAM until used (the module itself: ~2 KB of bytecode).
import gc
import json
import os
import sys

CONFIG_PATHS = ("/tinyml.json", "tinyml.json")


def config():
    """The device config written by `tinymlaas provision` (None when the board was never provisioned)."""
    for p in CONFIG_PATHS:
        try:
            with open(p) as f:
                return json.load(f)
        except (OSError, ValueError):
            pass
    return None


def _data_dir():
    c = config()
    return c.get("data_dir", "flash") if c else "flash"


def _installer():
    from tinyml.installer import Installer
    return Installer(_data_dir())


def installer():
    """An installer of the provisioned data dir that trusts what the device trusts (its config's anchors, or
    those a signed anchor update gave it): packages signed by another key are refused, as over LwM2M."""
    from tinyml.installer import Installer
    from tinyml.trust import Trust
    return Installer(_data_dir(), trust=Trust.of_device(config() or {}, _data_dir()))


def _free_flash(path):
    try:
        s = os.statvfs(path)
        return s[0] * s[4]
    except OSError:
        return None


def status():
    """Print what the device is and where it reports to."""
    c = config()
    gc.collect()
    mpy = getattr(sys.implementation, "_mpy", 0)
    print("MicroPython %d.%d.%d on %s, .mpy v%d.%d arch %d" % (sys.implementation.version[:3] + (
        getattr(sys.implementation, "_machine", sys.platform), mpy & 0xFF, (mpy >> 8) & 3, mpy >> 10)))
    print("heap free %d of %d bytes" % (gc.mem_free(), gc.mem_free() + gc.mem_alloc()))
    if c is None:
        print("not provisioned (no tinyml.json): run `tinymlaas provision` on the host")
        return
    print("LwM2M endpoint %s -> %s (lifetime %s s)" % (c.get("endpoint"), c.get("server"), c.get("lifetime")))
    d = c.get("data_dir", "flash")
    print("data dir %s, flash free %s bytes" % (d, _free_flash(d)))
    a = _installer().active()
    print("active model: %s" % ("%s %s (%d-byte blob, arena %d bytes)" % (
        a["name"], a["version"], a["blob_bytes"], a["arena_bytes"]) if a else "none"))


def models():
    """List installed packages (the active one marked with *) and loose .blob files in the data dir."""
    d = _data_dir()
    inst = _installer()
    active = inst._pointer() or {}
    found = []
    try:
        names = sorted(os.listdir(d))
    except OSError:
        names = []
    for n in names:
        if n.endswith(".pkg") or n.endswith(".blob"):
            size = os.stat(d + "/" + n)[6]
            mark = "*" if n == active.get("slot") else " "
            label = "%s %s" % (active.get("name"), active.get("version")) if mark == "*" else ""
            print("%s %-12s %8d bytes  %s" % (mark, n, size, label))
            found.append(n)
    if not found:
        print("no models in %s" % d)
    return found


def load(path=None):
    """Load the active model (path None) or a blob file; weights stream from flash."""
    import tinyml
    if path is None:
        m = _installer().load_active()
        if m is None:
            raise OSError("no active model: deploy one from the service, or pass a .blob path")
        return m
    return tinyml.load(path)


def predict(m, *x):
    """Run one inference, print the output and the time; returns the output."""
    y = m.predict(*x)
    print("output %r  (%d us)" % (list(y) if not isinstance(y, list) else [list(o) for o in y], m.last_us))
    return y


def zeros(m, i=0):
    """An all-zero input for input i: a bytearray for integer inputs, a list of floats for float32 inputs."""
    n = len(m.input_buffer(i))
    return [0.0] * (n // 4) if m.inputs[i]["dtype"] == "float32" else bytearray(n)


def bench(m, n=10, x=None):
    """Time n inferences on x (default: zeros); prints and returns (min, mean, max) microseconds."""
    if x is None:
        x = zeros(m)
    ts = []
    for _ in range(n):
        m.predict(x)
        ts.append(m.last_us)
    r = (min(ts), sum(ts) // n, max(ts))
    print("%d inferences: min %d us, mean %d us, max %d us" % ((n,) + r))
    return r


def run():
    """Start the LwM2M device main with the provisioned config, in the foreground."""
    import tinyml_device
    for p in CONFIG_PATHS:
        try:
            os.stat(p)
            return tinyml_device.run(tinyml_device.parse_args(["--config", p]))
        except OSError:
            pass
    raise OSError("not provisioned (no tinyml.json)")
