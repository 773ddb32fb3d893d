"""Interactive use at the board's REPL (docs/boards.md "At the REPL"), checked by typing into the real
`micropython` friendly REPL over a serial pty and reading what a person would see."""

import json
import re
import shutil
import time

import pytest
import serial

from repl_board import ReplBoard
from tinymlaas.boards.provision import compile_packages
from tinymlaas.commands.provision import trust_for
from tinymlaas.package import build_package
from tinymlaas.paths import VECTORS

VECTOR = "conv_same_stride2"


class Terminal:
    """A person at a serial terminal: type a line, read everything up to the next prompt."""

    def __init__(self, port):
        self.s = serial.Serial(port, 115200, timeout=0.05)

    def type(self, line, timeout=30):
        self.s.write(line.encode() + b"\r")
        out = b""
        deadline = time.monotonic() + timeout
        while not out.endswith(b">>> ") and time.monotonic() < deadline:
            out += self.s.read(4096)
        assert out.endswith(b">>> "), "no prompt after %r: %r" % (line, out)
        text = out.decode().replace("\r\n", "\n")
        echoed, _, rest = text.partition("\n")            # the REPL echoes what was typed
        assert echoed.strip() == line
        return rest[: -len(">>> ")]

    def close(self):
        self.s.close()


@pytest.fixture(scope="module")
def provisioned_root(tmp_path_factory):
    """A board filesystem as `tinymlaas provision` leaves it (x64 .mpy under lib/, tinyml.json), plus a model."""
    root = tmp_path_factory.mktemp("board")
    for rel, data in compile_packages("x64", root / "build"):
        (root / "lib" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "lib" / rel).write_bytes(data)
    shutil.rmtree(root / "build")
    (root / "tinyml.json").write_text(json.dumps({"server": "coap://192.0.2.1:5683", "endpoint": "kitchen-1",
                                                  "data_dir": "flash", "lifetime": 300, **trust_for(None)}))
    (root / "flash").mkdir()
    for ext in (".blob", ".in.bin", ".out.bin"):
        shutil.copy(VECTORS / (VECTOR + ext), root / "flash" / ("conv" + ext))
    # An install package as the service delivers it (golden vector = the first sample), for the installer path.
    blob = (VECTORS / (VECTOR + ".blob")).read_bytes()
    x = (VECTORS / (VECTOR + ".in.bin")).read_bytes()[:126]
    y = (VECTORS / (VECTOR + ".out.bin")).read_bytes()[:80]
    (root / "conv-7.pkg").write_bytes(build_package(blob, "conv", "7", [([x], [y])]))
    return root


def test_a_person_at_the_repl(provisioned_root):
    with ReplBoard(provisioned_root, heap="256k") as board:
        term = Terminal(board.port)
        try:
            # On a board /lib is on sys.path already; the unix port needs it added.
            assert term.type("import sys; sys.path.insert(0, 'lib')") == ""
            assert term.type("import tinyml_repl as t") == ""

            status = term.type("t.status()")
            assert re.search(r"MicroPython 1\.29\.0 on .*, \.mpy v6\.3 arch 2", status)
            assert re.search(r"heap free \d+ of \d+ bytes", status)
            assert "LwM2M endpoint kitchen-1 -> coap://192.0.2.1:5683 (lifetime 300 s)" in status
            assert "active model: none" in status

            listing = term.type("t.models()")
            assert re.search(r"conv\.blob +992 bytes", listing)

            assert term.type("m = t.load('flash/conv.blob')") == ""
            inspect = term.type("m.inspect()")
            assert "blob 992 bytes" in inspect and "CONV_2D" in inspect

            # The vector files hold several samples back to back: take the first.
            assert term.type("x = open('flash/conv.in.bin', 'rb').read(len(t.zeros(m)))") == ""
            out = term.type("y = t.predict(m, x)")
            assert re.match(r"output \[-?\d+, .*\]  \(\d+ us\)\n$", out)
            assert term.type("bytes(y) == open('flash/conv.out.bin', 'rb').read(len(y))") == "True\n"

            bench = term.type("r = t.bench(m, 5)")
            mn, mean, mx = map(int, re.match(r"5 inferences: min (\d+) us, mean (\d+) us, max (\d+) us", bench).groups())
            assert 0 < mn <= mean <= mx

            err = term.type("t.load()")                    # nothing installed through the service yet
            assert "OSError: no active model" in err

            # Install a package by hand with the installer (what object 5 does), then see it everywhere.
            assert term.type("i = t.installer(); p = open('conv-7.pkg', 'rb').read()") == ""
            assert "'name': 'conv'" in term.type("i.begin(len(p)); i.write(0, p); i.finish()")
            assert "'name': 'conv'" in term.type("i.activate()")
            assert "active model: conv 7 (992-byte blob, arena" in term.type("t.status()")
            assert re.search(r"\* slot0\.pkg +\d+ bytes  conv 7", term.type("t.models()"))
            assert term.type("a = t.load()") == ""
            assert term.type("bytes(a.predict(x)) == bytes(y)") == "True\n"
        finally:
            term.close()
