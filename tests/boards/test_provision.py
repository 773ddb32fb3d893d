"""`tinymlaas provision` end to end: mpremote's real transport code (in-process) drives the real MicroPython unix
port behind a pseudo-terminal (tests/boards/repl_board.py), which then registers with the service's real LwM2M
server over loopback UDP."""

import json

import pytest

from lwm2m_service import Service
from repl_board import ReplBoard
from esp_rom_emulator import SilentPort
from tinymlaas.boards import mpy_abi
from tinymlaas.boards.provision import ProvisionError, check_space, provision
from tinymlaas.cli import main
from tinymlaas.commands.provision import trust_for

X64_V63 = 6 | (3 << 8) | (2 << 10)          # what the unix port reports as sys.implementation._mpy


@pytest.fixture
def service():
    s = Service()
    yield s
    s.stop()


def provision_cli(board, service, endpoint, *extra):
    return main(["provision", "--port", board.port, "--server", service.uri, "--endpoint", endpoint,
                 "--data-dir", "flash", "--lib-dir", "lib", "--timeout", "20", *extra])


def test_provision_registers_and_lays_out_the_board(tmp_path, service, capsys):
    with ReplBoard(tmp_path, heap="512k") as board:
        rc = provision_cli(board, service, "board-1", "--wait-registered", service.api_url, "--json")
        out = json.loads(capsys.readouterr().out)
        assert rc == 0
        assert board.alive()                               # the device main keeps running after the port closes
        assert service.endpoints() == ["board-1"]
    assert out["registered_api"] is True and out["device_line"].startswith("registered /rd/")
    assert (out["micropython"], out["mpy"], out["arch"]) == ("1.29.0", "6.3", "x64")
    # Compiled for the board: every module is a .mpy whose header carries v6 and the x64 arch.
    mpys = sorted(p.relative_to(tmp_path / "lib").as_posix() for p in (tmp_path / "lib").rglob("*.mpy"))
    assert "tinyml/model.mpy" in mpys and "lwm2m/client.mpy" in mpys and "tinyml_device.mpy" in mpys
    assert "tinyml_repl.mpy" in mpys and not list((tmp_path / "lib").rglob("*.py"))
    header = (tmp_path / "lib" / "tinyml" / "kernels.mpy").read_bytes()[:4]
    assert header[0] == ord("M") and header[1] == 6 and header[2] >> 2 == 2   # 'M', version 6, arch x64
    assert len(mpys) + 2 == out["files"]
    config = json.loads((tmp_path / "tinyml.json").read_text())
    assert config == {"server": service.uri, "endpoint": "board-1", "data_dir": "flash", "lifetime": 300,
                      "trust_anchors": trust_for(None)["trust_anchors"]}   # the key store's public keys
    assert config["trust_anchors"]
    assert "tinyml_device.run" in (tmp_path / "main.py").read_text()
    assert (tmp_path / "flash").is_dir()


def test_interrupted_copy_leaves_no_main_and_rerun_succeeds(tmp_path, service):
    (tmp_path / "main.py").write_text("print('old firmware app')\n")
    copied = []

    def pull_the_cable(path):
        copied.append(path)
        if len(copied) == 6:
            raise KeyboardInterrupt                         # the user gives up half way

    with ReplBoard(tmp_path, heap="512k") as board:
        with pytest.raises(KeyboardInterrupt):
            provision(board.port, service.uri, "board-2", data_dir="flash", lib_dir="lib", wait_s=20,
                      log=lambda line: None, on_file=pull_the_cable)
        assert not (tmp_path / "main.py").exists()          # boots to a plain REPL, not into half the packages
        assert len(list((tmp_path / "lib").rglob("*.mpy"))) == 5
        result = provision(board.port, service.uri, "board-2", data_dir="flash", lib_dir="lib", wait_s=20,
                           log=lambda line: None)
        assert result["device_line"].startswith("registered /rd/")
        assert service.endpoints() == ["board-2"]
    assert (tmp_path / "main.py").exists()


