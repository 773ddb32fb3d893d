"""The SSE events of a node group (docs/nodes.md): what one node's EventHub publishes (registrations, Sends,
observation notifications) reaches every node's /api/events readers through PostgreSQL LISTEN/NOTIFY.

Why: only a device's owner can talk to it, so an observation asked for on node X runs on the owner O
(web/owner_routing.py) and its notifications come out of O's hub; the client streams from X. Every node relays its
hub's events on channel `tinymlaas_events` and delivers the other nodes' to its own readers (with "node": the one
they came from). NOTIFY is sent outside any transaction (autocommit: delivered at once) and batched: the events
gathered while the previous NOTIFY was on its way go as one JSON array, at most MAX_PAYLOAD bytes (PostgreSQL's
limit is 8,000). One event larger than that goes without its values ("values_truncated": true); the owner keeps
them (GET /api/devices/{ep}/observations, routed to it). A connection lost is opened again; what was published
meanwhile is not replayed (SSE readers are live views, as on one node).

An observation asked here and made by another node is watched (`watch`): when its node stops beating (killed), this
node's readers get its "observation-ended" ("reason": "node gone"), which the dead node can no longer send.
"""

import asyncio
import json
import logging
import time

log = logging.getLogger("tinymlaas.service.node_events")

CHANNEL = "tinymlaas_events"
MAX_PAYLOAD = 7000
PENDING = 10000         # events waiting for the database before the oldest are dropped (a node cut off from it)
RETRY = 1.0
WATCH = 1.0             # s between looks at the heartbeats of the nodes observing for this one


def batches(node, events, limit=MAX_PAYLOAD):
    """[(kind, data), ...] -> NOTIFY payloads: {"node", "events": [[kind, data], ...]}, each under `limit` bytes."""
    out, current, size = [], [], 0
    head = len(json.dumps({"node": node, "events": []}))
    for kind, data in events:
        one = json.dumps([kind, data], default=str)
        if head + len(one) + 2 > limit:
            slim = {k: v for k, v in data.items() if k != "values"}
            one = json.dumps([kind, dict(slim, values_truncated=True)], default=str)
            if head + len(one) + 2 > limit:
                log.warning("event %s of %s too large to relay", kind, data.get("endpoint"))
                continue
        if current and head + size + len(one) + 2 > limit:
            out.append(current)
            current, size = [], 0
        current.append(one)
        size += len(one) + 2
    if current:
        out.append(current)
    return ['{"node": %s, "events": [%s]}' % (json.dumps(node), ", ".join(b)) for b in out]


class NodeEvents:
    """Relay `hub`'s events to the other nodes of the group and theirs to `hub` (web/lwm2m.EventHub)."""

    def __init__(self, hub, db_url, node, alive=None):
        self.hub, self.db_url, self.node = hub, db_url, node
        self.alive = alive              # f(node) -> bool: its heartbeat is recent (tasks.RolloutQueue.alive)
        self.watched = {}               # (endpoint, path) -> the node that observes it for this node's API
        self._pending = asyncio.Queue(PENDING)
        self._tasks = []
        self.listening = asyncio.Event()
        self.relayed = self.received = 0

    def relay(self, kind, data):
        """EventHub relay: called for each event this node publishes."""
        try:
            self._pending.put_nowait((kind, data))
        except asyncio.QueueFull:
            log.warning("node events: %d not relayed yet, dropping %s %s", PENDING, kind, data.get("endpoint"))

    async def start(self):
        self.hub.relays.append(self.relay)
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._notify())]
        if self.alive is not None:
            self._tasks.append(asyncio.create_task(self._watch_owners()))
        try:
            await asyncio.wait_for(self.listening.wait(), 10)
        except TimeoutError:
            log.warning("node events: not listening yet (database unreachable?)")

    async def stop(self):
        if self.relay in self.hub.relays:
            self.hub.relays.remove(self.relay)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def watch(self, owner, endpoint, path):
        self.watched[(endpoint, path)] = owner

    def unwatch(self, endpoint, path):
        self.watched.pop((endpoint, path), None)

    async def _watch_owners(self):
        while True:
            await asyncio.sleep(WATCH)
            try:
                dead = {o for o in set(self.watched.values()) if not self.alive(o)}
            except Exception as e:      # noqa: BLE001  (the database away: look again later)
                log.warning("node events: heartbeats unreadable (%s)", e)
                continue
            for (endpoint, path), owner in list(self.watched.items()):
                if owner in dead:
                    del self.watched[(endpoint, path)]
                    self.hub.deliver("observation-ended", {"endpoint": endpoint, "path": path, "node": owner,
                                                           "reason": "node gone", "at": time.time()})

    async def _connect(self):
        import psycopg

        return await psycopg.AsyncConnection.connect(self.db_url, autocommit=True)

    async def _listen(self):
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute("LISTEN %s" % CHANNEL)
                    self.listening.set()
                    async for note in conn.notifies():
                        self._deliver(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as e:          # noqa: BLE001  (the database restarting: listen again)
                log.warning("node events: listening failed (%s), again in %g s", e, RETRY)
                await asyncio.sleep(RETRY)

    def _deliver(self, payload):
        try:
            message = json.loads(payload)
            origin, events = message["node"], message["events"]
        except (ValueError, KeyError, TypeError):
            log.warning("node events: not a relayed event: %.80r", payload)
            return
        if origin == self.node:
            return
        for event in events if isinstance(events, list) else ():
            if not (isinstance(event, list) and len(event) == 2 and isinstance(event[1], dict)):
                log.warning("node events: not an event from %s: %.80r", origin, event)
                continue
            self.received += 1
            if event[0] == "observation-ended":
                self.unwatch(event[1].get("endpoint"), event[1].get("path"))
            self.hub.deliver(str(event[0]), dict(event[1], node=origin))

    async def _notify(self):
        conn = None
        try:
            while True:
                events = [await self._pending.get()]
                while not self._pending.empty():
                    events.append(self._pending.get_nowait())
                for payload in batches(self.node, events):
                    while True:
                        try:
                            if conn is None or conn.closed:
                                conn = await self._connect()
                            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                            self.relayed += 1
                            break
                        except asyncio.CancelledError:
                            raise
                        except Exception as e:      # noqa: BLE001  (the database restarting: send it again)
                            log.warning("node events: NOTIFY failed (%s), again in %g s", e, RETRY)
                            conn = None
                            await asyncio.sleep(RETRY)
        finally:
            if conn is not None and not conn.closed:
                await conn.close()
