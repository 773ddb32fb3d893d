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


def as_server(peer, *args, timeout=30):
    """coap-client sent from the address of the server the device registered with (the peer's port, which the
    peer gives up): the only NoSec peer a device answers."""
    peer.sock.close()
    return subprocess.run([CLIENT, "-p", str(peer.port), *args], capture_output=True, timeout=timeout)


def from_elsewhere(*args, wait_s=3):
    """coap-client from an arbitrary local port, giving up after wait_s seconds without an answer."""
    return subprocess.run([CLIENT, "-B", str(wait_s), *args], capture_output=True, timeout=wait_s + 20)


def started_device(peer, tmp_path):
    port = free_port()
    peer.start_device(tmp_path, extra=("--port", str(port)))
    peer.accept_register()
    return "coap://127.0.0.1:%d" % port


def install(peer, base, pkg_file):
    """Push and execute a package as the server; -> (the PUT's coap-client run, the final Update Result)."""
    put = as_server(peer, "-m", "put", "-b", "512", "-t", "42", "-f", str(pkg_file), base + "/5/0/0")
    assert put.returncode == 0, put.stderr
    assert as_server(peer, "-m", "get", base + "/5/0/3").stdout.strip() == b"2"
    assert as_server(peer, "-m", "post", base + "/5/0/2").returncode == 0
    for _ in range(50):
        result = as_server(peer, "-m", "get", base + "/5/0/5").stdout.strip()
        if result == b"1":
            break
        time.sleep(0.1)
    return put, result


def test_libcoap_client_reads_device_blockwise(peer, tmp_path):
    base = started_device(peer, tmp_path)
    out = as_server(peer, "-m", "get", "-b", "64", "-A", "112", "-B", "10", base + "/32770/0")
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
    base = started_device(peer, tmp_path)
    _, result = install(peer, base, f)
    assert result == b"1"
    name = as_server(peer, "-m", "get", base + "/32770/0/11").stdout
    assert name.strip() == b"via-libcoap"


def test_nosec_device_ignores_peers_other_than_its_server(peer, tmp_path):
    """The issue's attack: a valid package pushed to /5/0/0 and executed with /5/0/2 from an arbitrary port. The
    device answers nothing to it (no ACK, no RST, no 4.01) and the active model stays."""
    from packages import package

    good, _, _ = package("fc_no_bias_softmax", name="by-the-server")
    evil, _, _ = package("fc_no_bias_softmax", name="by-someone-else", version="666")
    (tmp_path / "good.bin").write_bytes(good)
    (tmp_path / "evil.bin").write_bytes(evil)
    base = started_device(peer, tmp_path)
    assert install(peer, base, tmp_path / "good.bin")[1] == b"1"
    put = from_elsewhere("-m", "put", "-b", "512", "-t", "42", "-f", str(tmp_path / "evil.bin"), base + "/5/0/0")
    execute = from_elsewhere("-m", "post", base + "/5/0/2")
    read = from_elsewhere("-m", "get", base + "/32770/0/11")
    assert put.stdout == execute.stdout == read.stdout == b""
    # not even an empty ACK or a Reset: a raw probe from yet another port hears nothing
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.settimeout(1.0)
    probe.sendto(bytes([0x40, 0x01, 0x12, 0x34, 0xB1, 0x33]), ("127.0.0.1", int(base.rsplit(":", 1)[1])))  # GET /3
    with pytest.raises(socket.timeout):
        probe.recvfrom(2048)
    probe.close()
    assert as_server(peer, "-m", "get", base + "/32770/0/11").stdout.strip() == b"by-the-server"
    assert as_server(peer, "-m", "get", base + "/5/0/3").stdout.strip() == b"0"  # Idle: nothing downloaded
    assert as_server(peer, "-m", "get", base + "/5/0/7").stdout.strip() == b"1"  # PkgVersion of the good one
