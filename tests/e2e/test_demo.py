"""`tinymlaas demo`, the README's main command, as a user runs it: a real process, exit status and its summary."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.xdist_group("e2e")


def test_demo_picks_different_variants_and_rejects_with_a_reason(tmp_path):
    summary = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "tinymlaas.cli", "demo", "--summary-json", str(summary)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(summary.read_text())
    rows = {r["device"]: r for r in out["devices"]}
    assert rows["esp32s3-kitchen"]["model"] == "kws"
    assert rows["esp32-pump-7"]["model"] == rows["m4-fan-2"]["model"] == "vibration"
    assert rows["esp32-pump-7"]["variant"] != rows["m4-fan-2"]["variant"]
    # Nothing registered fitted m4-fan-2's 16 KB model partition: the service compiled a pruned variant for it.
    assert '"prune"' in rows["m4-fan-2"]["variant"] and '"prune"' not in rows["esp32-pump-7"]["variant"]
    kws = {d["endpoint"]: d for d in out["deployments"]["kws"]["devices"]}
    assert kws["m4-fan-2"]["state"] == "failed" and "flash" in kws["m4-fan-2"]["reason"]
    # the ESP32 whose models run on an STM32F4 co-processor (the C firmware under QEMU on its UART)
    assert kws["esp32-stm32-line-3"]["state"] == "active"
    line = rows["esp32-stm32-line-3"]
    assert line["model"] == "kws" and line["profile"] == "esp32+stm32f4" and line["inferences"] == 5
    # esp32-pump-7 was bootstrapped (zero-touch) and is registered, managed and updated under OSCORE, the others NoSec
    assert "esp32-pump-7 bootstrapped: server account and fresh OSCORE keys" in proc.stdout
    assert rows["esp32-pump-7"]["security"] == "OSCORE" and rows["esp32-pump-7"]["inferences"] == 5
    assert {r["security"] for d, r in rows.items() if d != "esp32-pump-7"} == {"NoSec"}
    assert "Summary" in proc.stdout and "demo finished" in proc.stdout
