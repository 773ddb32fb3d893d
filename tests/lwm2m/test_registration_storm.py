"""A registration storm arrives faster than the server's loop reads: the server's UDP receive buffer holds it
(guard.enlarge_receive_buffer), so every Register is answered on its first transmission, none is dropped to be
retransmitted seconds later."""

import socket
import threading

from .coap_bytes import parse_header, register

BURST = 600  # Registers sent while the server's loop is busy; Linux's default buffer holds ~200


def test_a_burst_of_registers_waits_in_the_buffer_and_is_answered(lwm2m_server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # room for all the answers
    sock.bind(("127.0.0.1", 0))
    busy, sent = threading.Event(), threading.Event()

    def hold_the_loop():  # the server's loop reads nothing until the whole burst is in its buffer
        busy.set()
        sent.wait(30)

    lwm2m_server.loop.call_soon_threadsafe(hold_the_loop)
    busy.wait(10)
    for i in range(BURST):
        # one token per request: requests in flight at once from one endpoint need distinct tokens (RFC 7252
        # §5.3.1), and the server answers them concurrently (it awaits each one's database commit)
        sock.sendto(register(i + 1, ep="storm-%04d" % i, token=(i + 1).to_bytes(2, "big")),
                    ("127.0.0.1", lwm2m_server.port))
    sent.set()
    sock.settimeout(10)
    answered = set()
    while len(answered) < BURST:
        h = parse_header(sock.recv(2048))  # socket.timeout: a Register was dropped
        assert h["code"] == "2.01"
        answered.add(h["mid"])
    sock.close()
    assert len(lwm2m_server.server.devices()) == BURST
