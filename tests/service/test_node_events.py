"""The NOTIFY payloads of a node group's event relay (service/node_events.py): batched under PostgreSQL's 8,000-byte
limit, an event too large for one going without its values, nothing else lost or reordered."""

import json

from tinymlaas.service.node_events import MAX_PAYLOAD, batches


def test_events_batched_under_the_notify_limit_in_order():
    events = [("notification", {"endpoint": "d-%03d" % i, "values": [{"path": "/3/0/13", "value": i}]})
              for i in range(300)]
    payloads = batches("a", events)
    assert len(payloads) > 1 and all(len(p) <= MAX_PAYLOAD for p in payloads)
    got = [tuple(e) for p in payloads for e in json.loads(p)["events"]]
    assert got == [(k, d) for k, d in events]
    assert {json.loads(p)["node"] for p in payloads} == {"a"}


def test_an_event_too_large_goes_without_its_values():
    big = ("notification", {"endpoint": "d", "path": "/5/0/0", "values": [{"value": "ab" * 5000}]})
    small = ("registered", {"endpoint": "e", "address": "127.0.0.1:1"})
    payloads = batches("b", [small, big, small])
    events = [e for p in payloads for e in json.loads(p)["events"]]
    assert events == [list(small), ["notification", {"endpoint": "d", "path": "/5/0/0", "values_truncated": True}],
                      list(small)]
    assert batches("b", []) == []


class _Registrations:
    """What EventHub takes events from (the LwM2M server's on_event); this test publishes by hand."""

    def on_event(self, callback):
        pass


def test_two_nodes_hubs_see_each_others_events_through_postgresql(postgres_url):
    import asyncio

    import psycopg

    from tinymlaas.service.node_events import CHANNEL, NodeEvents
    from tinymlaas.web.lwm2m import EventHub

    async def run():
        hubs = {n: EventHub(_Registrations()) for n in ("a", "b")}
        relays = {n: NodeEvents(hub, postgres_url, n) for n, hub in hubs.items()}
        readers = {n: asyncio.Queue() for n in hubs}
        for n, hub in hubs.items():
            hub.readers.add(readers[n])
            await relays[n].start()
        try:
            async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
                for bad in ("not json", '{"node": "x", "events": [1, ["k"], ["k", 2]]}'):   # skipped, no harm
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, bad))
            for i in range(50):
                hubs["a"].publish("notification", {"endpoint": "d", "count": i})
            got = [await asyncio.wait_for(readers["b"].get(), 10) for _ in range(50)]
            assert [(k, d["count"], d["node"]) for k, d in got] == [("notification", i, "a") for i in range(50)]
            assert readers["a"].qsize() == 50       # a's own readers, once each (its relay skips its own)
            assert relays["a"].relayed < 50         # batched
            hubs["b"].publish("registered", {"endpoint": "e"})
            kind, data = await asyncio.wait_for(readers["a"].get(), 10)
            while kind == "notification":
                kind, data = await asyncio.wait_for(readers["a"].get(), 10)
            assert (kind, data["endpoint"], data["node"]) == ("registered", "e", "b")
        finally:
            for relay in relays.values():
                await relay.stop()

    asyncio.run(run())
