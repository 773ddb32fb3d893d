"""The contract between the service and a compiler back-end."""

import contextlib
import contextvars
from dataclasses import dataclass, field

_step_listener = contextvars.ContextVar("tinymlaas_backend_step", default=None)


def step(what):
    """A back-end names each long step as it starts ("load the Keras model", "quantize", "compile"): `models add`
    shows them as progress. Silent unless someone listens (`steps_to`)."""
    listener = _step_listener.get()
    if listener is not None:
        listener(what)


@contextlib.contextmanager
def steps_to(listener):
    """Send the step() announcements made inside the block to listener(text)."""
    token = _step_listener.set(listener)
    try:
        yield
    finally:
        _step_listener.reset(token)


class BackendError(RuntimeError):
    """The back-end cannot compile this model for this target; the message says why."""


def check_abi(target, backend_name):
    """BackendError unless the target runs the kernel ABI the blob writers write."""
    from ..blob import format as F

    if target.abi != F.ABI:
        raise BackendError("back-end %s writes kernel ABI %d blobs, the target runs ABI %d"
                           % (backend_name, F.ABI, target.abi))


class UnsupportedModel(BackendError):
    """The back-end does not take this type of model at all (a tree back-end given a linear model): when another
    back-end builds the model, the catalogue does not report this one's refusal."""


@dataclass(frozen=True)
class SourceModel:
    """What the registry hands a back-end: the model's bytes and what kind of model they are."""

    kind: str          # "tflite", "keras", "savedmodel", "onnx", "sklearn"
    data: bytes
    name: str = ""
    metadata: dict = field(default_factory=dict)   # e.g. representative dataset path, labels


@dataclass(frozen=True)
class Target:
    """The device runtime an artifact is built for."""

    runtime: str                   # "tinyml-mpy", "tinyml-c", "tflm"
    abi: int = 1                   # blob kernel ABI the runtime implements
    ops: frozenset = frozenset()   # ops the runtime supports; empty = all of the back-end's


@dataclass
class Artifact:
    """A compiled model and its exact costs on the device."""

    kind: str                 # "tmlb" (tinymlaas blob) or "tflite"
    data: bytes
    flash_bytes: int          # bytes stored on the device
    ram_bytes: int            # bytes of RAM the model needs at run time (arena + runtime's per-model state)
    macs: int
    ops: list                 # op names the runtime must support
    features: dict            # runtime features needed, e.g. {"abi": 1, "float_io": False}
    report: dict = field(default_factory=dict)   # back-end specific details (passes applied, arena plan, ...)
    # Golden vectors for the device's self-test: [(input bytes per graph input, output bytes per graph output)],
    # computed by the back-end's own reference (TFLite Micro for int8 networks, scikit-learn for trees).
    golden: list = field(default_factory=list)


class Backend:
    """Base class of compiler back-ends. Subclasses set the class attributes and implement compile()."""

    name = ""
    accepts = frozenset()      # source model kinds
    runtimes = frozenset()     # target runtimes
    optimizations = frozenset()  # option names it understands: "quantize", "prune", "fuse"

    def compile(self, source: SourceModel, target: Target, options: dict) -> Artifact:
        raise NotImplementedError

    def check(self, source: SourceModel, target: Target, options: dict):
        """Raise BackendError when this back-end cannot take the model or target at all."""
        if source.kind not in self.accepts:
            raise BackendError("back-end %s does not accept %s models (accepts: %s)"
                               % (self.name, source.kind, ", ".join(sorted(self.accepts))))
        if target.runtime not in self.runtimes:
            raise BackendError("back-end %s does not target runtime %s (targets: %s)"
                               % (self.name, target.runtime, ", ".join(sorted(self.runtimes))))
        unknown = set(options) - set(self.optimizations) - {"representative", "name"}
        if unknown:
            raise BackendError("back-end %s does not support option(s) %s" % (self.name, ", ".join(sorted(unknown))))
