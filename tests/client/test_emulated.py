"""host/tinymlaas/devices/emulated.py and `tinymlaas device emulate`: a supervised MicroPython device process
with a board profile, restarted after a reboot, de-registering on stop."""

import shutil
import subprocess

from aiocoap import numbers as an

from coap_test_peer import push, wait_value
from packages import package

from tinymlaas.devices.emulated import PROFILES, EmulatedDevice

TINYMLAAS = shutil.which("tinymlaas")


def test_emulated_device_profile_reboot_and_deregister(peer, tmp_path):
    dev = EmulatedDevice("coap://127.0.0.1:%d" % peer.port, "emu-1", data_dir=tmp_path / "dev",
                         profile="cortex-m4")
    with dev:
        req = peer.accept_register()
        assert "ep=emu-1" in req.opt.uri_query
        dev.wait_registered(10)
        # the device runs mpy-cross output, as a board would
        assert dev.code_path and (dev.code_path[0] / "lwm2m" / "client.mpy").is_file()
        assert peer.request(an.GET, "/3/0/1").payload == PROFILES["cortex-m4"]["model"].encode()
        assert peer.request(an.GET, "/3/0/17").payload == b"cortex-m4"
        flash_free = int(peer.request(an.GET, "/32770/0/3").payload)
        assert 0 < flash_free <= PROFILES["cortex-m4"]["flash_bytes"]
        heap_total = int(peer.request(an.GET, "/32770/0/2").payload)
        assert heap_total <= dev.heap
        # the board it stands for, as that board's MicroPython reports itself: not the unix port's "linux"
        assert peer.request(an.GET, "/32770/0/4").payload == b"pyboard"
        assert peer.request(an.GET, "/32770/0/5").payload == b"PYBv1.1 with STM32F405RG"
        assert peer.request(an.GET, "/32770/0/6").payload.endswith(b" armv7emsp")
        # reboot: the process exits, the supervisor starts it again on the same flash directory
        assert peer.request(an.POST, "/3/0/4").code == an.CHANGED
        req = peer.accept_register(location=("rd", "9"))
        assert "ep=emu-1" in req.opt.uri_query
        assert dev.reboots == 1
        dev.wait_registered(10)
    # stop: SIGINT -> the client de-registers
    dereg = peer.recv(timeout=5)
    assert dereg.code == an.DELETE and list(dereg.opt.uri_path) == ["rd", "9"]
    assert not dev.running()


def test_cli_rejects_bad_arguments():
    r = subprocess.run([TINYMLAAS, "device", "emulate", "--server", "http://x",
                        "--endpoint", "a"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "coap://" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([TINYMLAAS, "device", "emulate", "--server", "coap://h:1",
                        "--endpoint", "a", "--heap", "lots"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a size" in r.stderr
    r = subprocess.run([TINYMLAAS, "device", "emulate", "--server", "coap://h:1",
                        "--endpoint", "a", "--coprocessor", "stm32f7"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "stm32f4" in r.stderr and "tcp:HOST:PORT" in r.stderr


def test_installed_model_survives_reboot(peer, tmp_path):
    pkg, _, _ = package("fc_no_bias_softmax", name="keeper", version="7")
    with EmulatedDevice("coap://127.0.0.1:%d" % peer.port, "emu-2", data_dir=tmp_path / "dev", profile="esp32"):
        peer.accept_register()
        assert [peer.request(an.GET, "/32770/0/%d" % r).payload for r in (4, 5)] == \
            [b"esp32", b"Generic ESP32 module with ESP32"]
        assert peer.request(an.GET, "/32770/0/6").payload.endswith(b" xtensawin")
        assert push(peer, "/5/0/0", pkg).code == an.CHANGED
        assert peer.request(an.POST, "/5/0/2").code == an.CHANGED
        assert wait_value(peer, "/5/0/5", b"1") == b"1"
        assert peer.request(an.POST, "/3/0/4").code == an.CHANGED  # reboot
        peer.accept_register(location=("rd", "9"))
        assert peer.request(an.GET, "/32770/0/11").payload == b"keeper"
        assert peer.request(an.GET, "/32770/0/12").payload == b"7"
        assert peer.request(an.GET, "/32770/0/16").payload == b"active"
        assert peer.request(an.GET, "/5/0/7").payload == b"7"


def test_sigterm_stops_the_device_and_its_coprocessor(tmp_path):
    """A supervisor's SIGTERM ends `device emulate` like Ctrl-C: the micropython process and the QEMU co-processor
    it started are gone afterwards, not orphaned."""
    import os
    import re
    import signal
    import socket
    import time

    proc = subprocess.Popen([TINYMLAAS, "device", "emulate", "--server", "coap://127.0.0.1:9", "--endpoint", "t1",
                             "--data-dir", str(tmp_path / "d"), "--coprocessor", "stm32f4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        port = int(re.search(r"tcp:127.0.0.1:(\d+)", first).group(1))
        assert "emulated esp32 device t1" in proc.stdout.readline()
        pids, deadline = [], time.monotonic() + 20
        while not pids and time.monotonic() < deadline:  # the micropython process (registering with nobody)
            time.sleep(0.2)
            pids = subprocess.run(["pgrep", "-f", str(tmp_path / "d")], capture_output=True, text=True).stdout.split()
        assert pids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    assert not any(os.path.exists("/proc/%s" % p) for p in pids)
    with socket.socket() as s:  # QEMU's UART port is closed: QEMU has exited
        assert s.connect_ex(("127.0.0.1", port)) != 0
