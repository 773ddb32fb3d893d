"""Telemetry: samples taken whenever the service reads a device's TinyML object (a real MicroPython device over
LwM2M on loopback), kept results, retention, CSV export."""

import asyncio
import csv
import io
import time

import pytest

from tinymlaas.db import Database
from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.service.core import Service
from tinymlaas.service.telemetry import Telemetry

from e2e_helpers import wait_for

pytestmark = pytest.mark.xdist_group("e2e")


def test_a_sample_per_capabilities_read_at_registration_and_refresh(tmp_path):
    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        dev = EmulatedDevice("coap://127.0.0.1:%d" % svc.server.port, "d1", profile="esp32",
                             data_dir=tmp_path / "d1").start()
        try:
            await wait_for(lambda: svc.telemetry.samples("d1"), what="the registration's sample")
            caps = await svc.server.refresh_capabilities("d1")
            samples = svc.telemetry.samples("d1")
            assert len(samples) == 2 and samples[0]["at"] <= samples[1]["at"]
            last = samples[-1]
            assert last["free_heap"] == caps["Free Heap"] > 0
            assert last["largest_block"] == caps["Largest Free Block"] > 0
            assert last["flash_free"] == caps["Flash Free"] > 0
            assert last["inference_count"] == 0 and last["latency_us"] is not None
            assert [v for _, v in svc.telemetry.series("d1", "free_heap")] == [s["free_heap"] for s in samples]
            await wait_for(lambda: "d1" in svc.telemetry.device_info(), what="the Device object's read")
            info = svc.telemetry.device_info()["d1"]
            assert info["Model Number"] == "ESP32-WROOM-32 (4 MB flash)" and info["Device Type"] == "esp32"
        finally:
            dev.stop()
            await svc.stop()

    asyncio.run(main())


def test_retention_deletes_old_rows_as_new_ones_arrive(tmp_path):
    tel = Telemetry(Database(tmp_path / "t.db"), retention_days=1)
    now = time.time()
    tel.record("d1", {"Free Heap": 1000}, at=now - 3 * 86400)
    tel.keep_result("d1", "kws", 3, "no", [1, 2, 3], 1200, at=now - 3 * 86400)
    tel.record("d1", {"Free Heap": 900}, at=now)
    assert [s["free_heap"] for s in tel.samples("d1")] == [900]
    assert tel.results("d1") == []
    with pytest.raises(ValueError, match="positive"):
        Telemetry(tel.db, retention_days=0)


def test_csv_export_of_samples_and_kept_results(tmp_path):
    tel = Telemetry(Database(tmp_path / "t.db"))
    tel.record("d1", {"Free Heap": 1000, "Largest Free Block": 800, "Flash Free": 4096, "Inference Count": 2,
                      "Last Latency": "1500"}, at=0)
    tel.record("=cmd|x", {"Free Heap": 5}, at=60)
    rows = list(csv.DictReader(io.StringIO(tel.csv())))
    assert rows[0]["time_utc"] == "1970-01-01T00:01:00Z" and rows[0]["endpoint"] == "'=cmd|x"   # inert in a spreadsheet
    assert rows[0]["largest_block"] == ""
    assert {k: rows[1][k] for k in ("endpoint", "free_heap", "largest_block", "flash_free", "inference_count",
                                    "latency_us")} == {"endpoint": "d1", "free_heap": "1000", "largest_block": "800",
                                                       "flash_free": "4096", "inference_count": "2", "latency_us": "1500"}
    assert len(list(csv.DictReader(io.StringIO(tel.csv("d1"))))) == 1

    rid = tel.keep_result("d1", "vibration", 2, "bearing", [-128, 5, 120], 830, at=120)
    kept = tel.results("d1")
    assert kept[0]["id"] == rid and kept[0]["scores"] == [-128, 5, 120] and kept[0]["label"] == "bearing"
    rows = list(csv.DictReader(io.StringIO(tel.csv("d1", kind="results"))))
    assert rows == [{"time_utc": "1970-01-01T00:02:00Z", "endpoint": "d1", "at": "120.0", "model": "vibration",
                     "top_class": "2", "label": "bearing", "scores": "[-128, 5, 120]", "latency_us": "830"}]
