"""Registration interface over real UDP on loopback: register, update, de-register, expiry, rejection of
invalid registrations without any state change, persistence and schema migrations."""

import sqlite3
import time

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from tinymlaas.lwm2m import store as S
from tinymlaas.lwm2m.reference_client import ReferenceClient

from .conftest import ServerThread


def client(st, ep="dev1", **kw):
    return st.call(ReferenceClient(ep, **kw).start(st.uri))


def test_register_update_deregister(lwm2m_server):
    st = lwm2m_server
    c = client(st)
    resp = st.call(c.register())
    assert resp.code == Code.CREATED
    assert resp.opt.location_path[0] == "rd" and len(resp.opt.location_path) == 2
    [reg] = st.server.devices()
    assert reg.endpoint == "dev1" and reg.id == resp.opt.location_path[1]
    assert reg.lifetime == 60 and reg.lwm2m_version == "1.1" and reg.binding == "U"
    assert reg.objects == ["/3/0", "/5/0", "/32770/0"]
    assert reg.address.startswith("127.0.0.1:")
    [row] = st.server.store.devices()
    assert row["endpoint"] == "dev1" and row["lifetime"] == 60

    before = reg.updated_at
    time.sleep(0.01)
    assert st.call(c.update(["lt=120"])).code == Code.CHANGED
    reg = st.server.device("dev1")
    assert reg.lifetime == 120 and reg.updated_at > before
    assert st.server.store.devices()[0]["lifetime"] == 120
    assert st.call(c.update(payload=b"</3/0>,</5/0>,</32770/0>,</1/0>")).code == Code.CHANGED
    assert "/1/0" in st.server.device("dev1").objects

    assert st.call(c.deregister()).code == Code.DELETED
    assert st.server.devices() == [] and st.server.store.devices() == []
    assert st.call(c.deregister()).code == Code.NOT_FOUND  # second De-register: unknown location
    assert st.call(c.update()).code == Code.NOT_FOUND
    kinds = [e.kind for e in st.events]
    assert kinds[0] == "registered" and "updated" in kinds and kinds[-1] == "deregistered"
    assert [e["event"] for e in st.server.store.events("dev1")][-1] == "deregistered"
    st.call(c.stop())


def test_reregistration_replaces_old_location(lwm2m_server):
    st = lwm2m_server
    c = client(st)
    st.call(c.register())
    old = c.location
    st.call(c.register())
    assert c.location != old
    assert [r.endpoint for r in st.server.devices()] == ["dev1"]
    c.location = old
    assert st.call(c.update()).code == Code.NOT_FOUND
    st.call(c.stop())


def test_lifetime_expiry(lwm2m_server):
    st = lwm2m_server
    c = client(st, lifetime=1)
    st.call(c.register())
    assert st.server.devices()
    # the sweep drops the registration, deletes its stored row, then emits "expired": wait for the last step
    deadline = time.time() + 10
    while not any(e.kind == "expired" for e in st.events) and time.time() < deadline:
        time.sleep(0.05)
    assert st.server.devices() == []
    assert st.server.store.devices() == []
    assert any(e.kind == "expired" for e in st.events)
    assert st.call(c.update()).code == Code.NOT_FOUND  # an expired registration cannot be updated
    st.call(c.stop())


def test_update_keeps_registration_alive(lwm2m_server):
    st = lwm2m_server
    c = client(st, lifetime=1)
    st.call(c.register())
    for _ in range(4):
        time.sleep(0.5)
        assert st.call(c.update()).code == Code.CHANGED
    assert [r.endpoint for r in st.server.devices()] == ["dev1"]
    st.call(c.stop())


