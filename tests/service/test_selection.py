"""Fit-to-device selection: every reason a variant is rejected, and the choice among those that fit."""

from tinymlaas.service.selection import RAM_MARGIN_BYTES, choose, judge, runtime_overhead

ESP32 = {"runtime": "tinyml-mpy", "abi": 1, "ops": ["CONV_2D", "FULLY_CONNECTED", "SOFTMAX"],
         "heap_free": 110_000, "largest_block": 90_000, "fs_free": 1_000_000, "mac_rate": 2_000_000}


def variant(vid, ram, flash=50_000, acc=0.9, ops=("CONV_2D",), kind="tmlb", abi=1, macs=1_000_000):
    return {"id": vid, "ram_bytes": ram, "flash_bytes": flash, "accuracy": acc, "ops": list(ops),
            "artifact_kind": kind, "features": {"abi": abi}, "macs": macs}


def test_most_accurate_fitting_variant_is_chosen():
    big = variant(1, ram=200_000, acc=0.95)
    mid = variant(2, ram=40_000, acc=0.91)
    small = variant(3, ram=10_000, acc=0.85)
    best, verdicts = choose([big, mid, small], ESP32)
    assert best.variant["id"] == 2
    assert [v.fits for v in verdicts] == [False, True, True]
    assert "needs 224576 B of RAM (arena 200000 + 32-bit runtime 24576)" in verdicts[0].summary()


def test_a_64_bit_device_needs_more_runtime_ram():
    assert runtime_overhead(dict(ESP32, arch="x86_64")) > runtime_overhead(ESP32)


def test_ram_limit_counts_runtime_overhead_and_margin():
    limit = ESP32["largest_block"] - RAM_MARGIN_BYTES - runtime_overhead(ESP32)
    assert judge(variant(1, ram=limit), ESP32).fits
    assert not judge(variant(1, ram=limit + 1), ESP32).fits


def test_each_rejection_reason_is_stated():
    v = judge(variant(1, ram=1000, flash=2_000_000, ops=("CONV_2D", "LSTM"), abi=2), ESP32, latency_budget_ms=0.1)
    text = " | ".join(v.reasons)
    for expected in ("ABI 2", "lacks op(s) LSTM", "flash", "budget"):
        assert expected in text


def test_an_artifact_for_another_runtime_is_rejected_for_that_alone():
    v = judge(variant(1, ram=10**9, kind="tflite"), ESP32)
    assert v.reasons == ["a tflite artifact (runtime None) does not run on the device's tinyml-mpy runtime"]


def test_nothing_fits_returns_none():
    best, verdicts = choose([variant(1, ram=500_000)], ESP32)
    assert best is None and not verdicts[0].fits


def test_board_profile_capabilities_for_explain_without_a_device():
    from tinymlaas.commands.explain import profile_capabilities

    esp32 = profile_capabilities("esp32")
    assert esp32["runtime"] == "tinyml-mpy" and "CONV_2D" in esp32["ops"] and esp32["largest_block"] < 110 * 1024
    best, _ = choose([variant(1, ram=200_000), variant(2, ram=20_000)], esp32)
    assert best.variant["id"] == 2


def test_the_variant_a_device_runs_is_not_refused_for_the_heap_it_holds():
    # The device's figures are taken with its model loaded: 6 KB left in the largest block once its 60 KB arena
    # is allocated. That model runs there; the selection must not call it too big for the device.
    running = dict(variant(1, ram=60_000), artifact_sha256="ab" * 32)
    caps = dict(ESP32, largest_block=6_000, model_sha256="ab" * 32, model_arena=60_000)
    v = judge(running, caps)
    assert v.fits and v.running and v.reasons == []
    best, _ = choose([running], caps)
    assert best is not None and best.summary().startswith("chosen: runs on the device now")


def test_an_install_counts_the_heap_the_running_model_frees():
    # Another variant of the same size fits where the running one's arena and runtime state will be freed ...
    caps = dict(ESP32, largest_block=30_000, model_sha256="ab" * 32, model_arena=60_000)
    other = dict(variant(2, ram=60_000), artifact_sha256="cd" * 32)
    v = judge(other, caps)
    assert v.fits and not v.running
    assert v.ram_available == 30_000 + 60_000 + runtime_overhead(ESP32) - RAM_MARGIN_BYTES
    # ... and says so when it does not fit; a device running nothing has only its largest free block
    big = judge(dict(variant(3, ram=120_000), artifact_sha256="ef" * 32), caps)
    assert not big.fits and "+ %d the running model frees" % (60_000 + runtime_overhead(ESP32)) in big.reasons[0]
    assert not judge(other, dict(ESP32, largest_block=30_000)).fits


def test_among_equals_the_running_variant_is_kept():
    a = dict(variant(1, ram=20_000, acc=0.9), artifact_sha256="ab" * 32)
    b = dict(variant(2, ram=10_000, acc=0.9), artifact_sha256="cd" * 32)
    best, _ = choose([a, b], dict(ESP32, model_sha256="ab" * 32, model_arena=20_000))
    assert best.variant["id"] == 1
