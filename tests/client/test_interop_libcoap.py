"""Interop: the device's CoAP layer against Debian libcoap (coap-server / coap-client, libcoap3-bin), an
independent implementation. The device pulls a package from coap-server with Block2 (also with datagrams
dropped by the server), and coap-client reads the device's TinyML object block-wise."""

import hashlib
import os
import shutil
import socket
import subprocess
import time

import cbor2
import pytest

SERVER = shutil.which("coap-server-notls") or shutil.which("coap-server")
CLIENT = shutil.which("coap-client-notls") or shutil.which("coap-client")

PULL = """
import socket, hashlib, binascii
from coap.endpoint import Endpoint
from lwm2m import pull
class HashSink:
    def __init__(self): self.h = hashlib.sha256(); self.n = 0; self.size = None; self.peak = 0
    def begin(self, size): self.size = size
    def write(self, off, chunk):
        assert off == self.n
        self.h.update(chunk); self.n += len(chunk)
    def finish(self): pass
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(socket.getaddrinfo('127.0.0.1', 0)[0][-1])
ep = Endpoint(s, ack_timeout_ms=300)
sink = HashSink()
pull.download(ep, 'coap://127.0.0.1:%d/pkg', sink, szx=%d)
print(sink.n, sink.size, binascii.hexlify(sink.h.digest()).decode(), ep.stats['retransmit'])
"""


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def coap_server(tmp_path):
    procs = []

    def start(*extra):
        port = free_port()
        p = subprocess.Popen([SERVER, "-A", "127.0.0.1", "-p", str(port), "-d", "4", "-v", "0", *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        time.sleep(0.3)
        return port

    yield start
    for p in procs:
        p.kill()
        p.wait()


def put_package(port, tmp_path, data):
    f = tmp_path / "pkg.bin"
    f.write_bytes(data)
    subprocess.run([CLIENT, "-m", "put", "-b", "1024", "-f", str(f), "coap://127.0.0.1:%d/pkg" % port],
                   check=True, capture_output=True, timeout=60)


def test_libcoap_is_installed():
    assert SERVER and CLIENT, "libcoap3-bin (coap-server-notls, coap-client-notls) is required"


@pytest.mark.parametrize("szx", [6, 4])
def test_pull_block2_from_libcoap_server(mpy_run, coap_server, tmp_path, szx):
    data = os.urandom(20 * 1024 + 333)
    port = coap_server()
    put_package(port, tmp_path, data)
    n, size, digest, _ = mpy_run(PULL % (port, szx), heap="64k").split()
    assert int(n) == len(data)
    assert digest == hashlib.sha256(data).hexdigest()


def test_pull_recovers_from_datagrams_lost_by_libcoap(mpy_run, coap_server, tmp_path):
    data = os.urandom(12 * 1024)
    # The server's first 12 datagrams answer the 12-block PUT; it then drops its 16th, 19th and 20th: block
    # responses to the device, which must retransmit its GET (twice in a row for the last two).
    port = coap_server("-l", "16,19,20")
    put_package(port, tmp_path, data)
    n, size, digest, retransmits = mpy_run(PULL % (port, 6), heap="64k").split()
    assert int(n) == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert int(retransmits) == 3


def test_libcoap_client_reads_device_blockwise(peer, tmp_path):
    port = free_port()
    peer.start_device(tmp_path, extra=("--port", str(port)))
    peer.accept_register()
    out = subprocess.run([CLIENT, "-m", "get", "-b", "64", "-A", "112", "-B", "10",
                          "coap://127.0.0.1:%d/32770/0" % port], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    recs = cbor2.loads(out.stdout)
    by_name = {r[0]: r for r in recs}
    assert recs[0][-2] == "/32770/"
    assert by_name["0/7"][3] == "micropython"
    assert by_name["0/0"][2] > 10000  # free heap, bytes
    assert len(out.stdout) > 64  # really more than one block


def test_libcoap_client_pushes_package_blockwise(peer, tmp_path):
    from packages import package

    pkg, _, _ = package("fc_no_bias_softmax", name="via-libcoap")
    f = tmp_path / "pkg.bin"
    f.write_bytes(pkg)
    port = free_port()
    peer.start_device(tmp_path, extra=("--port", str(port)))
    peer.accept_register()
    base = "coap://127.0.0.1:%d" % port
    out = subprocess.run([CLIENT, "-m", "put", "-b", "512", "-t", "42", "-f", str(f), base + "/5/0/0"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    state = subprocess.run([CLIENT, "-m", "get", base + "/5/0/3"], capture_output=True, timeout=30).stdout
    assert state.strip() == b"2"
    subprocess.run([CLIENT, "-m", "post", base + "/5/0/2"], capture_output=True, timeout=30, check=True)
    for _ in range(50):
        result = subprocess.run([CLIENT, "-m", "get", base + "/5/0/5"], capture_output=True, timeout=30).stdout
        if result.strip() == b"1":
            break
        time.sleep(0.1)
    assert result.strip() == b"1"
    name = subprocess.run([CLIENT, "-m", "get", base + "/32770/0/11"], capture_output=True, timeout=30).stdout
    assert name.strip() == b"via-libcoap"
