"""The Bootstrap-Server (host/tinymlaas/lwm2m/bootstrap.py) against an aiocoap endpoint standing in for a device:
the Bootstrap-Request, then Delete, the OSCORE/Security/Server writes in TLV and Finish, in that order; the keys it
writes are the ones the LwM2M server now holds for the endpoint. Malformed datagrams get the same strict reactions
as at the LwM2M server (the same guard, the same cases). The MicroPython client's side is tested in
tests/client/test_bootstrap_client.py and both together in tests/e2e/test_bootstrap.py."""

import asyncio
import gc

import aiocoap
import pytest
from aiocoap import resource

from tinymlaas.lwm2m import codecs as C
from tinymlaas.lwm2m.bootstrap import BootstrapServer
from tinymlaas.lwm2m.objects import default_model
from tinymlaas.lwm2m.oscore import DeviceKeys
from tinymlaas.lwm2m.server import LwM2MServer
from tinymlaas.lwm2m.values import ObjLink

from . import coap_bytes as B
from .conftest import ServerThread
from .test_malformed import CASES, assert_reaction


class Device(resource.Resource):
    """Answers the bootstrap server as a device would and records what it was told."""

    def __init__(self):
        super().__init__()
        self.requests = []

    async def needs_blockwise_assembly(self, request):
        return False

    async def render(self, request):
        self.requests.append((str(request.code), "/".join(request.opt.uri_path), request.payload))
        return aiocoap.Message(code={aiocoap.DELETE: aiocoap.DELETED}.get(request.code, aiocoap.CHANGED))


def test_bootstrap_writes_fresh_oscore_keys_and_the_server_account(tmp_path):
    async def main():
        lwm2m = await LwM2MServer(str(tmp_path / "db.sqlite")).start("127.0.0.1", 0)
        bs = await BootstrapServer(lwm2m, "coap://127.0.0.1:%d" % lwm2m.port, lifetime=120).start("127.0.0.1", 0)
        device = Device()
        ctx = await aiocoap.Context.create_server_context(device, bind=("127.0.0.1", 0), transports=["udp6"])
        try:
            req = aiocoap.Message(code=aiocoap.POST, uri="coap://127.0.0.1:%d/bs" % bs.port)
            req.opt.uri_query = ("ep=factory-7",)
            resp = await asyncio.wait_for(ctx.request(req).response, 10)
            outcome = await asyncio.wait_for(bs.outcomes.get(), 30)
            return (resp, outcome, device.requests, lwm2m.port, lwm2m.oscore.for_endpoint("factory-7") is not None,
                    lwm2m.oscore.sender_ids_in_use())
        finally:
            await ctx.shutdown()
            await bs.stop()
            await lwm2m.stop()

    resp, outcome, requests, port, has_keys, sender_ids = asyncio.run(main())
    assert resp.code == aiocoap.CHANGED and outcome.ok, outcome
    assert [(code, path) for code, path, _ in requests] == [
        ("DELETE", ""), ("PUT", "21/0"), ("PUT", "0/1"), ("PUT", "1/0"), ("POST", "bs")]
    model = default_model()
    written = {path: C.decode(C.TLV, tuple(int(p) for p in path.split("/")), payload, model)
               for code, path, payload in requests if code == "PUT"}
    osc = written["21/0"]
    assert osc[(21, 0, 3)] == 10 and osc[(21, 0, 4)] == -10 and len(osc[(21, 0, 0)]) == 16
    sec = written["0/1"]
    assert sec[(0, 1, 0)] == "coap://127.0.0.1:%d" % port and sec[(0, 1, 1)] is False
    assert sec[(0, 1, 10)] == 1 and sec[(0, 1, 17)] == ObjLink(21, 0)
    assert written["1/0"][(1, 0, 1)] == 120 and written["1/0"][(1, 0, 7)] == "U"
    # the LwM2M server holds keys for the endpoint under the device's Sender ID, and still after a restart
    assert has_keys and osc[(21, 0, 1)] in sender_ids
    gc.collect()  # the first server's contexts hold their directory locks until collected
    again = LwM2MServer(str(tmp_path / "db.sqlite"))
    assert again.oscore.for_endpoint("factory-7") is not None and osc[(21, 0, 1)] in again.oscore.sender_ids_in_use()


def test_a_device_with_factory_keys_must_bootstrap_under_oscore(tmp_path):
    factory = DeviceKeys("factory-8", bytes(range(16)), device_id=b"\x31", server_id=b"\x30")

    async def main():
        lwm2m = await LwM2MServer().start("127.0.0.1", 0)
        bs = await BootstrapServer(lwm2m, "coap://127.0.0.1:%d" % lwm2m.port, bootstrap_keys=[factory],
                                   oscore_dir=tmp_path / "bs").start("127.0.0.1", 0)
        ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            req = aiocoap.Message(code=aiocoap.POST, uri="coap://127.0.0.1:%d/bs" % bs.port)
            req.opt.uri_query = ("ep=factory-8",)
            return await asyncio.wait_for(ctx.request(req).response, 10)
        finally:
            await ctx.shutdown()
            await bs.stop()
            await lwm2m.stop()

    resp = asyncio.run(main())
    assert resp.code == aiocoap.UNAUTHORIZED and b"must bootstrap under OSCORE" in resp.payload


@pytest.fixture
def bootstrap_server(tmp_path):
    st = ServerThread(str(tmp_path / "db.sqlite"))
    bs = st.call(BootstrapServer(st.server, st.uri).start("127.0.0.1", 0))
    yield st, bs
    st.call(bs.stop())
    st.stop()


GUARD_CASES = [c for c in CASES if c[2] in ("rst", "drop", "4.02")]  # the guard's own reactions, before routing


@pytest.mark.parametrize("name,data,expected", GUARD_CASES, ids=[c[0] for c in GUARD_CASES])
def test_malformed_datagram_to_the_bootstrap_server(bootstrap_server, udp, name, data, expected):
    st, bs = bootstrap_server
    udp.send(data, bs.port)
    assert_reaction(udp.recv(0.4 if expected == "drop" else 2), data, expected)
    assert bs.outcomes.empty() and st.server.oscore.sender_ids_in_use() == set()
    # and it still serves: a well-formed Bootstrap-Request is accepted
    udp.send(B.message(B.POST, 0x7777, b"\x01", [(11, b"bs"), (15, b"ep=after")]), bs.port)
    reply = B.parse(udp.recv(2))
    assert (reply["type"], reply["code"], reply["mid"]) == (B.ACK, "2.04", 0x7777)
    assert bs.guard_stats.as_dict()[{"rst": "reset", "drop": "dropped", "4.02": "replied"}[expected]] == 1