BAD = [
    # (query, content-format, payload, expected code)
    (["lt=60"], 40, b"</3/0>", Code.BAD_REQUEST),  # no endpoint name
    (["ep="], 40, b"</3/0>", Code.BAD_REQUEST),
    (["ep=a", "ep=b"], 40, b"</3/0>", Code.BAD_REQUEST),
    (["ep=x", "lt=0"], 40, b"</3/0>", Code.BAD_REQUEST),
    (["ep=x", "lt=-5"], 40, b"</3/0>", Code.BAD_REQUEST),
    (["ep=x", "lt=abc"], 40, b"</3/0>", Code.BAD_REQUEST),
    (["ep=x", "lt=99999999999"], 40, b"</3/0>", Code.BAD_REQUEST),
    (["ep=x", "lwm2m=9.9"], 40, b"</3/0>", Code.PRECONDITION_FAILED),
    (["ep=x", "b=Z"], 40, b"</3/0>", Code.BAD_REQUEST),
    (["ep=x", "b=UU"], 40, b"</3/0>", Code.BAD_REQUEST),
    (["ep=x"], 40, b"", Code.BAD_REQUEST),  # no objects
    (["ep=x"], 40, b"</3/0", Code.BAD_REQUEST),
    (["ep=x"], 40, b"</3/0/1>", Code.BAD_REQUEST),  # a resource is not an object link
    (["ep=x"], 40, b"</99999/0>", Code.BAD_REQUEST),
    (["ep=x"], 40, b"</3/0>;ver=x", Code.BAD_REQUEST),
    (["ep=x"], 40, b"\xff\xfe", Code.BAD_REQUEST),
    (["ep=x"], 0, b"</3/0>", Code.UNSUPPORTED_CONTENT_FORMAT),
    (["ep=x"], 40, b"</lwm2m>;rt=\"oma.lwm2m\",</3/0>", Code.BAD_REQUEST),  # outside the alternate path
    (["ep=x"], 40, b"</>;rt=\"oma.lwm2m\";ct=senml,</3/0>", Code.BAD_REQUEST),  # ct must be numbers
    (["ep=x"], 40, b"</>;rt=\"oma.lwm2m\";ct=\"110  112\",</3/0>", Code.BAD_REQUEST),
    (["ep=x"], 40, b"</>;rt=\"oma.lwm2m\";ct=70000,</3/0>", Code.BAD_REQUEST),
    (["ep=a\x01b"], 40, b"</3/0>", Code.BAD_REQUEST),  # control character in the endpoint name
    (["ep=" + "e" * 300], 40, b"</3/0>", Code.BAD_OPTION),  # Uri-Query longer than 255 bytes
]


@pytest.mark.parametrize("query,ct,payload,code", BAD)
def test_invalid_registration_is_rejected_without_state(lwm2m_server, query, ct, payload, code):
    st = lwm2m_server
    c = client(st)

    async def send():
        m = Message(code=Code.POST, uri=st.uri + "/rd", payload=payload)
        m.opt.content_format = ct
        m.opt.uri_query = tuple(query)
        return await c.context.request(m).response

    assert st.call(send()).code == code
    assert st.server.devices() == [] and st.server.store.devices() == [] and st.events == []
    st.call(c.stop())


def test_wrong_methods_and_paths(lwm2m_server):
    st = lwm2m_server
    c = client(st)

    async def req(code, path, payload=b"", block1=None):
        m = Message(code=code, uri=st.uri + path, payload=payload)
        if block1:
            m.opt.block1 = BlockOption.BlockwiseTuple(*block1)
        return (await c.context.request(m, handle_blockwise=False).response)

    assert st.call(req(Code.GET, "/rd")).code == Code.METHOD_NOT_ALLOWED
    assert st.call(req(Code.DELETE, "/rd/nope")).code == Code.NOT_FOUND
    assert st.call(req(Code.GET, "/nothing")).code == Code.NOT_FOUND
    assert st.call(req(Code.POST, "/rd/a/b")).code == Code.NOT_FOUND
    # Block-wise registrations are refused with 4.13 and a Size1 hint; no partial state is kept.
    r = st.call(req(Code.POST, "/rd?ep=x", b"</3/0>", (0, True, 2)))
    assert r.code == Code.REQUEST_ENTITY_TOO_LARGE and r.opt.size1 == 1024
    r = st.call(req(Code.POST, "/rd?ep=x", b"</3/0>", ((1 << 20) - 1, False, 6)))
    assert r.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert st.server.devices() == [] and st.events == []
    st.call(c.stop())


