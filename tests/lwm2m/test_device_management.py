"""Device management against a CPython LwM2M client over real UDP: Read in every data format, Write
(replace/partial), Execute, Discover, Write-Attributes, Observe/Notify/Cancel, and the error surface."""

import time

import pytest

from tinymlaas.lwm2m import codecs as C
from tinymlaas.lwm2m.qblock import device_sockaddr
from tinymlaas.lwm2m.reference_client import ReferenceClient
from tinymlaas.lwm2m.server import DeviceError, DeviceUnreachable, NotRegistered


@pytest.fixture
def device(lwm2m_server):
    st = lwm2m_server
    c = st.call(ReferenceClient("dm1").start(st.uri))
    st.call(c.register())
    yield st, c
    st.call(c.stop())


@pytest.mark.parametrize("fmt", [None, "tlv", "senml-json", "senml-cbor"])
def test_read_instance_in_each_format(device, fmt):
    st, c = device
    values = st.call(st.server.read("dm1", "/3/0", fmt=fmt))
    assert values == {p: v for p, v in c.values.items() if p[:2] == (3, 0)}


@pytest.mark.parametrize("fmt", ["text", "tlv", "senml-json", "senml-cbor"])
def test_read_resource_in_each_format(device, fmt):
    st, _ = device
    assert st.call(st.server.read("dm1", "/32770/0/0", fmt=fmt)) == {(32770, 0, 0): 120000}
    assert st.call(st.server.read_value("dm1", "/3/0/0")) == "tinymlaas"


def test_read_whole_object_and_multiple_resource(device):
    st, c = device
    assert st.call(st.server.read("dm1", "/3", fmt="tlv"))[(3, 0, 2)] == "dm1"
    assert st.call(st.server.read("dm1", "/3/0/11", fmt="senml-cbor")) == {(3, 0, 11, 0): 0}


def test_write_replace_and_partial(device):
    st, c = device
    assert st.call(st.server.write("dm1", "/5/0/1", "coap://example/pkg")) == "2.04"
    assert c.values[(5, 0, 1)] == "coap://example/pkg"
    st.call(st.server.write("dm1", "/3/0", {"/3/0/14": "+02:00", "/3/0/15": "Europe/Paris"}, replace=False, fmt="tlv"))
    assert c.values[(3, 0, 14)] == "+02:00" and c.values[(3, 0, 0)] == "tinymlaas"  # partial: others kept
    st.call(st.server.write("dm1", "/3/0", {"/3/0/14": "+01:00"}, replace=True, fmt="senml-json"))
    assert c.values[(3, 0, 14)] == "+01:00" and (3, 0, 0) not in c.values  # replace: instance rewritten
    st.call(st.server.write("dm1", "/32770/0/21", b"\x01\x02\x03"))  # opaque single resource
    assert c.values[(32770, 0, 21)] == b"\x01\x02\x03"


def test_execute_discover_attributes(device):
    st, c = device
    assert st.call(st.server.execute("dm1", "/3/0/4")) == "2.04"
    assert st.call(st.server.execute("dm1", "/32770/0/19", "quick")) == "2.04"
    assert c.executed == [((3, 0, 4), ""), ((32770, 0, 19), "quick")]
    links = st.call(st.server.discover("dm1", "/5/0"))
    assert "/5/0/3" in [l.uri for l in links]
    assert st.call(st.server.write_attributes("dm1", "/32770/0/17", pmin=1, pmax=30)) == "2.04"
    assert c.attributes[(32770, 0, 17)] == {"pmin": "1", "pmax": "30"}
    with pytest.raises(ValueError):
        st.call(st.server.write_attributes("dm1", "/3/0/9", bogus=1))


def test_observe_notify_cancel(device):
    st, c = device
    got = []
    obs = st.call(st.server.observe("dm1", "/32770/0/17", lambda v, o: got.append(v)))
    assert got == [{(32770, 0, 17): 0}]
    for n in (1, 2, 3):
        st.sync(c.set_value, (32770, 0, 17), n)
        deadline = time.time() + 3
        while len(got) < n + 1 and time.time() < deadline:
            time.sleep(0.02)
    assert got[1:] == [{(32770, 0, 17): 1}, {(32770, 0, 17): 2}, {(32770, 0, 17): 3}]
    assert obs.active and st.server.observations("dm1") == [obs]
    st.sync(obs.cancel)
    st.sync(c.set_value, (32770, 0, 17), 4)
    time.sleep(0.3)
    assert {(32770, 0, 17): 4} not in got
    assert st.server.observations("dm1") == []


