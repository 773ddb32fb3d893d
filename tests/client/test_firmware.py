"""Object 5 Firmware Update with real model packages (compiled blob + golden vectors, tinymlaas.package) and
the real installer of the inference module, over loopback UDP: push with Block1, pull with Block2, Update,
failures with the right Update Result, then inference through the TinyML object."""

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
from aiocoap import numbers as an

from coap_test_peer import ACK, CON, NON, block_opt, make, push, put_block, wait_value
from packages import package

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import compiled_path, device_trust
from tinymlaas.package import build_package
from tinymlaas.paths import REPO

VECTORS = REPO / "tests" / "vectors"

SMALL = "fc_no_bias_softmax"


def registered(peer, tmp_path, **kw):
    peer.start_device(tmp_path, **kw)
    peer.accept_register()


def test_push_update_and_infer(peer, tmp_path):
    pkg, blob, vectors = package(SMALL, name="fc-demo", version="3")
    registered(peer, tmp_path)
    assert peer.request(an.GET, "/5/0/3").payload == b"0"
    r = push(peer, "/5/0/0", pkg)
    assert r.code == an.CHANGED and r.opt.block1.more is False
    assert peer.request(an.GET, "/5/0/3").payload == b"2"  # Downloaded
    assert peer.request(an.POST, "/5/0/2").code == an.CHANGED
    assert wait_value(peer, "/5/0/5", b"1") == b"1"  # Update Result: success
    assert peer.request(an.GET, "/5/0/3").payload == b"0"
    assert peer.request(an.GET, "/5/0/6").payload == b"fc-demo"
    assert peer.request(an.GET, "/32770/0/13").payload == hashlib.sha256(blob).hexdigest().encode()
    assert peer.request(an.GET, "/32770/0/16").payload == b"active"
    # observe the inference result, then run one inference on the first golden input
    obs = peer.request(an.GET, "/32770/0/22", observe=0, token=b"ob")
    assert obs.code == an.CONTENT and obs.opt.observe is not None
    x = vectors[0][0][0].astype(np.int8).tobytes()
    r = peer.request(an.PUT, "/32770/0/21", payload=x, content_format=42)
    assert r.code == an.CHANGED
    note = peer.recv(timeout=10)
    while note.token != b"ob":
        note = peer.recv(timeout=10)
    assert note.code == an.CONTENT and note.opt.observe > obs.opt.observe
    assert note.payload == vectors[0][1][0].astype(np.int8).tobytes()  # bit-exact with the host reference
    assert peer.request(an.GET, "/32770/0/17").payload == b"1"
    assert int(peer.request(an.GET, "/32770/0/18").payload) > 0
    # the golden self-test from the installed package
    assert peer.request(an.POST, "/32770/0/19").code == an.CHANGED
    res = wait_value(peer, "/32770/0/20", None, timeout=2)
    assert res.startswith(b"pass 2 vectors"), res


def test_top_class_of_a_forest_and_of_a_float_model(peer, tmp_path):
    """/32770/0/23 is the argmax of the first output whatever its dtype: a forest's int32 class scores, a float32
    output; the shared vectors (tests/vectors) give inputs and the outputs the host reference computed."""
    registered(peer, tmp_path)
    for name, k, n_in, n_out, out_dtype in (("trees_forest", 1, 6, 3, "<i4"), ("float_io_cnn", 2, 36, 3, "<f4")):
        xs = np.frombuffer((VECTORS / (name + ".in.bin")).read_bytes(), "<f4").reshape(3, 1, n_in)
        ys = np.frombuffer((VECTORS / (name + ".out.bin")).read_bytes(), out_dtype).reshape(3, 1, n_out)
        blob = (VECTORS / (name + ".blob")).read_bytes()
        assert push(peer, "/5/0/0", build_package(blob, name, "1", [([x.tobytes()], [y.tobytes()]) for x, y in zip(xs, ys)])).code == an.CHANGED
        assert peer.request(an.POST, "/5/0/2").code == an.CHANGED
        assert wait_value(peer, "/5/0/6", name.encode()) == name.encode()
        count = int(peer.request(an.GET, "/32770/0/17").payload)
        assert peer.request(an.PUT, "/32770/0/21", payload=xs[k].tobytes(), content_format=42).code == an.CHANGED
        assert wait_value(peer, "/32770/0/17", b"%d" % (count + 1)) == b"%d" % (count + 1)
        top = int(peer.request(an.GET, "/32770/0/23").payload)
        assert top == int(ys[k].argmax()) > 0, (name, top, ys[k])


