"""The bare-metal firmware under QEMU, on both boards: boot, capabilities, install over the UART protocol,
inference bit-exact with TensorFlow Lite Micro, instruction counting, and every kind of bad input answered with a
NAK while the device keeps running its previous model."""

import hashlib
import struct

import numpy as np
import pytest

from tinymlaas.devices.qemu import QemuDevice, QemuRuntime, decode_outputs, encode_inputs, _blob_io
from tinymlaas.devices.uart_protocol import (REQ_BEGIN, REQ_CAPS, REQ_CHUNK, REPLY_NAK, Nak, encode_frame)
from tinymlaas.paths import VECTORS, mlperf_model
from tinymlaas.verify.compare import compare
from tinymlaas.verify.inputs import input_specs, random_inputs
from tinymlaas.verify.judge import load_judge

from fw_helpers import compiled, header_with, mlperf_blob

BOARDS = ["mps2-an386", "stm32f4"]
BOARD_HZ = {"mps2-an386": 25_000_000, "stm32f4": 168_000_000}
SMALL = VECTORS / "conv_same_stride2.blob"


@pytest.mark.parametrize("board", BOARDS)
def test_boot_reports_capabilities(board):
    with QemuDevice(board) as dev:
        caps = dev.caps
        assert caps["board"] == board
        assert caps["abi"] == 1 and caps["format"] == 1 and caps["proto"] == 1
        assert caps["kernels"] == "cortex-m-dsp" and caps["ops"] == "1-22"
        assert caps["model"] == "none"
        # QEMU maps no STM32 flash interface (its flash is ROM): the firmware's probe falls back to the RAM store
        assert caps["storage"] == "ram"
        assert 16 * 1024 < caps["slot"] < caps["ram"] and caps["arena"] >= 16000
        assert dev.link.caps() == caps  # asking again gives the same answer


@pytest.mark.parametrize("board", BOARDS)
def test_systick_counts_instructions_under_icount(board):
    """A loop of exactly 2n instructions reads as 2n instructions, within one SysTick period plus the dozen
    instructions of the counter reads around it."""
    with QemuDevice(board) as dev:
        for n in (50_000, 400_000):
            instr = dev.instructions(dev.link.calibrate(n))
            assert abs(instr - 2 * n) <= 1e9 / dev.board.qemu_systick_hz + 40, (n, instr)


def run_on_device(dev, blob, inputs):
    ins, outs = _blob_io(blob)
    results, counts = [], []
    for one in inputs:
        data, cycles = dev.link.infer(encode_inputs(ins, one))
        results.append(decode_outputs(outs, data))
        counts.append(dev.instructions(cycles))
    return results, counts


@pytest.mark.parametrize("board", BOARDS)
def test_kws_installs_and_matches_tflm(board):
    data = mlperf_model("kws").read_bytes()
    inputs = random_inputs(input_specs(data), 2, seed=5)
    expected = load_judge(data).run(inputs)
    blob = mlperf_blob("kws")
    with QemuDevice(board) as dev:
        summary = dev.link.install(blob)
        assert "installed ops=12" in summary
        assert dev.link.caps()["model"] == blob[24:32].hex()
        got, counts = run_on_device(dev, blob, inputs + inputs[:1] + inputs[:1])
    assert compare(expected, got[:2])["bit_exact"] and np.array_equal(got[2], got[0]) and np.array_equal(got[3], got[0])
    # deterministic: the same input gives the same count, up to the SysTick period (the tick phase at the start
    # depends on when the host's bytes arrived) plus the wrap interrupts; from the second inference on (the first
    # may widen CONV_2D weights into the arena beyond arena_bytes, which the M4 kernels keep)
    tick = 1e9 / BOARD_HZ[board]
    assert abs(counts[2] - counts[3]) <= tick + 40, counts
    assert 2_656_768 / counts[0] > 0.1  # MAC per instruction, far above reference kernels (~0.02)


