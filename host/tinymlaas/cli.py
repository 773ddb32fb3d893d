"""The `tinymlaas` command line.

Each sub-command lives in its own module under `tinymlaas.commands` and exposes `register(subparsers)`, which
adds its parser and sets `func`. `func(args)` returns the process exit code. Conventions for every command:
`--json` prints machine-readable output on stdout; errors go to stderr as one clear line; exit status 0 is
success, 1 a negative result (e.g. not bit-exact), 2 bad usage or bad input.
"""

import argparse
import importlib
import os
import signal
import sys

from . import __version__
from .errors import UserError  # noqa: F401  (commands raise it; defined apart so `python -m` sees one class)

# Order is the order of `tinymlaas --help`.
COMMANDS = [
    "demo",
    "compile",
    "verify",
    "models",
    "devices",
    "explain",
    "deploy",
    "deployments",
    "infer",
    "learn",
    "serve",
    "oscore-keys",
    "tokens",
    "keys",
    "device",
    "fleet",
    "emulate",
    "slot-image",
    "flash",
    "provision",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tinymlaas",
        description="TinyML as-a-Service: compile models for microcontrollers, manage devices over LwM2M, "
        "deliver and install models over the air.",
    )
    parser.add_argument("--version", action="version", version="tinymlaas " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = "tinymlaas.commands." + name.replace("-", "_")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def quiet_tensorflow():
    """TensorFlow's C++ and Python loggers print start-up chatter on every import; a CLI shows its own output."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN's float kernels also make post-training calibration depend on the CPU; off, conversions repeat exactly.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="tensorflow")
    warnings.filterwarnings("ignore", module="keras")


def _terminate_like_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    quiet_tensorflow()
    # A supervisor's SIGTERM (systemd, kill, a test harness) ends a command the way Ctrl-C does: emulated devices
    # de-register, and the micropython and QEMU processes a command started are stopped, not orphaned.
    signal.signal(signal.SIGTERM, _terminate_like_interrupt)
    try:
        return _run(build_parser(), argv)
    except BrokenPipeError:
        # The reader of our output left (`explain ... | head`): stop quietly with the status of a process ended
        # by SIGPIPE, as other Unix tools do; stdout goes to /dev/null so the exit-time flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _run(parser, argv):
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:     # --help, --version, usage errors: flushed here, where a closed pipe is caught
        sys.stdout.flush()
        return e.code
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args) or 0
        sys.stdout.flush()
        return code
    except UserError as e:
        print("tinymlaas %s: error: %s" % (args.command, e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