def test_block1_protocol_errors_keep_the_transfer(peer, tmp_path):
    pkg, _, _ = package(SMALL)
    registered(peer, tmp_path)
    b = [pkg[i:i + 256] for i in range(0, len(pkg), 256)]  # SZX 4
    assert put_block(peer, "/5/0/0", b[0], 0, True, 4, size1=len(pkg)).code == an.CONTINUE
    assert peer.request(an.GET, "/5/0/3").payload == b"1"  # Downloading
    # a gap, a huge block number, SZX 7, a short middle block: refused, nothing written
    assert put_block(peer, "/5/0/0", b[2], 2, True, 4).code == an.REQUEST_ENTITY_INCOMPLETE
    assert put_block(peer, "/5/0/0", b[1], (1 << 20) - 1, True, 4).code == an.REQUEST_ENTITY_INCOMPLETE
    r = put_block(peer, "/5/0/0", b[1], 1, True, 4)
    assert r.code == an.CONTINUE
    msg = make(CON, an.PUT, peer.next_mid(), b"x", b[2])
    msg.opt.uri_path = ["5", "0", "0"]
    msg.opt.content_format = 42
    raw = bytearray(msg.encode())
    raw[-len(b[2]) - 1:-len(b[2]) - 1] = bytes([0xd1, 0x02, 0x27])  # Block1 (12 + 13 + 2): NUM 2, SZX 7
    peer.send_raw(bytes(raw))
    r = peer.response_to(msg)
    assert r.code == an.BAD_REQUEST
    assert put_block(peer, "/5/0/0", b[2][:100], 2, True, 4).code == an.BAD_REQUEST
    # the same block again with a new message ID (a server retry after a lost ACK): answered, not re-written
    assert put_block(peer, "/5/0/0", b[1], 1, True, 4).code == an.CONTINUE
    # SZX changes mid-transfer: byte offset 512 = block 1 of 512-byte blocks
    rest = pkg[512:]
    blocks = [rest[i:i + 512] for i in range(0, len(rest), 512)]
    for k, chunk in enumerate(blocks):
        more = k < len(blocks) - 1
        r = put_block(peer, "/5/0/0", chunk, 1 + k, more, 5)
        assert r.code == (an.CONTINUE if more else an.CHANGED), r.payload
    assert peer.request(an.GET, "/5/0/3").payload == b"2"


def test_duplicate_block_message_is_not_written_twice(peer, tmp_path):
    pkg, _, _ = package(SMALL)
    registered(peer, tmp_path)
    first = make(CON, an.PUT, 0x7001, b"d", pkg[:1024])
    first.opt.uri_path = ["5", "0", "0"]
    first.opt.content_format = 42
    first.opt.block1 = block_opt(0, True, 6)
    first.opt.size1 = len(pkg)
    peer.send(first)
    a = peer.recv_raw()
    peer.send(first)  # retransmission: same MID
    assert peer.recv_raw() == a
    r = put_block(peer, "/5/0/0", pkg[1024:2048], 1, True, 6)
    assert r.code == an.CONTINUE
    r = put_block(peer, "/5/0/0", pkg[2048:], 2, False, 6)
    assert r.code == an.CHANGED  # the SHA-256 check passed: block 0 was stored once


def test_size1_beyond_flash_is_413_with_result_2(peer, tmp_path):
    registered(peer, tmp_path, extra=("--flash-bytes", "65536"))  # an emulated 64 KB filesystem
    assert 60000 < int(peer.request(an.GET, "/32770/0/3").payload) <= 65536
    r = put_block(peer, "/5/0/0", b"\0" * 1024, 0, True, 6, size1=100000)
    assert r.code == an.REQUEST_ENTITY_TOO_LARGE
    assert r.opt.size1 is not None and r.opt.size1 <= 65536  # what would fit
    assert peer.request(an.GET, "/5/0/5").payload == b"2"
    assert peer.request(an.GET, "/5/0/3").payload == b"0"