def test_registrations_survive_restart(tmp_path):
    import asyncio
    import threading

    # The device runs on its own event loop, so it outlives the first server process's loop.
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    on_device = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    db = tmp_path / "devices.db"
    st = ServerThread(db)
    c = on_device(ReferenceClient("persist-me", lifetime=300).start(st.uri))
    on_device(c.register())
    deadline = time.time() + 5
    while st.server.device("persist-me").capabilities is None and time.time() < deadline:
        time.sleep(0.05)
    # the device now announces SenML-JSON in its root link
    on_device(c.update(payload=b'</>;rt="oma.lwm2m";ct="110 11542",' + c.object_links()))
    assert st.server.device("persist-me").content_formats == [110, 11542]
    st.stop()
    st2 = ServerThread(db)
    try:
        [reg] = st2.server.devices()
        assert reg.endpoint == "persist-me" and reg.lifetime == 300 and reg.remote is None
        assert reg.capabilities is not None and reg.capabilities["Machine"] == "x64"
        assert reg.content_formats == [110, 11542] and reg.root_path == "/"
        # Requests reach the device at its stored address, before it has sent anything to the new process,
        # in the format it announced (the reference client answers in the Accept it gets).
        assert st2.call(st2.server.read_value("persist-me", "/3/0/2")) == "persist-me"
        assert c.accepts[-1] == 110
    finally:
        on_device(c.stop())
        loop.call_soon_threadsafe(loop.stop)
        st2.stop()


def test_schema_migrations_are_ordered_and_extendable(tmp_path):
    """The LwM2M tables come from the project's migration mechanism (component "lwm2m" in schema_migrations)."""
    from tinymlaas import db as D

    path = tmp_path / "m.db"
    s = S.Store(path)
    assert s.schema_version() == 5
    s.close()
    saved = list(D.MIGRATIONS)
    try:
        D.migration("lwm2m-test", 1, "CREATE TABLE extra (sha TEXT PRIMARY KEY)")
        s = S.Store(path)
        assert s.db.schema_versions()["lwm2m-test"] == 1 and s.schema_version() == 5
        s.close()
        con = sqlite3.connect(path)
        assert ("lwm2m", 1) in con.execute("SELECT component, version FROM schema_migrations").fetchall()
        con.execute("INSERT INTO extra VALUES ('x')")
        con.commit()
        con.close()
        # A failing migration rolls back completely and is not recorded.
        D.migration("lwm2m-test", 2, "CREATE TABLE t (a)", "INSERT INTO nowhere VALUES (1)")
        with pytest.raises(sqlite3.OperationalError):
            S.Store(path)
        con = sqlite3.connect(path)
        assert con.execute("SELECT MAX(version) FROM schema_migrations WHERE component='lwm2m-test'").fetchone()[0] == 1
        assert not con.execute("SELECT name FROM sqlite_master WHERE name='t'").fetchall()
    finally:
        D.MIGRATIONS[:] = saved


def test_store_shares_the_service_database(tmp_path):
    """The server can run on a Database the service already opened (one file, one migration history)."""
    from tinymlaas.db import Database

    db = Database(tmp_path / "shared.db")
    st = ServerThread(db)
    try:
        c = client(st, "shared-dev")
        st.call(c.register())
        st.call(c.stop())
        assert [r["endpoint"] for r in db.query("SELECT endpoint FROM devices")] == ["shared-dev"]
    finally:
        st.stop()
    db.query("SELECT 1")  # the server did not close a database it does not own
