"""Where an emulated device's code comes from (host/tinymlaas/devices/emulated.py, fleet.py): precompiled, every
package of it (hal, coap, lwm2m, tinyml) loads from the mpy-cross folder, as it would from a board's firmware. Run
as a script, the unix port put lwm2m_client/ first on sys.path and lwm2m and coap loaded from their sources."""

from aiocoap import numbers as an

from tinymlaas.devices.emulated import PROFILES, EmulatedDevice


def _code_line(dev):
    lines = [l for l in dev.lines if l.startswith("code ")]
    assert len(lines) == 1, dev.lines
    return dict(part.split("=", 1) for part in lines[0].split()[1:])


def test_precompiled_device_imports_lwm2m_and_coap_from_mpy(peer, tmp_path):
    dev = EmulatedDevice("coap://127.0.0.1:%d" % peer.port, "code-mpy", data_dir=tmp_path / "dev", profile="esp32")
    with dev:
        peer.accept_register()
        dev.wait_registered(10)
        assert dev.code_path, "mpy-cross is part of the test environment"
        folder = str(dev.code_path[0])
        files = _code_line(dev)
        assert files["lwm2m"] == folder + "/lwm2m/client.mpy"
        assert files["coap"] == folder + "/coap/endpoint.mpy"
        assert "-m" in dev.command() and not any(str(a).endswith(".py") for a in dev.command())
        # the board's heap above its code: the largest free block the device reports is about the profile's
        board_heap = PROFILES["esp32"]["board_heap"]
        largest = int(peer.request(an.GET, "/32770/0/1").payload)
        assert board_heap * 0.75 < largest <= board_heap * 1.05


def test_sources_fallback_runs_the_py_files(peer, tmp_path):
    dev = EmulatedDevice("coap://127.0.0.1:%d" % peer.port, "code-py", data_dir=tmp_path / "dev", profile="esp32",
                         precompiled=False)
    with dev:
        peer.accept_register()
        dev.wait_registered(20)
        assert dev.code_path == []
        files = _code_line(dev)
        assert files["lwm2m"].endswith("lwm2m_client/lwm2m/client.py")
        assert files["coap"].endswith("lwm2m_client/coap/endpoint.py")
