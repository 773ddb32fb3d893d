"""A device scripted datagram by datagram on a plain UDP socket, to see exactly what the server puts on the wire:
requests in the data format the device announced in its root link (ct=), and the Reset that ends a cancelled
observation at the device's next notification, Confirmable or not."""

import asyncio
import json
import time

import pytest

from . import coap_bytes as B

OBSERVE, CONTENT_FORMAT, ACCEPT = 6, 12, 17
CHANGED, CONTENT = 0x44, 0x45
SENML_JSON = bytes([110])


def register(st, udp, links):
    udp.send(B.register(0x100, ep="raw-dev", payload=links), st.port)
    assert B.parse(udp.recv(2))["code"] == "2.01"
    return st.server.device("raw-dev")


def request(st, udp, coro):
    """Start a server call that sends the device a request: (its future, the request as the device got it)."""
    future = asyncio.run_coroutine_threadsafe(coro, st.loop)
    data = udp.recv(5)
    assert data is not None, "the server sent no request"
    return future, B.parse(data)


def senml(records):
    return json.dumps(records).encode()


def test_requests_without_a_format_use_the_one_the_device_announced(lwm2m_server, udp):
    """A device with SenML-JSON and no TLV (`ct=110`): a Read without fmt carries Accept 110 (without it such a
    device falls back to TLV and answers 5.00), a Write of several values goes as SenML-JSON (not SenML-CBOR)."""
    st = lwm2m_server
    assert register(st, udp, b'</>;rt="oma.lwm2m";ct=110,</3/0>').content_formats == [110]

    future, req = request(st, udp, st.server.read("raw-dev", "/3/0"))
    assert req["code"] == "0.01" and B.uint(req, ACCEPT) == 110
    udp.send(B.answer(req, CONTENT, [(CONTENT_FORMAT, SENML_JSON)],
                      senml([{"bn": "/3/0/", "n": "0", "vs": "Acme"}, {"n": "9", "v": 87}])), st.port)
    assert future.result(5) == {(3, 0, 0): "Acme", (3, 0, 9): 87}

    future, req = request(st, udp, st.server.write("raw-dev", "/3/0", {"/3/0/14": "+01:00", "/3/0/15": "Europe/Paris"},
                                                   replace=False))
    assert req["code"] == "0.02" and B.uint(req, CONTENT_FORMAT) == 110
    records = json.loads(req["payload"])
    assert {r.get("bn", "") for r in records} <= {"", "/3/0/"} and sorted(r["vs"] for r in records) == ["+01:00", "Europe/Paris"]
    udp.send(B.answer(req, CHANGED), st.port)
    assert future.result(5) == "2.04"

    # an explicit format still wins, and one resource is still written as text/plain
    future, req = request(st, udp, st.server.read("raw-dev", "/3/0", fmt="senml-cbor"))
    assert B.uint(req, ACCEPT) == 112
    udp.send(B.answer(req, 0x86), st.port)  # 4.06
    future.exception(5)
    future, req = request(st, udp, st.server.write("raw-dev", "/3/0/14", "+02:00"))
    assert B.uint(req, CONTENT_FORMAT) == 0 and req["payload"] == b"+02:00"
    udp.send(B.answer(req, CHANGED), st.port)
    assert future.result(5) == "2.04"


def test_a_device_that_announces_no_format_chooses(lwm2m_server, udp):
    st = lwm2m_server
    assert register(st, udp, b"</3/0>").content_formats == []
    future, req = request(st, udp, st.server.read("raw-dev", "/3/0"))
    assert B.uint(req, ACCEPT) is None
    udp.send(B.answer(req, CONTENT, [(CONTENT_FORMAT, SENML_JSON)], senml([{"n": "/3/0/9", "v": 5}])), st.port)
    assert future.result(5) == {(3, 0, 9): 5}


@pytest.mark.parametrize("mtype", [B.NON, B.CON], ids=["NON", "CON"])
def test_cancelled_observation_gets_a_reset_at_its_next_notification(lwm2m_server, udp, mtype):
    """After cancel, the device's next notification is answered with a Reset of its Message ID, which tells
    the device to stop (RFC 7641 §3.6). aiocoap already did that for CON notifications; NON ones it ignored, so
    a device notifying NON went on for ever."""
    st = lwm2m_server
    register(st, udp, b"</3/0>")
    got = []
    future, req = request(st, udp, st.server.observe("raw-dev", "/3/0/9", lambda values, obs: got.append(values)))
    assert B.uint(req, OBSERVE) == 0
    udp.send(B.answer(req, CONTENT, [(OBSERVE, b"\x01"), (CONTENT_FORMAT, b"")], b"87"), st.port)
    obs = future.result(5)

    def notify(mid, seq, value):
        udp.send(B.message(CONTENT, mid, req["token"], [(OBSERVE, bytes([seq])), (CONTENT_FORMAT, b"")],
                           str(value).encode(), mtype=mtype), st.port)

    notify(0x501, 2, 88)
    if mtype == B.CON:
        ack = B.parse(udp.recv(2))
        assert (ack["type"], ack["code"], ack["mid"]) == (B.ACK, "0.00", 0x501)
    deadline = time.time() + 5
    while len(got) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert got == [{(3, 0, 9): 87}, {(3, 0, 9): 88}]

    st.sync(obs.cancel)
    notify(0x502, 3, 89)
    reply = udp.recv(2)
    assert reply is not None, "the notification after cancel was not answered"
    rst = B.parse(reply)
    assert (rst["type"], rst["code"], rst["mid"], rst["token"]) == (B.RST, "0.00", 0x502, b"")
    assert got[-1] is None and {(3, 0, 9): 89} not in got  # the observation ended and saw nothing more
    assert st.server.guard_stats.unmatched == (1 if mtype == B.NON else 0)
    assert st.server.observations("raw-dev") == []