def test_tree_ensemble_on_the_m4_scores_like_the_host_reference():
    """A random forest (TREE_ENSEMBLE, integer compares of float32 keys) on the Cortex-M4 firmware: the int32
    scores are the host statement's, and the first argmax is scikit-learn's prediction."""
    from sklearn.ensemble import RandomForestClassifier

    from tinymlaas.backends.trees import compile_estimator, reference_scores

    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 3] > 0).astype(int) + (x[:, 5] > 0.7)
    model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(x[:300], y[:300])
    blob, tables = compile_estimator(model)
    rows = x[300:340]
    rt = QemuRuntime("stm32f4")
    got = np.stack([out[0][0] for out in rt.run(blob, [[r[None, :]] for r in rows])])
    assert np.array_equal(got, reference_scores(tables, rows))
    assert list(got.argmax(axis=1)) == list(model.predict(rows))
    assert all(0 < n < 20_000 for n in rt.last_instructions)  # 10 trees of depth <= 6: a few thousand


def test_ad_installs_and_matches_tflm_on_mps2():
    data = mlperf_model("ad").read_bytes()
    inputs = random_inputs(input_specs(data), 2, seed=5)
    expected = load_judge(data).run(inputs)
    rt = QemuRuntime("mps2-an386")
    got = rt.run(mlperf_blob("ad"), inputs)
    assert compare(expected, got)["bit_exact"]
    assert all(c > 0 for c in rt.last_instructions)


def test_ad_is_refused_by_stm32_before_any_transfer():
    """AD's 274 KB blob exceeds the STM32's RAM slot: BEGIN is refused, nothing else is sent."""
    with QemuDevice("stm32f4") as dev:
        with pytest.raises(Nak) as e:
            dev.link.install(mlperf_blob("ad"))
        assert e.value.name == "NO_ROOM" and e.value.request == REQ_BEGIN
        assert dev.link.caps()["model"] == "none"


def test_shared_vectors_on_mps2():
    """Every shared vector in tests/vectors, run by the firmware: the bytes TFLite Micro produced."""
    import json

    manifest = json.loads((VECTORS / "manifest.json").read_text())
    with QemuDevice("mps2-an386") as dev:
        for entry in manifest["models"]:
            blob = (VECTORS / entry["blob"]).read_bytes()
            if len(blob) > 40_000:
                continue  # large vectors (MLPerf AD) are covered by test_ad_installs_and_matches_tflm_on_mps2
            dev.link.install(blob)
            raw_in = (VECTORS / entry["inputs"]).read_bytes()
            raw_out = (VECTORS / entry["outputs"]).read_bytes()
            n_in, n_out = sum(entry["input_bytes"]), sum(entry["output_bytes"])
            for k in range(entry["count"]):
                out, _ = dev.link.infer(raw_in[k * n_in:(k + 1) * n_in])
                assert out == raw_out[k * n_out:(k + 1) * n_out], entry["name"]


def expect_nak(dev, code_name, timeout=60):
    """The next NAK must be of the given kind; returns its reason. Extra GARBAGE reports are skipped: on a loaded
    machine QEMU may deliver stray bytes in two bursts, which the device rightly reports twice."""
    while True:
        rtype, seq, body = dev.link.read_frame(timeout=timeout)
        if rtype == REPLY_NAK:
            nak = Nak(body[0], body[1], body[2:].decode())
            if nak.name == "GARBAGE" and code_name != "GARBAGE":
                continue
            assert nak.name == code_name, (nak.name, nak.reason)
            return nak.reason