def test_observe_instance_in_senml_cbor(device):
    st, c = device
    got = []
    st.call(st.server.observe("dm1", "/32770/0", lambda v, o: got.append(v), fmt="senml-cbor"))
    st.sync(c.set_value, (32770, 0, 22), b"\x07\x09")
    deadline = time.time() + 3
    while len(got) < 2 and time.time() < deadline:
        time.sleep(0.02)
    assert got[-1][(32770, 0, 22)] == b"\x07\x09" and got[-1][(32770, 0, 5)] == "x64"


def test_deregistration_ends_observations(device):
    st, c = device
    ended = []
    st.call(st.server.observe("dm1", "/3/0/0", lambda v, o: ended.append(v)))
    st.call(c.deregister())
    time.sleep(0.2)
    assert st.server.observations("dm1") == [] and ended[-1] is None


def test_errors(device):
    st, c = device
    with pytest.raises(NotRegistered):
        st.call(st.server.read("nobody", "/3/0"))
    with pytest.raises(DeviceError) as e:
        st.call(st.server.read("dm1", "/4/0"))
    assert e.value.code == "4.04"
    with pytest.raises(DeviceError) as e:
        st.call(st.server.read("dm1", "/3/0", fmt="text"))  # an instance has no text/plain form
    assert e.value.code == "4.06"
    with pytest.raises(C.CodecError):
        st.call(st.server.write("dm1", "/3/0/9", "not a number", fmt="tlv"))
    st.call(c.stop())
    with pytest.raises(DeviceUnreachable):
        st.call(st.server.read("dm1", "/3/0", timeout=0.5))


def test_queue_mode_request_waits_for_the_device_to_wake(lwm2m_server):
    """A Q-binding device is only reachable right after Register/Update: a Read made while it sleeps is held
    until its next Update instead of timing out (leshan#1286)."""
    import asyncio

    st = lwm2m_server
    st.server.awake_time = 0.3
    c = st.call(ReferenceClient("sleepy", binding="UQ").start(st.uri))
    st.call(c.register())
    assert st.server.device("sleepy").binding == "UQ"
    time.sleep(0.5)  # the awake window has passed
    pending = asyncio.run_coroutine_threadsafe(st.server.read("sleepy", "/3/0/0"), st.loop)
    time.sleep(0.5)
    assert not pending.done()  # held, not sent into the void
    st.call(c.update())
    assert pending.result(5) == {(3, 0, 0): "tinymlaas"}
    st.server.queue_timeout = 0.3
    time.sleep(0.4)
    with pytest.raises(DeviceUnreachable):
        st.call(st.server.read("sleepy", "/3/0/0"))
    st.call(c.stop())


def test_a_gone_device_does_not_cost_a_live_one_its_datagram(lwm2m_server, udp):
    """A device that went away without deregistering answers with ICMP port unreachable. Linux (IP_RECVERR, which
    aiocoap sets) leaves that error pending on the server's socket, and the next send, to any peer, failed with it
    unsent: a request to a live device ended in NetworkError (aiocoap files the error against the peer it was
    sending to). Here the ICMP lands while the loop is held, and the next datagram goes before the loop reads it."""
    st = lwm2m_server
    gone = st.call(ReferenceClient("gone").start(st.uri))
    st.call(gone.register())
    gone_addr = st.sync(lambda: device_sockaddr(st.server.find("gone"), st.server.qblock.family))
    live_addr = ("::ffff:127.0.0.1", udp.sock.getsockname()[1], 0, 0)
    st.call(gone.stop())                                   # its port closes; the server still has it registered

    def gone_then_live():
        st.server.qblock.send(b"\x50\x01\x00\x01", gone_addr)   # a NON to the closed port
        time.sleep(0.1)                                    # the ICMP arrives; the loop does not run to read it
        st.server.qblock.send(b"\x50\x01\x00\x02", live_addr)

    resent = st.server.guard_stats.resent
    st.sync(gone_then_live)
    assert udp.recv(2) == b"\x50\x01\x00\x02"
    assert st.server.guard_stats.resent == resent + 1
    with pytest.raises(DeviceUnreachable):                 # while the device that is gone stays so
        st.call(st.server.read_value("gone", "/3/0/0"))
