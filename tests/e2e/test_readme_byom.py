"""README.md's "Bring your own model" runs as written: every `$ ` command of its console blocks in bash, in a fresh
folder, and prints what the README shows.

What may differ: numbers (timings, scores, ports, heap figures), hexadecimal ids, and what the README writes as
"…" (any text within a line; a line of its own: any lines). What the test changes: the service's data directory and
config file (environment), and the ports: `tinymlaas serve` gets free ones and `:5683` in the other commands
becomes the free CoAP port; $TINYMLAAS_API points the clients at the free HTTP port. A command ending in `&` runs
in the background, for the rest of the section, once it printed what the README shows.
"""

import os
import queue
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
WILD_LINE = "…"

pytestmark = pytest.mark.xdist_group("e2e")


def section(title="## Bring your own model"):
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def steps(text):
    """[(command, expected output lines)] of the section's ```console blocks, in order."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            assert lines[i].startswith("$ "), "console line outside a command: %r" % lines[i]
            command = [lines[i][2:]]
            if "<<'EOF'" in lines[i]:
                while lines[i] != "EOF":
                    i += 1
                    command.append(lines[i])
            i += 1
            output = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            found.append(("\n".join(command), output))
    return found


def line_pattern(expected):
    out = []
    for part in re.split(r"(\s+|" + NUMBER + r"|[0-9a-f]{8,}|…)", expected):
        if not part:
            continue
        if part.isspace():
            out.append(r"\s+")
        elif part == "…":
            out.append(".*")
        elif re.fullmatch(NUMBER, part):
            out.append(NUMBER)
        elif re.fullmatch(r"[0-9a-f]{8,}", part):
            out.append("[0-9a-f]+")
        else:
            out.append(re.escape(part))
    return re.compile(r"\s*" + "".join(out) + r"\s*\Z")


def matches(expected, actual):
    """Do the actual lines read as the expected ones (in order, all of them, "…" lines standing for any)?"""
    if not expected:
        return not actual
    if expected[0] == WILD_LINE:
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and bool(line_pattern(expected[0]).match(actual[0])) and matches(expected[1:], actual[1:])


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Background:
    """A `&` command: its output read in a thread, so the test can wait for lines while it keeps running."""

    def __init__(self, command, cwd, env):
        self.proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line.rstrip("\n")) for line in self.proc.stdout],
                         daemon=True).start()

    def expect(self, expected, timeout=120):
        seen = []
        while len(seen) < len(expected):
            try:
                seen.append(self.lines.get(timeout=timeout))
            except queue.Empty:
                break
        assert matches(expected, seen), "expected:\n%s\ngot:\n%s" % ("\n".join(expected), "\n".join(seen))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def test_readme_bring_your_own_model_runs_as_written(tmp_path):
    coap, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    env = dict(os.environ, TINYMLAAS_DATA=str(tmp_path / "data"), TINYMLAAS_API="http://127.0.0.1:%d" % http,
               TINYMLAAS_CONFIG=str(tmp_path / "no-config.json"), TMPDIR=str(tmp_path))
    env.pop("TINYMLAAS_TOKEN", None)
    work = tmp_path / "work"
    work.mkdir()
    todo = steps(section())
    assert len(todo) == 2 + 4 + 4, [c.splitlines()[0] for c, _ in todo]   # serve, a device; four per model
    background = []
    try:
        for command, expected in todo:
            command = command.replace("tinymlaas serve", "tinymlaas serve --coap-port %d --http-port %d" % (coap, http))
            command = command.replace(":5683", ":%d" % coap)
            if command.endswith(" &"):
                background.append(Background(command[:-2], work, env))
                background[-1].expect(expected)
                continue
            run = subprocess.run(["bash", "-c", command], cwd=work, env=env, text=True, timeout=600,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            actual = run.stdout.splitlines()
            assert run.returncode == 0 and matches(expected, actual), \
                "$ %s\nexpected:\n%s\ngot (exit %d):\n%s" % (command, "\n".join(expected), run.returncode, run.stdout)
    finally:
        for b in reversed(background):
            b.stop()
