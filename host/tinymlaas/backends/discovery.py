"""Find back-ends through the `tinymlaas.backends` entry-point group, plus the built-in ones."""

from importlib.metadata import entry_points

from .interface import Backend, BackendError

BUILTIN = {
    "tmlb-int8": "tinymlaas.backends.int8:Int8Backend",
    "trees": "tinymlaas.backends.trees:TreeBackend",
    "linear": "tinymlaas.backends.linear:LinearBackend",
    "classic": "tinymlaas.backends.classic:ClassicBackend",
    "tflite": "tinymlaas.backends.passthrough:TFLitePassthroughBackend",
}


def _load(spec):
    module, _, attr = spec.partition(":")
    mod = __import__(module, fromlist=[attr])
    return getattr(mod, attr)


def available_backends():
    """name -> Backend class, built-ins first; an installed plugin may not shadow a built-in name."""
    found = {}
    for name, spec in BUILTIN.items():
        try:
            found[name] = _load(spec)
        except ImportError:
            continue
    for ep in entry_points(group="tinymlaas.backends"):
        if ep.name in found:
            continue
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise BackendError("entry point %s does not name a tinymlaas Backend subclass" % ep.name)
        found[ep.name] = cls
    return found


def backend(name):
    backends = available_backends()
    if name not in backends:
        raise BackendError("unknown back-end %r (available: %s)" % (name, ", ".join(sorted(backends))))
    return backends[name]()
