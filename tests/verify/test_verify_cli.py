"""`tinymlaas verify`: exit status, JSON report, and the loader's message for a bad blob."""

import json
import struct
import subprocess
import sys

import pytest

from tinymlaas import cli
from verify_paths import CORPUS, VECTORS

MODEL = CORPUS / "depthwise_dm2.tflite"


@pytest.fixture
def blob_file(tmp_path, compiled):
    p = tmp_path / "m.blob"
    p.write_bytes(compiled(MODEL))
    return p


def run_cli(capsys, *argv):
    code = cli.main(["verify", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_bit_exact_json(capsys, blob_file):
    code, out, err = run_cli(capsys, blob_file, "--reference", MODEL, "--runtime", "host", "--inputs", 4,
                             "--seed", 5, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["bit_exact"] is True
    assert r["max_abs_diff"] == 0 and r["mismatches"] == 0
    assert r["reference"] == "tflite-micro"
    assert r["runtime"] == "host" and r["inputs"] == 4 and r["seed"] == 5
    assert r["elements"] == 4 * 8 * 6 * 6
    assert len(r["latency_us_per_input"]) == 4 and r["latency_us"] == min(r["latency_us_per_input"]) > 0


@pytest.mark.parametrize("runtime", ["micropython", "c"])
def test_json_reports_latency_of_each_runtime(capsys, blob_file, runtime):
    # (qemu-cortex-m4: its modelled latency in test_c_runtimes.test_qemu_cortex_m4_bit_exact)
    code, out, err = run_cli(capsys, blob_file, "--reference", MODEL, "--runtime", runtime, "--inputs", 3, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert len(r["latency_us_per_input"]) == 3 and r["latency_us"] == min(r["latency_us_per_input"]) > 0
    assert r["latency_basis"]
    code, out, _ = run_cli(capsys, blob_file, "--reference", MODEL, "--runtime", runtime, "--inputs", 1)
    assert "  latency: " in out


def test_human_output(capsys, blob_file):
    code, out, _ = run_cli(capsys, blob_file, "--reference", MODEL, "--inputs", 2)
    assert code == 0
    assert out.startswith("bit-exact: 2 input sets")


def test_not_bit_exact_exits_1(capsys, tmp_path, compiled):
    """A valid blob that computes something else (one requantization parameter off) is caught: exit 1, a diff."""
    other = compiled(CORPUS / "conv_same_stride2.tflite")
    p = tmp_path / "other.blob"
    p.write_bytes(other)
    code, out, _ = run_cli(capsys, p, "--reference", CORPUS / "conv_same_stride2.tflite", "--inputs", 2, "--json")
    assert code == 0 and json.loads(out)["bit_exact"]
    tampered = bytearray(other)
    # Shift the conv's output zero point and fix the hash: the blob stays valid and computes the wrong thing.
    from tinymlaas.blob import format as F
    from tinymlaas.blob.reader import parse

    b = parse(other)
    op = b.ops[0]
    n = struct.unpack_from("<H", tampered, 14)[0]
    ops_off = next(F.SECTION.unpack_from(tampered, 64 + 16 * i)[1] for i in range(n)
                   if F.SECTION.unpack_from(tampered, 64 + 16 * i)[0] == F.SECTION_OPS)
    rec = F.op_record_size(len(op.inputs), 1, len(op.params))
    k = op.spec.params.index("out_off")
    struct.pack_into("<i", tampered, ops_off + rec - 4 * (len(op.params) - k), op.params[k] + 3)
    import hashlib

    tampered[F.SHA256_OFFSET:F.SHA256_OFFSET + 32] = hashlib.sha256(bytes(tampered[64:])).digest()
    p.write_bytes(bytes(tampered))
    code, out, _ = run_cli(capsys, p, "--reference", CORPUS / "conv_same_stride2.tflite", "--inputs", 2, "--json")
    r = json.loads(out)
    assert code == 1
    assert r["bit_exact"] is False and r["mismatches"] > 0 and r["max_abs_diff"] >= 1
    assert r["first_mismatch"]["input_set"] == 0


@pytest.mark.parametrize("runtime", ["host", "micropython"])
def test_wrong_version_blob_exits_2_with_loader_message(capsys, runtime):
    code, out, err = run_cli(capsys, VECTORS / "corrupt" / "wrong_version.blob", "--reference",
                             CORPUS / "conv_same_stride2.tflite", "--runtime", runtime)
    assert code == 2
    assert out == ""
    assert "invalid blob" in err and "version 2" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_hash_blob_exits_2(capsys):
    code, _, err = run_cli(capsys, VECTORS / "corrupt" / "bad_hash.blob", "--reference",
                           CORPUS / "conv_same_stride2.tflite")
    assert code == 2 and "SHA-256" in err


def test_blob_of_another_model_is_a_usage_error(capsys, blob_file):
    code, _, err = run_cli(capsys, blob_file, "--reference", CORPUS / "fc_rows.tflite")
    assert code == 2 and "do not match the model's inputs" in err


def test_missing_file_and_unavailable_runtime(capsys, blob_file, tmp_path):
    code, _, err = run_cli(capsys, tmp_path / "nope.blob", "--reference", MODEL)
    assert code == 2 and "cannot read blob" in err
    code, _, err = run_cli(capsys, blob_file, "--reference", MODEL, "--inputs", 0)
    assert code == 2 and "--inputs" in err


def test_real_process_exit_code(blob_file):
    """The installed entry point: exit status and JSON on stdout, through a real process."""
    proc = subprocess.run([sys.executable, "-m", "tinymlaas.cli", "verify", str(blob_file), "--reference",
                           str(MODEL), "--runtime", "micropython", "--inputs", "3", "--json"],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    r = json.loads(proc.stdout)
    assert r["bit_exact"] and r["runtime"] == "micropython" and r["reference"] == "tflite-micro"


def test_micropython_heap_and_stream_options(capsys, blob_file):
    code, out, err = run_cli(capsys, blob_file, "--reference", MODEL, "--runtime", "micropython", "--heap", "256k",
                             "--stream", "--inputs", 2, "--json")
    assert code == 0, err
    assert json.loads(out)["bit_exact"]
    code, _, err = run_cli(capsys, blob_file, "--reference", MODEL, "--heap", "256k")
    assert code == 2 and "micropython only" in err
