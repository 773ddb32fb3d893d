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