def test_corrupt_package_gives_integrity_failure_and_old_model_stays(peer, tmp_path):
    pkg, blob, _ = package(SMALL, name="good")
    registered(peer, tmp_path)
    assert push(peer, "/5/0/0", pkg).code == an.CHANGED
    peer.request(an.POST, "/5/0/2")
    assert wait_value(peer, "/5/0/5", b"1") == b"1"
    bad = bytearray(package(SMALL, name="next")[0])
    bad[len(bad) // 2] ^= 0x40
    r = push(peer, "/5/0/0", bytes(bad))
    assert r.code == an.BAD_REQUEST
    assert peer.request(an.GET, "/5/0/5").payload == b"5"
    assert peer.request(an.GET, "/5/0/3").payload == b"0"
    assert peer.request(an.POST, "/5/0/2").code == an.METHOD_NOT_ALLOWED  # nothing downloaded
    assert peer.request(an.GET, "/32770/0/11").payload == b"good"
    # not a package at all: unsupported package type
    assert push(peer, "/5/0/0", b"MZ" + bytes(3000)).code == an.BAD_REQUEST
    assert peer.request(an.GET, "/5/0/5").payload == b"6"


def refused_q_block(peer, req):
    """These scripted servers speak Block2 only: a Q-Block2 request (RFC 9177, the device's first try) gets 4.02
    Bad Option for the critical option, as from any server without Q-Block; the device then uses Block2."""
    if req.opt.block2 is not None or not req.opt.get_option(31):
        return False
    peer.send(make(ACK if req.mtype == CON else NON, an.BAD_OPTION, req.mid, req.token, b""))
    return True


def serve_blocks(peer, data, path, drop=()):
    """Answer the device's Block2 GETs for `path` from data; drop the first request for block numbers in `drop`
    (a sequence), or the first N requests for each block of a {block: N} dict."""
    drop = drop if isinstance(drop, dict) else {num: 1 for num in drop}
    dropped = {}
    served = 0
    while True:
        req = peer.recv(timeout=15)
        if req.code != an.GET or list(req.opt.uri_path) != path.strip("/").split("/"):
            continue
        if refused_q_block(peer, req):
            continue
        num, _, szx = req.opt.block2
        if dropped.get(num, 0) < drop.get(num, 0):
            dropped[num] = dropped.get(num, 0) + 1
            continue
        size = 16 << szx
        chunk = data[num * size:(num + 1) * size]
        more = (num + 1) * size < len(data)
        resp = make(ACK, an.CONTENT, req.mid, req.token, chunk)
        resp.opt.block2 = block_opt(num, more, szx)
        if num == 0:
            resp.opt.size2 = len(data)
        peer.send(resp)
        served += 1
        if not more:
            return served


def test_pull_package_uri_with_lost_requests(peer, tmp_path):
    pkg, blob, _ = package(SMALL, name="pulled")
    registered(peer, tmp_path, ack_timeout_ms=200)
    uri = "coap://127.0.0.1:%d/fw/%s" % (peer.port, hashlib.sha256(pkg).hexdigest()[:16])
    r = peer.request(an.PUT, "/5/0/1", payload=uri.encode(), content_format=0)
    assert r.code == an.CHANGED
    served = serve_blocks(peer, pkg, "/fw/" + uri.rsplit("/", 1)[1], drop=(0, 1, 2))
    assert served == 3
    assert wait_value(peer, "/5/0/3", b"2") == b"2"
    assert peer.request(an.GET, "/5/0/1").payload == uri.encode()
    peer.request(an.POST, "/5/0/2")
    assert wait_value(peer, "/5/0/5", b"1") == b"1"
    assert peer.request(an.GET, "/32770/0/11").payload == b"pulled"


def test_pull_asks_again_for_a_block_whose_whole_exchange_was_lost(peer, tmp_path):
    """Block 1's first CON exchange loses all 5 transmissions (MAX_RETRANSMIT 4): the device requests the block
    again instead of abandoning the package (and does not restart from block 0)."""
    pkg, _, _ = package(SMALL, name="retried")
    registered(peer, tmp_path, ack_timeout_ms=100)
    uri = "coap://127.0.0.1:%d/fw/%s" % (peer.port, hashlib.sha256(pkg).hexdigest()[:16])
    assert peer.request(an.PUT, "/5/0/1", payload=uri.encode(), content_format=0).code == an.CHANGED
    served = serve_blocks(peer, pkg, "/fw/" + uri.rsplit("/", 1)[1], drop={1: 5})
    assert served == -(-len(pkg) // 1024)
    assert wait_value(peer, "/5/0/3", b"2") == b"2"
    peer.request(an.POST, "/5/0/2")
    assert wait_value(peer, "/5/0/5", b"1") == b"1"
    assert peer.request(an.GET, "/32770/0/11").payload == b"retried"


def test_pull_connection_lost_and_bad_uris(peer, tmp_path):
    pkg, _, _ = package(SMALL)
    registered(peer, tmp_path, ack_timeout_ms=100)
    uri = "coap://127.0.0.1:%d/fw/x" % peer.port
    assert peer.request(an.PUT, "/5/0/1", payload=uri.encode(), content_format=0).code == an.CHANGED
    # answer block 0 only, then go silent: after MAX_RETRANSMIT the device reports connection lost
    req = peer.recv(timeout=10)
    if refused_q_block(peer, req):
        req = peer.recv(timeout=10)
    resp = make(ACK, an.CONTENT, req.mid, req.token, pkg[:1024])
    resp.opt.block2 = block_opt(0, True, 6)
    peer.send(resp)
    # a push while the pull is in progress is refused, and does not disturb the pull's state
    r = put_block(peer, "/5/0/0", pkg[:1024], 0, True, 6, size1=len(pkg))
    assert r.code == an.SERVICE_UNAVAILABLE
    assert peer.request(an.GET, "/5/0/3").payload == b"1"
    t0 = time.monotonic()
    while True:
        v = peer.request(an.GET, "/5/0/5", timeout=10).payload
        if v != b"0" or time.monotonic() - t0 > 20:
            break
        time.sleep(0.2)
    assert v == b"4"
    assert peer.request(an.GET, "/5/0/3").payload == b"0"
    for bad, result in ((b"coaps://127.0.0.1/fw", b"9"), (b"http://x/y", b"9"), (b"no scheme", b"7"),
                        (b"coap://:5683/x", b"7"), (b"coap://127.0.0.1:99999/x", b"7")):
        assert peer.request(an.PUT, "/5/0/1", payload=bad, content_format=0).code == an.CHANGED
        assert peer.request(an.GET, "/5/0/5").payload == result, bad
        assert peer.request(an.GET, "/5/0/3").payload == b"0"


def test_pull_does_not_block_registration_or_notifications(peer, tmp_path):
    pkg, _, _ = package(SMALL, name="slow")
    registered(peer, tmp_path, lifetime=2, ack_timeout_ms=1500)
    obs = peer.request(an.GET, "/5/0/3", observe=0, token=b"st")
    assert obs.payload == b"0"
    uri = "coap://127.0.0.1:%d/fw/slow" % peer.port
    assert peer.request(an.PUT, "/5/0/1", payload=uri.encode(), content_format=0).code == an.CHANGED
    later = []  # block responses held back: a slow link, 1 s per block
    states, updates_during_download, done = [], 0, False
    end = time.monotonic() + 20
    while not done and time.monotonic() < end:
        for item in [x for x in later if x[0] <= time.monotonic()]:
            later.remove(item)
            peer.send(item[1])
        try:
            m = peer.recv(timeout=0.05)
        except TimeoutError:
            continue
        if m.code == an.GET and list(m.opt.uri_path) == ["fw", "slow"]:
            if refused_q_block(peer, m):
                continue
            num, _, szx = m.opt.block2
            size = 16 << szx
            resp = make(ACK, an.CONTENT, m.mid, m.token, pkg[num * size:(num + 1) * size])
            resp.opt.block2 = block_opt(num, (num + 1) * size < len(pkg), szx)
            if not any(x[1].mid == m.mid for x in later):
                later.append((time.monotonic() + 1.0, resp))
        elif m.code == an.POST and list(m.opt.uri_path) == ["rd", "7"]:
            updates_during_download += 1
            peer.send(make(ACK, an.CHANGED, m.mid, m.token))
        elif m.token == b"st":
            states.append(m.payload)
            done = m.payload == b"2"
    assert done, states
    assert states[0] == b"1" and states[-1] == b"2"
    assert updates_during_download >= 1  # the 2 s lifetime was renewed while the package came in


def test_300kb_push_keeps_ram_bounded(tmp_path):
    """A 300 KB package (AD model + 20 golden vectors) pushed block by block in a 256 KB heap: the live heap
    never grows by more than 16 KB over idle (the package is never held in RAM), and it installs."""
    pkg, _, _ = package("ad", name="ad", n_vectors=20)
    assert len(pkg) > 290_000
    f = tmp_path / "ad.pkg"
    f.write_bytes(pkg)
    script = Path(__file__).parent / "mpy" / "measure_block1.py"
    out = unixport.run(script=script, args=(f, tmp_path / "flash", json.dumps(device_trust()["trust_anchors"])),
                       heap="256k",
                       path=compiled_path()).stdout.decode()  # .mpy, as deployed
    m = re.search(r"blocks (\d+) bytes (\d+) peak_alloc (\d+) peak_live (\d+) state (\d)", out)
    assert m, out
    blocks, size, peak_alloc, peak_live, state = map(int, m.groups())
    assert (blocks, size, state) == (-(-len(pkg) // 1024), len(pkg), 2)
    assert peak_live < 16 * 1024, out