@pytest.mark.parametrize("board", BOARDS)
def test_bad_input_is_refused_and_previous_model_kept(board):
    blob = SMALL.read_bytes()
    import json

    entry = next(m for m in json.loads((VECTORS / "manifest.json").read_text())["models"]
                 if m["name"] == "conv_same_stride2")
    n_in, n_out = entry["input_bytes"][0], entry["output_bytes"][0]
    x = (VECTORS / entry["inputs"]).read_bytes()[:n_in]
    want = (VECTORS / entry["outputs"]).read_bytes()[:n_out]
    with QemuDevice(board) as dev:
        link = dev.link
        link.install(blob)
        assert link.infer(x)[0] == want
        model = link.caps()["model"]

        # garbage between frames
        link.write_raw(b"\x00hello, not a frame\xff" * 3)
        assert "skipped" in expect_nak(dev, "GARBAGE")
        # a frame cut short: the line goes idle inside it
        link.write_raw(encode_frame(REQ_CAPS, 9, b"x" * 40)[:20])
        # the device's 1 s idle timeout is virtual time: under -icount 1e9 polling instructions, which QEMU runs
        # in 10-15 s beside one other busy job on 2 cores (measured) and beyond 60 s under a full test run
        assert "truncated" in expect_nak(dev, "TRUNCATED", timeout=240)
        # a damaged frame
        frame = bytearray(encode_frame(REQ_CAPS, 10, b"abc"))
        frame[7] ^= 0x40
        link.write_raw(frame)
        assert "CRC" in expect_nak(dev, "CRC")
        # a frame longer than the device accepts
        link.write_raw(encode_frame(REQ_CHUNK, 11, bytes(1100)))
        assert "longer" in expect_nak(dev, "TOO_LONG")
        # an unknown request
        with pytest.raises(Nak, match="unknown request"):
            link.request(0x55)
        # a chunk without BEGIN, and one at the wrong offset
        with pytest.raises(Nak) as e:
            link.request(REQ_CHUNK, struct.pack("<I", 64) + b"abc")
        assert e.value.name == "STATE"
        # a blob for another kernel ABI, another format version: refused at BEGIN, with the reason
        with pytest.raises(Nak) as e:
            link.install(header_with(blob, 12, "<H", 2) + blob[64:])
        assert e.value.name == "REJECTED" and "ABI 2" in e.value.reason
        with pytest.raises(Nak) as e:
            link.install(header_with(blob, 4, "<H", 2) + blob[64:])
        assert "format_version 2" in e.value.reason
        # a blob larger than the slot
        with pytest.raises(Nak) as e:
            link.install(header_with(blob, 16, "<I", 64 << 20) + blob[64:])
        assert e.value.name == "NO_ROOM"
        # a fully transferred blob whose hash does not match: rejected at COMMIT by the runtime's loader
        bad = bytearray(blob)
        bad[-1] ^= 1
        with pytest.raises(Nak) as e:
            link.install(bytes(bad))
        assert "SHA-256" in e.value.reason
        # a wrong offset mid-transfer
        link.request(REQ_BEGIN, blob[:64])
        with pytest.raises(Nak) as e:
            link.request(REQ_CHUNK, struct.pack("<I", 100) + blob[100:200])
        assert e.value.name == "OFFSET" and "expected offset 64" in e.value.reason

        # still alive, still the same model, still the same answer
        assert dev.alive()
        assert link.caps()["model"] == model
        assert link.infer(x)[0] == want


STACK_BYTES = {"mps2-an386": 16 * 1024, "stm32f4": 8 * 1024}  # boards/*/link.ld


@pytest.mark.parametrize("board,key", [("mps2-an386", "kws"), ("stm32f4", "kws"), ("stm32f4", "sww")])
def test_inference_stack_stays_inside_the_reserved_stack(board, key):
    """The deepest stack of an inference (the firmware paints the free stack before INVOKE and reports the
    deepest word written, PROFILE) stays below the board's reserved stack with room to spare: overflowing it
    would write over .bss silently. First and second inference (the second runs the widened-weight kernels)."""
    data = mlperf_model(key).read_bytes()
    x = random_inputs(input_specs(data), 1, seed=3)[0]
    blob = mlperf_blob(key)
    ins, _ = _blob_io(blob)
    with QemuDevice(board) as dev:
        dev.link.install(blob)
        depths = []
        for _ in range(2):
            dev.link.infer(encode_inputs(ins, x))
            stack, op_cycles = dev.link.profile()
            depths.append(stack)
            assert len(op_cycles) > 0 and sum(op_cycles) > 0
    assert all(2_000 < d < STACK_BYTES[board] - 512 for d in depths), depths
