"""The server side of OSCORE (host/tinymlaas/lwm2m/oscore.py) against aiocoap's own OSCORE context standing in for
a device's keys: who may register under which name, and how bad requests are answered. The MicroPython client under
OSCORE is tested end to end in tests/e2e/test_oscore_lwm2m.py."""

import json

import aiocoap
import pytest
from aiocoap import oscore as aoscore

from tinymlaas.lwm2m.oscore import DeviceKeys, OscoreKeyError, load_keys

SECRET = bytes.fromhex("00112233445566778899aabbccddeeff")
KEYS = DeviceKeys("dev-a", SECRET, device_id=b"\x0a", server_id=b"\x01")
OTHER = DeviceKeys("dev-b", SECRET[::-1], device_id=b"\x0b", server_id=b"\x01")


def device_context(tmp_path, keys, name="dev"):
    d = tmp_path / name
    d.mkdir()
    (d / "settings.json").write_text(json.dumps({
        "sender-id_hex": keys.device_id.hex(), "recipient-id_hex": keys.server_id.hex(),
        "secret_hex": keys.master_secret.hex(), "salt_hex": keys.master_salt.hex()}))
    return aoscore.FilesystemSecurityContext(str(d))


def register(st, ctx, ep, resend=None):
    """A Register for `ep`, protected with ctx (or sent as is when ctx is None) -> (outer, opened response)."""
    async def go():
        client = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            msg = aiocoap.Message(code=aiocoap.POST, uri=st.uri + "/rd", payload=b"</1/0>,</3/0>")
            msg.opt.uri_query = ("ep=" + ep, "lt=60", "lwm2m=1.1", "b=U")
            msg.opt.content_format = 40
            if ctx is None:
                return await client.request(msg).response, None
            outer, rid = ctx.protect(msg)
            outer.remote = msg.remote
            sent = resend or outer
            resp = await client.request(sent).response
            return resp, (ctx.unprotect(resp, rid)[0] if resp.opt.oscore is not None else None), outer
        finally:
            await client.shutdown()
    return st.call(go())


@pytest.fixture
def secured(lwm2m_server):
    lwm2m_server.sync(lwm2m_server.server.add_oscore_device, KEYS)
    lwm2m_server.sync(lwm2m_server.server.add_oscore_device, OTHER)
    return lwm2m_server


def test_a_device_registers_under_oscore_and_only_as_itself(secured, tmp_path):
    ctx = device_context(tmp_path, KEYS)
    outer, inner, _ = register(secured, ctx, "dev-a")
    assert outer.code == aiocoap.CHANGED and inner.code == aiocoap.CREATED   # outer 2.04 carries the inner 2.01
    assert secured.server.find("dev-a") is not None and secured.server.oscore.opened == 1
    outer, inner, _ = register(secured, ctx, "dev-b")                        # its keys, another device's name
    assert inner.code == aiocoap.FORBIDDEN and b"belong to dev-a" in inner.payload
    assert secured.server.find("dev-b") is None


def test_nosec_and_foreign_requests_are_refused_with_the_reason(secured, tmp_path):
    resp, _ = register(secured, None, "dev-a")                               # a secured name, NoSec
    assert resp.code == aiocoap.UNAUTHORIZED and resp.payload == b"dev-a must use OSCORE"
    resp, _ = register(secured, None, "free-1")                              # names without keys stay NoSec
    assert resp.code == aiocoap.CREATED
    stranger = DeviceKeys("x", SECRET, device_id=b"\x7f", server_id=b"\x01")
    outer, inner, _ = register(secured, device_context(tmp_path, stranger, "s"), "dev-a")
    assert outer.code == aiocoap.UNAUTHORIZED and outer.payload == b"unknown kid" and inner is None
    wrong = DeviceKeys("dev-a", SECRET[::-1], device_id=b"\x0a", server_id=b"\x01")   # right kid, wrong secret
    outer, inner, _ = register(secured, device_context(tmp_path, wrong, "w"), "dev-a")
    assert outer.code == aiocoap.BAD_REQUEST and inner is None
    assert secured.server.find("dev-a") is None


def test_a_replayed_registration_is_refused(secured, tmp_path):
    ctx = device_context(tmp_path, KEYS)
    first, inner, sent = register(secured, ctx, "dev-a")
    assert inner.code == aiocoap.CREATED
    again = aiocoap.Message(code=sent.code, payload=sent.payload, uri=secured.uri)
    again.opt = sent.opt
    resp, _, _ = register(secured, ctx, "dev-a", resend=again)
    assert resp.code == aiocoap.UNAUTHORIZED and resp.payload == b"replayed request"


@pytest.mark.parametrize("text, message", [
    ('{"a": {"master_secret": "zz", "device_id": "01", "server_id": "02"}}', "master_secret must be a hex"),
    ('{"a": {"master_secret": "0011", "device_id": "01", "server_id": "02"}}', "at least 16 bytes"),
    ('{"a": {"master_secret": "%s", "device_id": "01", "server_id": "01"}}' % SECRET.hex(), "must differ"),
    ('{"a b": {"master_secret": "%s", "device_id": "01", "server_id": "02"}}' % SECRET.hex(), "endpoint 'a b'"),
    ("[1]", "expected an object"),
])
def test_key_files_are_checked(tmp_path, text, message):
    p = tmp_path / "keys.json"
    p.write_text(text)
    with pytest.raises(OscoreKeyError, match=message):
        load_keys(p)
