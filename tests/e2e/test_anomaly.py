"""Anomaly detection end to end (issue 15 item 3): an autoencoder registered with --task anomaly gets its
threshold calibrated on normal data; deployed to the real MicroPython device (emulated esp32), it scores every
inference and reports each alarm with LwM2M Send (POST /dp, SenML-CBOR) over real UDP, which the server stores and
the API and console show. A malformed Send and one from an unregistered peer get a clear error, store nothing,
and a good Send afterwards is taken; a Send from a port the device's NAT just re-mapped it to is refused 4.01,
the device Updates from there and sends it again."""

import asyncio
import pickle
import socket

import aiohttp
import cbor2
import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from aiocoap import Message
from aiocoap.numbers.codes import Code

from tinymlaas.demo import vibration
from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.lwm2m.lossy_proxy import LossyProxy
from tinymlaas.service import anomaly
from tinymlaas.service.core import Service
from tinymlaas.service.inference import INPUT
from tinymlaas.web import build_api

from e2e_helpers import wait_for, wait_for_value

pytestmark = pytest.mark.xdist_group("e2e")


@pytest.fixture(scope="module")
def anomaly_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("anomaly")
    normal = vibration.normal_features(400, seed=0)
    vibration.autoencoder(normal).save(folder / "ae.keras")
    np.save(folder / "normal.npy", normal)
    np.save(folder / "faults.npy", vibration.fault_features(150, seed=1))
    forest = IsolationForest(n_estimators=20, max_samples=128, random_state=0).fit(normal)
    (folder / "forest.pkl").write_bytes(pickle.dumps(forest))
    return folder


def coap(sock, addr, path, payload=b"", fmt=112, query=(), mid=[0x4000]):
    """One CON POST from a raw socket (run in a thread: the server answers on the test's event loop) -> the
    response Message."""
    mid[0] += 1
    token = mid[0].to_bytes(2, "big")
    opts = [(11, p.encode()) for p in path] + ([(12, fmt.to_bytes(1, "big") if fmt else b"")] if fmt is not None
                                               else []) + [(15, q.encode()) for q in query]
    data, last = bytearray([0x40 | len(token), 0x02]) + mid[0].to_bytes(2, "big") + token, 0
    for number, value in opts:     # deltas and lengths below 13 here
        data += bytes([(number - last) << 4 | len(value)]) + value
        last = number
    sock.sendto(bytes(data) + (b"\xff" + payload if payload else b""), addr)
    while True:
        r = Message.decode(sock.recv(2048))
        if r.mid == mid[0]:
            return r


