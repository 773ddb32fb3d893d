"""`tinymlaas emulate` end to end: the CLI boots the firmware, installs a model and compares with TFLite Micro."""

import json
import subprocess
import sys

from tinymlaas.devices.renode import renode_binary
from tinymlaas.paths import REPO


def emulate(*args):
    code = "import sys; from tinymlaas.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "emulate", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def test_emulate_boot_only_reports_capabilities():
    proc = emulate("--board", "mps2-an386", "--json")
    assert proc.returncode == 0, proc.stderr
    caps = json.loads(proc.stdout)["capabilities"]
    assert caps["board"] == "mps2-an386" and caps["abi"] == 1


def test_emulate_compiles_installs_and_is_bit_exact():
    model = REPO / "tests" / "corpus" / "models" / "depthwise_stride2_valid.tflite"
    proc = emulate("--board", "stm32f4", str(model), "--count", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["bit_exact"] is True and len(out["runs"]) == 2
    assert all(r["instructions"] > 0 for r in out["runs"])


def test_emulate_renode_backend():
    proc = emulate("--backend", "renode", "--board", "stm32f4")
    if renode_binary() is None:
        assert proc.returncode == 2
        assert "Renode is not installed" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert "stm32f4 on renode" in proc.stdout


def test_emulate_renode_refuses_the_mps2_board():
    proc = emulate("--backend", "renode", "--board", "mps2-an386")
    assert proc.returncode == 2
    assert "stm32f4" in proc.stderr
