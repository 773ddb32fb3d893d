"""The server's first read of a new device's TinyML object is tried again soon when it gets no answer (a storm's
reads time out), not only at the device's next Update. A hand-made device on a real UDP socket ignores the first
read and answers the next one."""

import socket
import time

from tinymlaas.lwm2m import codecs as C
from tinymlaas.lwm2m.objects import default_model

from .coap_bytes import GET, parse, register, answer

CONTENT = 0x45  # 2.05


def test_an_unanswered_first_capability_read_is_retried_before_the_next_update(lwm2m_server):
    reads = lwm2m_server.server.capability_reads
    reads.ack_timeout, reads.max_retransmit, reads.first_retry = 0.2, 1, 0.2   # 2 s, 2, 2 s scaled down
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    # lifetime 60 s: the device's first Update would come after ~45 s; none is sent here
    sock.sendto(register(1, ep="quiet-dev", payload=b"</1/0>,</32770/0>"), ("127.0.0.1", lwm2m_server.port))
    assert parse(sock.recv(2048))["code"] == "2.01"
    started = time.monotonic()
    payload = C.encode(C.SENML_JSON, (32770, 0), {(32770, 0, 1): 12345}, default_model())
    ignored = set()
    while True:
        req = parse(sock.recv(2048))   # socket.timeout: no read came again
        assert req["code"] == "0.%02d" % GET
        if not ignored or req["token"] in ignored:  # the first read, and its CoAP retransmissions, go unanswered
            ignored.add(req["token"])
            continue
        sock.sendto(answer(req, CONTENT, [(12, bytes([C.SENML_JSON]))], payload), ("127.0.0.1", lwm2m_server.port))
        break
    deadline = time.monotonic() + 5
    # the event comes once the capabilities are committed
    while len(lwm2m_server.events) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e.kind for e in lwm2m_server.events] == ["registered", "capabilities"]
    assert lwm2m_server.server.device("quiet-dev").capabilities == {"Largest Free Block": 12345}
    assert lwm2m_server.server.store.device(endpoint="quiet-dev")["capabilities"] == {"Largest Free Block": 12345}
    assert time.monotonic() - started < 3 and reads.retries == 1
    sock.close()