def test_anomaly_model_alarms_reach_the_server_by_lwm2m_send(tmp_path, anomaly_model):
    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        server = svc.server
        addr = ("127.0.0.1", server.port)
        nat = await LossyProxy.start(addr, loss=0.0)    # the pump's NAT: re-maps it below
        dev = EmulatedDevice("coap://127.0.0.1:%d" % nat.address[1], "pump", profile="esp32",
                             data_dir=tmp_path / "dev", trust=svc.signing.device_config()).start()
        fan = EmulatedDevice("coap://127.0.0.1:%d" % server.port, "fan", profile="cortex-m4",
                             data_dir=tmp_path / "fan", trust=svc.signing.device_config()).start()
        try:
            model, errors = await asyncio.to_thread(
                svc.catalog.add, anomaly_model / "ae.keras", "vib-ad", task="anomaly",
                datasets={"normal": anomaly_model / "normal.npy", "anomalous": anomaly_model / "faults.npy"},
                metadata={"false_alarm_rate": 0.02})
            variant = svc.registry.variants(model)[0]
            a = variant["report"]["anomaly"]
            assert a["score"] == "mse" and a["false_alarm_target"] == 0.02 and a["normal_samples"] == 400
            assert a["false_alarm_rate"] <= 0.05 and a["detection_rate"] > 0.2, a
            assert "false alarms" in anomaly.summary(variant)

            await wait_for(lambda: server.find("pump") and server.find("pump").capabilities, 60, "capabilities")
            dep = await svc.engine.run(svc.create_deployment("vib-ad", ["pump"]))
            assert dep["devices"][0]["state"] == "active", dep
            assert await server.read_value("pump", "/32770/0/33") == pytest.approx(a["threshold"], rel=1e-12)

            # two windows under the threshold, three above it, by the host's score of the same blob
            blob = svc.registry.artifact(variant)
            normal = np.load(anomaly_model / "normal.npy")[:40]
            faults = np.load(anomaly_model / "faults.npy")[:60]
            quiet = normal[anomaly.scores(blob, normal) < a["threshold"]][:2]
            loud_scores = anomaly.scores(blob, faults)
            loud = faults[loud_scores > a["threshold"]][:3]
            expected = loud_scores[loud_scores > a["threshold"]][:3]
            await svc.inference.run("pump", quiet)
            assert await server.read_value("pump", "/32770/0/35") == 0
            assert server.reports.recent("pump") == []
            await svc.inference.run("pump", loud)
            await wait_for(lambda: server.reports.count("pump") == 3, 20, "three alarms stored")
            alarms = server.reports.recent("pump")[::-1]
            assert [r["alarm_count"] for r in alarms] == [1, 2, 3]
            assert [r["inference_count"] for r in alarms] == [3, 4, 5]
            assert all(r["model"] == "vib-ad" and r["threshold"] == pytest.approx(a["threshold"]) for r in alarms)
            assert [r["score"] for r in alarms] == pytest.approx(list(expected), rel=1e-9)   # the host's score
            await wait_for_value(server, "pump", "/32770/0/36", lambda v: v == 3, 10)
            assert await server.read_value("pump", "/32770/0/34") == pytest.approx(expected[-1], rel=1e-9)
            api = build_api(server, svc, auth=False)
            await api.start("127.0.0.1", 0)
            try:
                async with aiohttp.ClientSession("http://127.0.0.1:%d" % api.port) as http:
                    async with http.get("/api/devices/pump/reports?kind=alarm&limit=2") as r:
                        assert r.status == 200
                        assert [x["alarm_count"] for x in await r.json()] == [3, 2]
                    async with http.get("/console/devices/pump") as r:
                        page = await r.text()
                        assert r.status == 200 and "Alarms" in page and "3 stored" in page
            finally:
                await api.stop()

            # a malformed Send from the device's own address (its registration, a raw socket) and one from a peer
            # nobody registered: refused with the reason, nothing stored, the good one after it is taken
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(5)
            sock.bind(("127.0.0.1", 0))

            def ask(*args, **kw):
                return asyncio.to_thread(coap, sock, addr, *args, **kw)
            try:
                r = await ask(("dp",), cbor2.dumps([{-2: "/32770/0/", 0: "35", 2: 1}]))
                assert r.code == Code.UNAUTHORIZED and b"no device registered" in r.payload
                reg = await ask(("rd",), b"</32770/0>", fmt=40, query=("ep=raw", "lt=60", "lwm2m=1.1"))
                assert reg.code == Code.CREATED
                good = cbor2.dumps([{-2: "/32770/0/", 0: "34", 2: 0.5}, {0: "35", 2: 7}])
                for bad, code, why in ((good[:-3], Code.BAD_REQUEST, b"malformed Send"),
                                       (cbor2.dumps([{-2: "/3/0/", 0: "0", 3: "x"}]), Code.BAD_REQUEST,
                                        b"not in an object instance the device registered"),
                                       (cbor2.dumps({"not": "a pack"}), Code.BAD_REQUEST, b"malformed Send")):
                    r = await ask(("dp",), bad)
                    assert r.code == code and why in r.payload, (r, r.payload)
                assert (await ask(("dp",), good, fmt=0)).code == Code.UNSUPPORTED_CONTENT_FORMAT
                assert server.reports.count("raw") == 0 and server.reports.count("pump") == 3
                assert (await ask(("dp",), good)).code == Code.CHANGED
                assert [(x["score"], x["alarm_count"]) for x in server.reports.recent("raw")] == [(0.5, 7)]
            finally:
                sock.close()
            assert server.reports.count("pump") == 3

            # the pump's NAT gives it a new port just as it sends its next alarm: that Send comes from an address
            # the server never saw (4.01, as behind a load balancer after a failover); the device Updates from
            # there and sends it again: stored, and the registration now answers at the new port
            # (the input written by hand: inference.run's observation of the result would end with the re-mapping,
            # its notifications coming from the new port too, as an observation does behind a NAT)
            old_address = server.find("pump").address
            nat.remap_when = lambda data: Message.decode(data).opt.uri_path == ("dp",)
            _, _, io = await svc.inference.installed("pump")
            await server.write("pump", "/32770/0/%d" % INPUT, io.encode(loud[:1])[0])
            await wait_for(lambda: server.reports.count("pump") == 4, 20, "the alarm sent again after the Update")
            assert server.reports.recent("pump")[0]["alarm_count"] == 4
            assert server.find("pump").address != old_address and nat.remap_when is None
            assert await server.read_value("pump", "/32770/0/35") == 4     # reached at its new port

            # an IsolationForest on the tree-ensemble op: its score is minus the forest's path length (fixed
            # point); the device's equals the host's exactly
            forest, _ = await asyncio.to_thread(
                svc.catalog.add, anomaly_model / "forest.pkl", "vib-if", task="anomaly",
                datasets={"normal": anomaly_model / "normal.npy"}, metadata={"false_alarm_rate": 0.02})
            fv = next(v for v in svc.registry.variants(forest) if v["backend"] == "trees")
            assert fv["report"]["anomaly"]["score"] == "output"
            await wait_for(lambda: server.find("fan") and server.find("fan").capabilities, 60, "fan capabilities")
            dep = await svc.engine.run(svc.create_deployment("vib-if", ["fan"]))
            assert dep["state"] == "completed", [(d["state"], d["reason"]) for d in dep["devices"]]
            outliers = normal[:2] * 3.0                          # far from anything the forest saw
            host = anomaly.scores(svc.registry.artifact(fv), outliers)
            assert all(host > fv["report"]["anomaly"]["threshold"])
            await svc.inference.run("fan", outliers)
            await wait_for(lambda: server.reports.count("fan") == 2, 20, "the forest's alarms")
            got = server.reports.recent("fan")[::-1]
            assert [(r["model"], r["alarm_count"], r["score"]) for r in got] == [
                ("vib-if", 1, host[0]), ("vib-if", 2, host[1])]
        except BaseException:
            print("\n".join(dev.lines[-30:] + fan.lines[-30:]))
            raise
        finally:
            dev.stop()
            fan.stop()
            nat.close()
            await svc.stop()

    asyncio.run(main())
