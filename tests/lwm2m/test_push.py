"""Package delivery: block-wise push into /5/0/0 (Block1) and pull from /fw/<sha256> (Block2), including loss,
device restarts (4.08), refusal (4.13), block-size renegotiation and resuming an interrupted push."""

import asyncio
import hashlib
import random

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code

from tinymlaas.lwm2m import guard
from tinymlaas.lwm2m.lossy_proxy import LossyProxy
from tinymlaas.lwm2m.push import BlockAnswer, BlockTimeout, PushFailed, push_blocks
from tinymlaas.lwm2m.reference_client import ReferenceClient

PACKAGE = random.Random(7).randbytes(20_000)  # 20 blocks of 1024 (the last one short)


# ---- push_blocks logic with a scripted device -------------------------------------------------------------

def scripted(script):
    """send_block that answers from `script(num, more, szx, chunk, calls)`; records every call."""
    calls = []

    async def send(num, more, szx, chunk):
        calls.append((num, more, szx, len(chunk)))
        answer = script(num, more, szx, chunk, calls)
        if answer is None:
            raise BlockTimeout()
        return answer

    return send, calls


def ok(num, more, szx, chunk, calls):
    return BlockAnswer("2.31" if more else "2.04", (num, more, szx))


def run(coro):
    return asyncio.run(coro)


def test_blocks_in_order_with_progress():
    send, calls = scripted(ok)
    seen = []
    r = run(push_blocks(send, PACKAGE, 6, lambda d, t: seen.append(d)))
    assert [c[0] for c in calls] == list(range(20)) and calls[-1] == (19, False, 6, 20_000 - 19 * 1024)
    assert seen[-1] == 20_000 and seen == sorted(seen) and r.blocks == 20 and r.final_code == "2.04"


def test_lost_block_is_resent_alone():
    lost = {5: 2}  # block 5 times out twice

    def script(num, more, szx, chunk, calls):
        if lost.get(num):
            lost[num] -= 1
            return None
        return ok(num, more, szx, chunk, calls)

    send, calls = scripted(script)
    r = run(push_blocks(send, PACKAGE, 6))
    assert [c[0] for c in calls] == list(range(6)) + [5, 5] + list(range(6, 20))
    assert r.block_resends == 2


def test_gives_up_with_offset_after_retries():
    send, _ = scripted(lambda num, *a: None if num == 7 else ok(num, *a))
    with pytest.raises(PushFailed) as e:
        run(push_blocks(send, PACKAGE, 6, block_retries=2))
    assert e.value.offset == 7 * 1024


def test_device_state_lost_restarts_from_zero():
    state = {"failed": False}

    def script(num, more, szx, chunk, calls):
        if num == 10 and not state["failed"]:
            state["failed"] = True
            return BlockAnswer("4.08")
        return ok(num, more, szx, chunk, calls)

    send, calls = scripted(script)
    r = run(push_blocks(send, PACKAGE, 6))
    assert [c[0] for c in calls] == list(range(11)) + list(range(20)) and r.restarts == 1


def test_device_asks_for_smaller_blocks():
    def script(num, more, szx, chunk, calls):
        return BlockAnswer("2.31" if more else "2.04", (num, more, min(szx, 4)))  # device wants 256 bytes

    send, calls = scripted(script)
    run(push_blocks(send, PACKAGE, 6))
    # Block 0 (1024 bytes) was accepted whole; the transfer continues at byte 1024 = block 4 of 256 bytes.
    assert calls[0] == (0, True, 6, 1024) and calls[1] == (4, True, 4, 256)
    assert sum(c[3] for c in calls) == 20_000


def test_too_large_and_other_errors_fail():
    send, _ = scripted(lambda *a: BlockAnswer("4.13", None, 4096))
    with pytest.raises(PushFailed) as e:
        run(push_blocks(send, PACKAGE, 6))
    assert e.value.code == "4.13" and e.value.size1 == 4096
    send, _ = scripted(lambda *a: BlockAnswer("5.00"))
    with pytest.raises(PushFailed):
        run(push_blocks(send, PACKAGE, 6))


def test_answer_for_another_block_is_not_counted():
    late = {"sent": False}

    def script(num, more, szx, chunk, calls):
        if num == 3 and not late["sent"]:
            late["sent"] = True
            return BlockAnswer("2.31", (2, True, szx))  # a late duplicate answer for block 2
        return ok(num, more, szx, chunk, calls)

    send, calls = scripted(script)
    run(push_blocks(send, PACKAGE, 6))
    assert [c[0] for c in calls][:5] == [0, 1, 2, 3, 3]


# ---- over UDP against the reference client ------------------------------------------------------------------

def start_device(st, uri=None, **kw):
    c = st.call(ReferenceClient("pkg1", **kw).start(uri or st.uri))
    st.call(c.register())
    return c


def test_push_over_udp(lwm2m_server):
    st = lwm2m_server
    c = start_device(st)
    seen = []
    r = st.call(st.server.push_package("pkg1", PACKAGE, progress=lambda d, t: seen.append((d, t))))
    assert c.package == PACKAGE and r.blocks == 20 and seen[-1] == (20_000, 20_000)
    assert [b[0] for b in c.blocks_seen] == list(range(20))
    st.call(c.stop())


