"""Interop with an independent CoAP implementation: Debian's libcoap `coap-client` against the server.

Block-wise GET (-b) of a package served for pull delivery, at 1024 and 64-byte blocks, and Observe (-s) of the
endpoint lookup, which notifies when a device registers and de-registers."""

import hashlib
import random
import shutil
import subprocess
import time

import pytest

from tinymlaas.lwm2m.reference_client import ReferenceClient

COAP_CLIENT = shutil.which("coap-client") or shutil.which("coap-client-notls")


def test_coap_client_is_installed():
    assert COAP_CLIENT, "libcoap3-bin (coap-client) is required: apt-get install libcoap3-bin"


@pytest.mark.parametrize("block", [1024, 64])
def test_blockwise_get_of_offered_package(lwm2m_server, tmp_path, block):
    st = lwm2m_server
    data = random.Random(block).randbytes(50_000)
    uri = st.sync(st.server.offer_package, data)
    out = tmp_path / "pkg.bin"
    # -B: coap-client stops after that many seconds and keeps what it has, exiting 0; 782 round trips of 64 bytes
    # took more than 30 s on a loaded CI machine, so the bound is generous and a cut download says so
    subprocess.run([COAP_CLIENT, "-b", str(block), "-B", "150", "-o", str(out), uri], check=True, timeout=180,
                   capture_output=True)
    got = out.read_bytes()
    assert len(got) == len(data), "coap-client wrote %d of %d bytes" % (len(got), len(data))
    assert hashlib.sha256(got).hexdigest() == uri.rsplit("/", 1)[1]
    sha = uri.rsplit("/", 1)[1]
    assert max(st.server.downloads[sha].values()) == len(data)


def test_observe_endpoint_lookup(lwm2m_server):
    st = lwm2m_server
    proc = subprocess.Popen([COAP_CLIENT, "-s", "4", "-B", "6", "-w", "-o", "-", st.uri + "/rd-lookup/ep"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    c = st.call(ReferenceClient("observed-dev").start(st.uri))
    st.call(c.register())
    time.sleep(0.8)
    st.call(c.deregister())
    out, err = proc.communicate(timeout=30)
    st.call(c.stop())
    notes = out.split("\n")
    with_dev = [i for i, n in enumerate(notes) if 'ep="observed-dev"' in n]
    assert with_dev, out + err
    # A later notification shows the device gone again (empty lookup) after the De-register.
    assert any(n == "" for n in notes[with_dev[-1] + 1 :]), notes
