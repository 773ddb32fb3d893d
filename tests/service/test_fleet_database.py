"""A fleet of real emulated devices (fleet.py) registering with the LwM2M server on SQLite and on PostgreSQL:
every registration, capability read, Update and De-register reaches the database, and a server restarted on it
in the middle knows every device and goes on with the same registrations (nothing lost)."""

import asyncio

from tinymlaas.devices.fleet import EmulatedFleet
from tinymlaas.lwm2m.server import LwM2MServer
from tinymlaas.lwm2m.store import Store

COUNT = 20
LIFETIME = 6  # seconds: each device updates after 4.5 s


async def until(fn, timeout=60.0):
    end = asyncio.get_running_loop().time() + timeout
    while not fn():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not met within %ss" % timeout)
        await asyncio.sleep(0.1)


def events(db_url):
    store = Store(db_url)
    try:
        rows = store.db.query("SELECT event, COUNT(DISTINCT endpoint) AS n FROM device_events GROUP BY event")
        return {r["event"]: r["n"] for r in rows}, store.devices()
    finally:
        store.close()


def test_fleet_registrations_survive_a_server_restart(db_url, tmp_path):
    async def scenario():
        first = await LwM2MServer(db_url).start("127.0.0.1", 0)
        port = first.port
        fleet = EmulatedFleet("coap://127.0.0.1:%d" % port, COUNT, prefix="db", lifetime=LIFETIME,
                              data_dir=tmp_path / "fleet")
        fleet.start()
        try:
            await until(lambda: sum(1 for r in first.devices() if r.capabilities) == COUNT)
            ids = {r.endpoint: r.id for r in first.devices()}
            counts, rows = events(db_url)
            assert counts == {"registered": COUNT}
            assert sorted(r["endpoint"] for r in rows) == fleet.names
            assert all(r["capabilities"]["Heap Total"] > 0 for r in rows)  # stored as read
            await first.stop()

            second = await LwM2MServer(db_url).start("127.0.0.1", port)
            updated = set()
            second.on_event(lambda ev: updated.add(ev.endpoint) if ev.kind == "updated" else None)
            assert {r.endpoint: r.id for r in second.devices()} == ids
            assert all(r.capabilities for r in second.devices())
            # the devices' next Updates go to the restarted server, under the registrations it read back
            await until(lambda: len(updated) == COUNT, timeout=LIFETIME * 3)
            assert {r.endpoint: r.id for r in second.devices()} == ids
        finally:
            done, lost = await asyncio.get_running_loop().run_in_executor(None, fleet.stop)
        assert (done, lost) == (COUNT, 0)
        assert second.devices() == []
        await second.stop()
        counts, rows = events(db_url)
        assert rows == [] and counts == {"registered": COUNT, "updated": COUNT, "deregistered": COUNT}

    asyncio.run(scenario())
