"""`tinymlaas compile` and the public Python API."""

import json
import subprocess
import sys

from tinymlaas.blob import reader
from tinymlaas.compiler import CompiledModel, compile_tflite


def _cli(*args):
    # Through tinymlaas.cli.main, as the `tinymlaas` console script runs it.
    code = "import sys; from tinymlaas.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "compile", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_json_report(mlperf, tmp_path):
    out = tmp_path / "kws.tmlb"
    p = _cli(str(mlperf("kws")), "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    for key in ("blob_bytes", "arena_bytes", "macs", "ops", "tflite_bytes", "inputs", "outputs"):
        assert key in r
    assert r["blob_bytes"] == out.stat().st_size
    assert r["arena_bytes"] == 16000 and r["macs"] == 2656768 and r["tflite_bytes"] == 53936
    assert r["ops"][0] == "CONV_2D" and r["ops"][-1] == "SOFTMAX"
    assert r["inputs"][0]["shape"] == [1, 49, 10, 1] and r["inputs"][0]["dtype"] == "int8"
    reader.parse(out.read_bytes())


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    p = _cli(str(bad), "-o", str(tmp_path / "x.tmlb"))
    assert p.returncode == 2
    assert "not a TFLite flatbuffer" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.tmlb").exists()
    p = _cli(str(tmp_path / "missing.tflite"))
    assert p.returncode == 2 and "no such model file" in p.stderr


def test_python_api(mlperf):
    cm = compile_tflite(mlperf("sww").read_bytes(), name="sww")
    assert isinstance(cm, CompiledModel)
    assert isinstance(cm.blob, bytes) and cm.arena_bytes == 4992 and cm.macs == 826368  # 6,656 layer by layer
    assert cm.arena_layerwise == 6656
    r = cm.report()
    assert r["blob_bytes"] == len(cm.blob) and r["ops"] == cm.ops
    assert reader.parse(cm.blob).meta["name"] == "sww"
    # Deterministic: the same model compiles to the same bytes.
    assert compile_tflite(mlperf("sww").read_bytes(), name="sww").blob == cm.blob


def test_detailed_report_layers_and_plan(mlperf):
    cm = compile_tflite(mlperf("ic"))
    r = cm.report(detail=True)
    assert [layer["op"] for layer in r["layers"]] == cm.ops
    assert sum(layer["macs"] for layer in r["layers"]) == cm.macs
    assert r["layers"][0]["source"] == "CONV_2D (op 0)"
    plan = r["memory_plan"]
    assert max(b["offset"] + b["bytes"] for b in plan) == cm.arena_bytes
    for i, a in enumerate(plan):
        for b in plan[i + 1:]:
            live_together = a["live_ops"][0] <= b["live_ops"][1] and b["live_ops"][0] <= a["live_ops"][1]
            apart = a["offset"] + a["bytes"] <= b["offset"] or b["offset"] + b["bytes"] <= a["offset"]
            assert apart or not live_together
    assert "layers" not in cm.report()