def test_push_refused_by_device(lwm2m_server):
    st = lwm2m_server
    c = start_device(st, max_package=4096)
    with pytest.raises(PushFailed) as e:
        st.call(st.server.push_package("pkg1", PACKAGE))
    assert e.value.code == "4.13" and e.value.size1 == 4096 and e.value.offset == 4096
    st.call(c.stop())


def test_push_restarts_when_device_loses_state(lwm2m_server):
    st = lwm2m_server
    c = start_device(st)

    def progress(done, total):
        if done == 8 * 1024 and not c.blocks_seen.count((0, True, 6)) > 1:
            c.fail_next_blocks = 1

    r = st.call(st.server.push_package("pkg1", PACKAGE, progress=progress))
    assert r.restarts == 1 and c.package == PACKAGE
    st.call(c.stop())


def test_push_through_lossy_link_and_resume(lwm2m_server):
    st = lwm2m_server

    async def proxy():
        return await LossyProxy.start(("127.0.0.1", st.port), loss=0.1, seed=3)

    px = st.call(proxy())
    c = start_device(st, uri="coap://127.0.0.1:%d" % px.address[1])
    # The server sees the proxy's per-device upstream socket, so its own requests cross the lossy link too.
    assert st.server.device("pkg1").address != "127.0.0.1:%d" % guard.bound_port(c.context)

    # First attempt: the link goes dead half-way, the push fails and remembers the acknowledged offset.
    def cut(done, total):
        if done >= 10 * 1024:
            px.loss = 1.0

    with pytest.raises(PushFailed) as e:
        st.call(st.server.push_package("pkg1", PACKAGE, progress=cut, ack_timeout=0.05, max_retransmit=1, block_retries=1))
    assert e.value.offset >= 10 * 1024
    resumed_at = e.value.offset

    # The link comes back with 10% loss; the second push continues where the first stopped.
    px.loss = 0.1
    first = []
    r = st.call(st.server.push_package("pkg1", PACKAGE, ack_timeout=0.1, max_retransmit=6,
                                       progress=lambda d, t: first.append(d)))
    assert first[0] == resumed_at + 1024 and r.blocks == 20 - resumed_at // 1024
    assert c.package == PACKAGE and hashlib.sha256(c.package).digest() == hashlib.sha256(PACKAGE).digest()
    assert px.stats["dropped_up"] + px.stats["dropped_down"] > 0
    st.call(c.stop())
    st.sync(px.close)


def test_pull_block2_download(lwm2m_server):
    st = lwm2m_server
    uri = st.sync(st.server.offer_package, PACKAGE)
    c = st.call(ReferenceClient("puller").start(st.uri))

    async def fetch():
        return await c.context.request(Message(code=Code.GET, uri=uri)).response  # aiocoap follows Block2

    resp = st.call(fetch())
    assert resp.code == Code.CONTENT and resp.payload == PACKAGE
    assert st.server.downloads[uri.rsplit("/", 1)[1]]  # served bytes are tracked per downloader
    st.call(c.stop())


def test_deliver_by_uri_writes_package_uri(lwm2m_server):
    st = lwm2m_server
    c = start_device(st)
    uri = st.call(st.server.deliver_by_uri("pkg1", PACKAGE))
    assert c.values[(5, 0, 1)] == uri and uri.endswith(hashlib.sha256(PACKAGE).hexdigest())
    st.call(c.stop())


def test_rtt_estimator():
    from tinymlaas.lwm2m.push import RttEstimator

    r = RttEstimator(2.0, min_rto=0.25, max_rto=8.0)
    assert r.rto == 2.0
    r.sample(0.001, 2.0)
    assert r.rto == 0.25  # fast path: clamped to the floor
    for _ in range(20):
        r.sample(0.8, r.rto if r.rto > 0.8 else 8.0)
    assert 0.8 < r.rto < 2.0  # follows a slow path
    before = r.rto
    r.sample(5.0, 1.0)  # answered after a possible retransmission: ignored (Karn)
    assert r.rto == before
    r.backoff()
    assert r.rto == min(8.0, before * 2)


def test_adaptive_timeout_recovers_loss_faster(lwm2m_server):
    """Through a 10%-loss link a 20-block push with adaptive timeouts must not cost 2 s per loss."""
    st = lwm2m_server

    async def proxy():
        return await LossyProxy.start(("127.0.0.1", st.port), loss=0.1, seed=11)

    px = st.call(proxy())
    c = start_device(st, uri="coap://127.0.0.1:%d" % px.address[1])
    import time as _t

    t0 = _t.monotonic()
    st.call(st.server.push_package("pkg1", PACKAGE, ack_timeout=2.0, min_rto=0.1))
    elapsed = _t.monotonic() - t0
    assert c.package == PACKAGE
    drops = px.stats["dropped_up"] + px.stats["dropped_down"]
    # With the fixed RFC timeout each loss costs 2-3 s; adaptive, about min_rto (doubling on repeated loss).
    assert drops > 0 and elapsed < 3.0 + 0.8 * drops
    st.call(c.stop())
    st.sync(px.close)
