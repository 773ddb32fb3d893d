"""Q-Block1 / Q-Block2 (RFC 9177) delivery, over real UDP to the real MicroPython device (tinyml_device.py in the
unix port) through the seeded lossy proxy: a push (Q-Block1 into /5/0/0) and a pull (the device's Q-Block2 GETs
from /fw/<sha256>) of the KWS package at 10 % and 20 % loss each way end in Downloaded, i.e. the installer's
SHA-256 and signature checks passed on exactly the bytes sent, with retransmission counters that show the loss was
recovered block by block (no restart, bounded resends). A device with Q-Block off and libcoap 4.3.1 (no Q-Block)
get plain Block1/Block2; the device's live heap stays bounded during a lossy pull; the missing-blocks payload is
checked against exact CBOR bytes. No timing is asserted (bench/lwm2m_delivery.py measures)."""

import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tinymlaas.compiler import compile_tflite
from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import trust_args
from tinymlaas.lwm2m.lossy_proxy import LossyProxy
from tinymlaas.lwm2m.oscore import DeviceKeys
from tinymlaas.lwm2m.push import PushFailed
from tinymlaas.lwm2m.qblock import MAX_PAYLOADS, decode_missing, encode_missing
from tinymlaas.lwm2m.qpush import QBlock1Push, Unsupported
from tinymlaas.package import build_package
from tinymlaas.paths import LWM2M_CLIENT, mlperf_model
from tinymlaas.service.core import reference_vectors

LIBCOAP_SERVER = shutil.which("coap-server-notls") or shutil.which("coap-server")
LIBCOAP_CLIENT = shutil.which("coap-client-notls") or shutil.which("coap-client")
MEASURE_QPULL = Path(__file__).parents[1] / "client" / "mpy" / "measure_qpull.py"
_PACKAGE = []


def kws_package(version="1"):
    """The MLPerf Tiny KWS model compiled and packaged with 2 golden vectors (~35 KB, 34 blocks of 1024)."""
    if not _PACKAGE:
        _PACKAGE.append(compile_tflite(mlperf_model("kws")).blob)
    blob = _PACKAGE[0]
    return build_package(blob, "kws", version, reference_vectors(blob)[:2])


def test_missing_blocks_payload_is_a_cbor_sequence_of_uints():
    # RFC 8949 §3.1: 0..23 in the initial byte, then 1, 2 and 4 byte arguments (0x18, 0x19, 0x1a)
    nums = [0, 23, 24, 255, 256, 65535, 65536]
    assert encode_missing(nums) == bytes.fromhex("00" "17" "1818" "18ff" "190100" "19ffff" "1a00010000")
    assert decode_missing(encode_missing(nums)) == nums
    for bad in (b"\x20", b"\x18", b"\x41a", b"\xf5", b"\x1a\x00\x10\x00\x00"):  # -1, cut, bytes, true, >= 2^20
        with pytest.raises(ValueError):
            decode_missing(bad)