def test_port_without_micropython(capsys):
    with SilentPort() as silent:
        rc = main(["provision", "--port", silent.port, "--server", "coap://127.0.0.1:5683", "--endpoint", "x"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tinymlaas provision: error: no MicroPython REPL answered on %s" % silent.port)


@pytest.mark.parametrize("args, message", [
    (["--server", "http://h:1"], "--server must be a coap://HOST:PORT URI"),
    (["--endpoint", "a b"], "--endpoint 'a b'"),
    (["--lifetime", "0"], "--lifetime must be at least 1"),
    (["--coprocessor", "spi:1"], "--coprocessor takes uart:ID[:BAUD]"),
    (["--oscore-keys", "/nonexistent/keys.json"], "cannot read OSCORE keys"),
])
def test_bad_arguments(capsys, args, message):
    base = {"--server": "coap://127.0.0.1:5683", "--endpoint": "x", "--lifetime": "300"}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["provision", "--port", "/dev/null"] + [v for kv in base.items() for v in kv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# The refusals are decided from what the board reports; these feed the reported numbers directly.
@pytest.mark.parametrize("mpy, message", [
    (5 | (2 << 10), "the board loads .mpy v5, this host's mpy-cross emits v6.3"),
    (6 | (3 << 8), "no native code emitter (.mpy v6.3, arch none)"),
    (6 | (2 << 8) | (10 << 10), "the board loads native .mpy v6.2, this host's mpy-cross emits v6.3"),
    (0, "no .mpy support"),
])
def test_abi_refusals_carry_the_numbers(mpy, message):
    with pytest.raises(mpy_abi.AbiError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        mpy_abi.check(mpy, host=(6, 3))


def test_abi_accepts_each_board_architecture():
    assert mpy_abi.check(X64_V63, host=(6, 3)) == "x64"
    assert mpy_abi.check(6 | (3 << 8) | (10 << 10), host=(6, 3)) == "xtensawin"     # ESP32 / ESP32-S3
    assert mpy_abi.check(6 | (3 << 8) | (7 << 10), host=(6, 3)) == "armv7emsp"      # STM32F4 (Cortex-M4F)


def test_space_refusal_counts_filesystem_blocks():
    files = [("lib/a.mpy", b"x" * 100), ("lib/b.mpy", b"x" * 5000)]
    need, free = check_space(files, {"block": 4096, "free_blocks": 10, "replaced": 0})
    assert (need, free) == (4096 + 8192, 40960)
    with pytest.raises(ProvisionError, match=r"need 12288 bytes of flash \(2 files, 4096-byte blocks\) but the "
                                             r"board has 8192 bytes free"):
        check_space(files, {"block": 4096, "free_blocks": 2, "replaced": 0})
    # Files about to be replaced count as free: a re-run on a full board still fits.
    assert check_space(files, {"block": 4096, "free_blocks": 2, "replaced": 5100})[1] == 8192 + 5100


def test_provision_with_a_coprocessor(tmp_path, service):
    """--coprocessor goes into the board's config, and the board comes up driving it: here the STM32 firmware in
    QEMU on a TCP port (a board would name its UART, uart:1:115200)."""
    from tinymlaas.devices.qemu import QemuDevice

    with QemuDevice("stm32f4", connect=False) as qemu, ReplBoard(tmp_path, heap="512k") as board:
        spec = "tcp:127.0.0.1:%d" % qemu.port
        result = provision(board.port, service.uri, "gw-1", data_dir="flash", lib_dir="lib", wait_s=30,
                           api_url=service.api_url, log=lambda line: None, coprocessor=spec)
        assert result["registered_api"] is True
    assert json.loads((tmp_path / "tinyml.json").read_text())["coprocessor"] == spec


def test_provision_with_oscore_keys(tmp_path, service):
    """--oscore-keys: the endpoint's keys go into the board's config and it registers under OSCORE (the server
    refuses that name without them)."""
    from tinymlaas.lwm2m.oscore import device_config_for, load_keys

    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"sec-board": {"master_secret": "00112233445566778899aabbccddeeff",
                                                   "device_id": "21", "server_id": "01"}}))
    service.call(_add_keys(service.server, load_keys(keys_file)))
    with ReplBoard(tmp_path, heap="512k") as board:
        result = provision(board.port, service.uri, "sec-board", data_dir="flash", lib_dir="lib", wait_s=30,
                           api_url=service.api_url, log=lambda line: None,
                           oscore=device_config_for(keys_file, "sec-board"))
        assert result["registered_api"] is True
        assert service.server.oscore.opened >= 1
    assert json.loads((tmp_path / "tinyml.json").read_text())["oscore"]["sender_id"] == "21"


async def _add_keys(server, keys):
    for k in keys:
        server.add_oscore_device(k)


def test_reprovision_a_running_device(tmp_path, service):
    """Provisioning again while the device main runs: Ctrl-C stops it (it de-registers), the new config wins."""
    with ReplBoard(tmp_path, heap="512k") as board:
        first = provision(board.port, service.uri, "old-name", data_dir="flash", lib_dir="lib", wait_s=20,
                          log=lambda line: None)
        assert service.endpoints() == ["old-name"]
        second = provision(board.port, service.uri, "new-name", data_dir="flash", lib_dir="lib", wait_s=20,
                           api_url=service.api_url, log=lambda line: None)
        assert second["registered_api"] is True
        assert service.endpoints() == ["new-name"]                 # the old registration was removed
        assert b"deregistered" in board.console
    assert first["files"] == second["files"]
    assert json.loads((tmp_path / "tinyml.json").read_text())["endpoint"] == "new-name"