class Device:
    """tinyml_device.py registered with the server through a lossy proxy; the server thread's loop runs both."""

    def __init__(self, st, tmp_path, loss, seed=5, q_window=None, ack_timeout_ms=500, oscore=None):
        self.st = st
        self.proxy = st.call(LossyProxy.start(("127.0.0.1", st.port), loss, seed)) if loss else None
        port = self.proxy.address[1] if self.proxy else st.port
        args = ["--server", "coap://127.0.0.1:%d" % port, "--endpoint", "q-dev", "--data-dir", str(tmp_path / "flash"),
                "--ack-timeout-ms", str(ack_timeout_ms), *trust_args()]
        if q_window is not None:
            args += ["--q-window", str(q_window)]
        if oscore is not None:      # lwm2m.oscore.DeviceKeys: every datagram with the server protected
            st.server.add_oscore_device(oscore)
            args += ["--oscore", json.dumps(oscore.device_config())]
        self.proc = subprocess.Popen(unixport.command(LWM2M_CLIENT / "tinyml_device.py", "1m", args),
                                     env=unixport.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.port = port

        async def registered():
            q = st.server.subscribe()
            while not st.server.find("q-dev"):
                await asyncio.wait_for(q.get(), 30)

        st.call(registered())

    def downloaded(self, sha=None, size=None, timeout=120):
        """Poll /5/0/3 State until 2 (Downloaded: the installer accepted the package). For a pull, first wait
        (without a datagram) until the server has served all `size` bytes of package `sha`. The transfer ran on
        the lossy link; these polls do not: the proxy stops dropping, so a lost poll (aiocoap sends one request at
        a time to a peer and retransmits from 2 s) does not make the check slow."""
        end = time.monotonic() + timeout
        while sha and max(self.st.server.downloads.get(sha, {}).values(), default=0) < size:
            assert time.monotonic() < end, "the package was never served in full"
            time.sleep(0.05)
        if self.proxy:
            self.proxy.loss = 0.0
        while time.monotonic() < end:
            try:
                fw = self.st.call(self.st.server.read("q-dev", "/5/0", timeout=10))
            except Exception:
                continue
            if fw.get((5, 0, 3)) == 2:
                return fw
            assert fw.get((5, 0, 5)) in (0, 1), "download failed with Update Result %s" % fw.get((5, 0, 5))
            time.sleep(0.1)
        raise AssertionError("never Downloaded")

    def close(self):
        self.proc.terminate()
        out = self.proc.communicate(timeout=10)[0].decode(errors="replace")
        if self.proxy:
            self.st.sync(self.proxy.close)
        return out


@pytest.fixture
def device(lwm2m_server, tmp_path):
    made = []

    def make(*args, **kw):
        made.append(Device(lwm2m_server, tmp_path, *args, **kw))
        return made[-1]

    yield make
    for d in made:
        out = d.close()
        assert "Traceback" not in out, out


@pytest.mark.parametrize("loss", [0.1, 0.2])
def test_q_block1_push_through_loss(lwm2m_server, device, loss):
    pkg = kws_package()
    blocks = -(-len(pkg) // 1024)
    dev = device(loss)
    r = lwm2m_server.call(lwm2m_server.server.push_package("q-dev", pkg, ack_timeout=0.5, max_retransmit=8), 120)
    assert (r.method, r.final_code, r.restarts, r.total) == ("q-block1", "2.04", 0, len(pkg))
    assert r.blocks == blocks + r.block_resends and 0 < r.block_resends < 2 * blocks
    assert dev.proxy.stats["dropped_up"] + dev.proxy.stats["dropped_down"] > 0
    dev.downloaded()  # State 2: the device's installer checked SHA-256 and signature of what it stored


@pytest.mark.parametrize("loss", [0.1, 0.2])
def test_q_block2_pull_through_loss(lwm2m_server, device, loss):
    pkg = kws_package()
    blocks = -(-len(pkg) // 1024)
    dev = device(loss)
    uri = lwm2m_server.server.offer_package(pkg).replace(":%d/" % lwm2m_server.port, ":%d/" % dev.port)
    lwm2m_server.call(lwm2m_server.server.write("q-dev", "/5/0/1", uri, timeout=30), 40)
    dev.downloaded(hashlib.sha256(pkg).hexdigest(), len(pkg))
    stats = lwm2m_server.server.qblock.stats
    # every block went out as Q-Block2, the lost ones again, and no more than the link made necessary
    assert stats["refused"] == 0 and stats["q_block2_requests"] > 0
    assert blocks <= stats["q_block2_blocks"] < 2 * blocks


def test_q_block1_push_under_oscore_through_loss(lwm2m_server, device):
    pkg = kws_package()
    blocks = -(-len(pkg) // 1024)
    keys = DeviceKeys.generate("q-dev")
    dev = device(0.1, oscore=keys)
    server = lwm2m_server.server
    r = lwm2m_server.call(server.push_package("q-dev", pkg, ack_timeout=0.5, max_retransmit=8), 120)
    assert (r.method, r.final_code, r.restarts, r.total) == ("q-block1", "2.04", 0, len(pkg))
    assert r.blocks == blocks + r.block_resends and 0 < r.block_resends < 2 * blocks
    print("Q-Block1 under OSCORE at 10 %% loss: %d blocks, %d resent, %.2f s" % (r.blocks, r.block_resends,
                                                                            r.seconds))
    # the device answers no unprotected request (its 4.01 Echo came first, the probe again with it: one resend);
    # read under OSCORE too: the installer checked what the protected blocks carried
    dev.downloaded()


def test_failed_q_block1_push_resumes_from_the_devices_acknowledged_block(lwm2m_server, device):
    pkg = kws_package()
    blocks = -(-len(pkg) // 1024)
    dev = device(1e-9)          # through the proxy, which loses nothing until it is cut

    def cut(done, total):
        if done >= total // 2:
            dev.proxy.loss = 1.0    # the link goes away half-way: the device goes quiet
    server = lwm2m_server.server
    with pytest.raises(PushFailed) as failed:
        lwm2m_server.call(server.push_package("q-dev", pkg, progress=cut, ack_timeout=0.5, max_retransmit=1), 60)
    acked = failed.value.offset // 1024
    assert blocks // 2 <= acked < blocks, (acked, blocks)
    dev.proxy.loss = 0.0
    r = lwm2m_server.call(server.push_package("q-dev", pkg, ack_timeout=0.5), 60)
    assert (r.method, r.final_code, r.restarts, r.total) == ("q-block1", "2.04", 0, len(pkg))
    # on from the acknowledged block, with the failed push's Request-Tag (the device kept the transfer): the
    # blocks before it are not sent again
    assert r.blocks <= blocks - acked + MAX_PAYLOADS, (r.blocks, blocks, acked)
    assert not server.qblock.resumable
    print("failed at block %d of %d; the resumed push sent %d" % (acked, blocks, r.blocks))
    dev.downloaded()            # State 2: SHA-256 and signature of the whole package checked by the installer

    # cut again, then another body replaces the transfer on the device: the resume is refused (4.08), the push
    # starts over from byte 0
    dev.proxy.loss = 0.0
    with pytest.raises(PushFailed):
        lwm2m_server.call(server.push_package("q-dev", pkg, progress=cut, ack_timeout=0.5, max_retransmit=1), 60)
    dev.proxy.loss = 0.0
    other = kws_package("2")
    assert lwm2m_server.call(server.push_package("q-dev", other, ack_timeout=0.5), 60).final_code == "2.04"
    r = lwm2m_server.call(server.push_package("q-dev", pkg, ack_timeout=0.5), 60)
    assert (r.final_code, r.restarts) == ("2.04", 0) and r.blocks >= blocks, r
    dev.downloaded()


def test_device_without_q_block_gets_block1_and_block2(lwm2m_server, device):
    pkg = kws_package()
    dev = device(0.0, q_window=0)
    lwm2m_server.call(lwm2m_server.server.write("q-dev", "/5/0/1", lwm2m_server.server.offer_package(pkg)))
    dev.downloaded()
    assert lwm2m_server.server.qblock.stats["q_block2_requests"] == 0  # the device pulled with plain Block2
    r = lwm2m_server.call(lwm2m_server.server.push_package("q-dev", pkg))
    assert r.method == "block1" and r.final_code == "2.04"  # the device answered the Q-Block1 probe with 4.02
    assert "q-dev" in lwm2m_server.server._block1_only
    dev.downloaded()


def test_lossy_q_block2_pull_keeps_the_device_heap_bounded(lwm2m_server):
    """The 10-block window is one 10 KB arena: at 20 % loss each way the live heap over idle stays under 16 KB
    for a 300 KB package (nothing grows with the package or with the losses)."""
    data = os.urandom(300 * 1024 + 77)
    sha = lwm2m_server.sync(lwm2m_server.server.packages.add, data)
    proxy = lwm2m_server.call(LossyProxy.start(("127.0.0.1", lwm2m_server.port), 0.2, 11))
    try:
        out = unixport.run(script=MEASURE_QPULL, heap="256k",
                           args=("coap://127.0.0.1:%d/fw/%s" % (proxy.address[1], sha),)).stdout.decode()
    finally:
        lwm2m_server.sync(proxy.close)
    err, n, digest, peak, blocks, _, _, fallback = out.rsplit(None, 7)  # an error's text has spaces
    assert (err, int(n), digest, fallback) == ("None", len(data), hashlib.sha256(data).hexdigest(), "0"), out
    assert int(blocks) == -(-len(data) // 1024)
    assert 10 * 1024 <= int(peak) < 16 * 1024, out


def test_device_pull_window_fits_a_short_heap(lwm2m_server):
    """With 16 KB of heap left (a model loaded beside it) a 10-block window's 10 KB arena does not fit: the
    download asks for fewer blocks at once (a quarter of the free heap) and completes."""
    data = os.urandom(20 * 1024 + 3)
    sha = lwm2m_server.sync(lwm2m_server.server.packages.add, data)
    out = unixport.run(script=MEASURE_QPULL, heap="256k",
                       args=("coap://127.0.0.1:%d/fw/%s" % (lwm2m_server.port, sha), "10", "16000")).stdout.decode()
    said, result = out.splitlines()[-2:]
    err, n, digest, _, _, _, _, _, slots = result.split()
    assert (err, int(n), digest) == ("None", len(data), hashlib.sha256(data).hexdigest())
    assert 1 <= int(slots) < 10 and said.startswith("q-block2 window %s blocks, not 10" % slots), out


@pytest.fixture
def libcoap_server(tmp_path):
    """Debian's coap-server (libcoap 4.3.1, built without Q-Block) holding a 20 KB resource /pkg."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen([LIBCOAP_SERVER, "-A", "127.0.0.1", "-p", str(port), "-d", "4", "-v", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    data = os.urandom(20 * 1024 + 5)
    (tmp_path / "pkg.bin").write_bytes(data)
    subprocess.run([LIBCOAP_CLIENT, "-m", "put", "-b", "1024", "-f", str(tmp_path / "pkg.bin"),
                    "coap://127.0.0.1:%d/pkg" % port], check=True, capture_output=True, timeout=60)
    yield port, data
    proc.kill()
    proc.wait()


def test_device_pull_from_libcoap_without_q_block_falls_back(libcoap_server):
    port, data = libcoap_server
    out = unixport.run(script=MEASURE_QPULL, heap="128k", args=("coap://127.0.0.1:%d/pkg" % port,)).stdout.decode()
    err, n, digest, _, _, _, _, fallback = out.split()
    # libcoap answers the Q-Block2 request 4.02 Bad Option; the device fetches the same URI with Block2
    assert (err, int(n), digest, fallback) == ("None", len(data), hashlib.sha256(data).hexdigest(), "1")


def test_q_block1_push_to_libcoap_without_q_block_is_refused_at_once(lwm2m_server, libcoap_server):
    port, _ = libcoap_server
    push = QBlock1Push(lwm2m_server.server.qblock, ("::ffff:127.0.0.1", port, 0, 0), ("pkg",), b"x" * 5000,
                       ack_timeout=2.0)
    with pytest.raises(Unsupported, match="4.02"):
        lwm2m_server.call(push.run())
    assert push.sent == 1  # libcoap answered the CON probe 4.02 Bad Option: nothing else was sent


def test_aiocoap_reference_client_refuses_q_block_and_gets_block1(lwm2m_server):
    from tinymlaas.lwm2m.reference_client import ReferenceClient

    c = lwm2m_server.call(ReferenceClient("ref-1").start(lwm2m_server.uri))
    lwm2m_server.call(c.register())
    try:
        pkg = os.urandom(5000)
        r = lwm2m_server.call(lwm2m_server.server.push_package("ref-1", pkg))
        assert (r.method, c.package) == ("block1", pkg)
        assert "ref-1" in lwm2m_server.server._block1_only  # refused with 4.02, remembered until it registers
    finally:
        lwm2m_server.call(c.stop())


def test_q_block1_receive_out_of_order_keeps_the_device_heap_bounded(tmp_path):
    """Q-Block1 blocks held back and delivered late (as over a lossy link) wait in the 10-block window: the
    client's live heap over idle stays under 16 KB and the package installs (State 2)."""
    import json
    import re

    from tinymlaas.devices.emulated import compiled_path, device_trust

    pkg = tmp_path / "kws.pkg"
    pkg.write_bytes(kws_package())
    script = Path(__file__).parents[1] / "client" / "mpy" / "measure_qblock1.py"
    # 320 KB: the unix port loads the client, runtime and verifier .mpy into the heap (~175 KB; frozen on a board)
    out = unixport.run(script=script, args=(pkg, tmp_path / "flash", json.dumps(device_trust()["trust_anchors"])),
                       heap="320k", path=compiled_path()).stdout.decode()
    m = re.search(r"blocks (\d+) held_back (\d+) bytes (\d+) final (\S+) peak_live (\d+) state (\d)", out)
    assert m, out
    blocks, held, size, final, peak_live, state = m.groups()
    assert (int(size), final, state) == (len(kws_package()), "2.04", "2") and int(held) > 0
    assert int(peak_live) < 16 * 1024, out
