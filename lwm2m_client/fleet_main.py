# Fleet main: many emulated devices in one MicroPython VM. Each endpoint is a whole device of its own, built by
# tinyml_device.build exactly as a lone device is: its own UDP socket, registration, objects (0, 1, 3, 5 and
# TinyML), flash directory and installer. One loop serves them all, and the code is loaded once: that is what
# makes a fleet cheap (docs/fleet.md has the figures).
#
#   micropython fleet_main.py --config fleet.json
#
# fleet.json: the device config keys the endpoints share (server, lifetime, ack_timeout_ms, flash_bytes, model,
# hw_version, device_type), "board_heap" (bytes) and "devices": [{"endpoint": NAME, "data_dir": DIR,
# "start_ms": delay before its first Register}, ...].
#
# The loop: one select.poll over every socket. An endpoint whose socket is readable is stepped at once (its
# datagram handled, then its deferred work, such as an install's activation); one with retransmissions pending at
# its deadline; every endpoint once a second (registration updates, notifications, retries).
#
# Heap: one VM heap cannot be split between its endpoints. What is real: each endpoint's objects, caches and
# model live in this heap, and activations run one at a time (the loop is single-threaded), each with the VM's
# free heap, which the supervisor sizes at board_heap per endpoint. What is reported (/32770/0/0-2, /3/0/10 and
# 21): the board's heap, minus what this endpoint holds, measured as the VM's heap growth per endpoint at boot
# plus its model's as it loads. The code's heap is shared and not counted (a board keeps it frozen in flash), so
# code a lone device imports only for a transfer or a package check (the Q-Block receivers, the signature
# verifier) stays loaded here, as frozen code does on a board: dropped by one endpoint and imported again by the
# next, it cost every install a reload.
# Collections: the device code collects at points that arrange a board's heap around a model swap (~12 per
# install). In this VM a collection walks every endpoint's heap (~1.8 ms at 50 endpoints, N times a board's)
# and arranges nothing for the endpoint that asked; so the endpoints' code gets a `gc` whose collect() does
# nothing: the VM collects every GC_THRESHOLD of allocation and whenever an allocation finds no room (as a
# board's heap does when it is full), so garbage stays bounded and no endpoint is refused memory it would get.
# The fleet's own heap figures are taken after real collections.
# The gap: an endpoint is not stopped from using more than its board has (docs/fleet.md).
#
# Status lines on stdout name their endpoint first ("dev-0001 registered /rd/5a3c"), or "fleet" for the VM's
# own; host/tinymlaas/devices/fleet.py follows them. SIGINT de-registers every endpoint at once, then exits.
import builtins
import gc
import json
import select
import sys
import time

SWEEP_MS = 1000
DEREGISTER_MS = 8000  # three tries of a CON (ACK_TIMEOUT 2-3 s, doubling)
# Collect after this much allocation rather than when the heap is full: a heap sized for every endpoint's board
# would otherwise fill with garbage, and each page it touches stays in the process's RSS. 1 MB: a signature
# check makes ~1.4 MB of big-integer garbage, which at 256 KB cost every install five collections of the whole VM.
GC_THRESHOLD = 1024 * 1024


class SharedHeapGC:
    """The `gc` module as the endpoints' code sees it (installed in sys.modules before that code is imported):
    gc itself, but collect() leaves collecting to the VM (see the header)."""

    def __init__(self):
        for name in dir(gc):
            if not name.startswith("__"):
                setattr(self, name, getattr(gc, name))
        self.collect = self.leave_to_the_vm

    def leave_to_the_vm(self):
        pass


shared_gc = SharedHeapGC()
sys.modules["gc"] = shared_gc

import tinyml_device as td  # noqa: E402 (after the gc above)
from coap import message as cm  # noqa: E402
from lwm2m import client as lwm2m_client  # noqa: E402
from lwm2m.obj_device import Device  # noqa: E402
from lwm2m.obj_tinyml import FREE_HEAP, HEAP_TOTAL, LARGEST_BLOCK, TinyML  # noqa: E402
from tinyml import cose, p256  # noqa: E402,F401 (kept loaded: trust.check then never drops them)

lwm2m_client.TRANSFER_MODULES = ()  # shared code: a swap on one endpoint drops nothing another is using
DEVICE_FREE_KB = 10  # Device object: Memory Free and Total (KB)
DEVICE_TOTAL_KB = 21

_print = builtins.print
_speaker = ["fleet"]  # the endpoint being served: the client's own messages carry its name


def _named_print(*args, **kw):
    _print(_speaker[0], *args, **kw)


class Budget:
    """One endpoint's heap figures: its board's heap, what it holds without a model, what its model holds."""

    def __init__(self, board_heap):
        self.board_heap = board_heap
        self.own = 0
        self.model = 0

    def free(self):
        return max(0, self.board_heap - self.own - self.model)


class FleetTinyML(TinyML):
    """The TinyML object reporting its endpoint's Budget; the model's heap is measured around each load (loads
    are serialized in the VM, so the VM's growth is this model's)."""

    def __init__(self, budget, *args):
        self.budget = budget
        self._before = 0
        super().__init__(*args)

    def unload(self):
        super().unload()
        self.budget.model = 0
        gc.collect()  # the model's heap is measured between two real collections
        self._before = gc.mem_alloc()

    def reload(self, model=None):
        super().reload(model)  # without a model: unload() first, then the active one loaded
        gc.collect()
        self.budget.model = max(0, gc.mem_alloc() - self._before) if self.model is not None else 0

    def read(self, iid, rid):
        if self.coproc_caps is None:
            if rid == HEAP_TOTAL:
                return self.budget.board_heap
            if rid == FREE_HEAP:
                return self.budget.free()
            if rid == LARGEST_BLOCK:  # nor more than the VM has free (without a collection: at most that)
                return min(self.budget.free(), gc.mem_free())
        return super().read(iid, rid)


class FleetDevice(Device):
    """The Device object of an endpoint: memory figures from its Budget; Reboot restarts this endpoint only."""

    def __init__(self, node, info):
        super().__init__(info)
        self.node = node

    def read(self, iid, rid):
        if rid == DEVICE_FREE_KB:
            return self.node.budget.free() // 1024
        if rid == DEVICE_TOTAL_KB:
            return self.node.budget.board_heap // 1024
        return super().read(iid, rid)

    def execute(self, iid, rid, arg):
        self.node.reboot = True  # the loop builds the endpoint again once the 2.04 is out


class Node:
    """One endpoint: its config, its client (rebuilt at a reboot, on the same flash) and its heap budget."""

    def __init__(self, cfg, board_heap):
        self.cfg = cfg
        self.name = cfg["endpoint"]
        self.budget = Budget(board_heap)
        self.client = None
        self.reboot = False
        self.was = None  # the registration location last reported

    def boot(self, at):
        self.reboot = False
        self.client = td.build(self.cfg, device=lambda info: FleetDevice(self, info),
                               tinyml=lambda *a: FleetTinyML(self.budget, *a))
        # the first Register waits for the endpoint's start time (the client registers once retry_at has passed)
        self.client.retry_at = at
        return self.client.ep.sock


def _earliest(deadlines):
    best = None
    for d in deadlines:
        if best is None or time.ticks_diff(d, best) < 0:
            best = d
    return best


class Fleet:
    def __init__(self, nodes):
        self.nodes = nodes
        self.poller = select.poll()
        self.by_sock = {}
        self.busy = {}  # node -> its earliest retransmission deadline
        self.starting = []  # nodes whose first Register is still to come, in order of their start times

    def attach(self, node, at=None):
        """Boot the endpoint; its first Register at ticks `at` (default: now)."""
        now = time.ticks_ms()
        sock = node.boot(now if at is None else at)
        self.poller.register(sock, select.POLLIN)
        self.by_sock[sock] = node
        if at is not None and time.ticks_diff(at, now) > 0:
            self.starting.append(node)  # stepped at its start time, not at the next sweep

    def reboot(self, node):
        sock = node.client.ep.sock
        self.poller.unregister(sock)
        del self.by_sock[sock]
        sock.close()
        node.was = None
        self.attach(node)
        print("rebooted")

    def step(self, node):
        _speaker[0] = node.name
        try:
            node.client.step(0)
            if node.reboot:
                self.reboot(node)
        except Exception as e:  # one endpoint's failure must not stop the others
            print("error:", repr(e))
        c = node.client
        if c.location != node.was:
            if c.location:
                print("registered" if node.was is None else "registration", "/" + "/".join(c.location))
            else:
                print("registration lost")
            node.was = c.location
        pending = c.ep.pending
        if pending:
            self.busy[node] = _earliest([t.deadline for t in pending])
        elif node in self.busy:
            del self.busy[node]
        _speaker[0] = "fleet"

    def run(self):
        next_sweep = time.ticks_ms()
        next_due = None
        while True:
            now = time.ticks_ms()
            wait = max(0, time.ticks_diff(next_sweep, now))
            if next_due is not None:
                wait = min(wait, max(0, time.ticks_diff(next_due, now)))
            if self.starting:
                wait = min(wait, max(0, time.ticks_diff(self.starting[0].client.retry_at, now)))
            for entry in self.poller.poll(wait):
                node = self.by_sock.get(entry[0])
                if node is not None:
                    self.step(node)
            now = time.ticks_ms()
            while self.starting and time.ticks_diff(now, self.starting[0].client.retry_at) >= 0:
                self.step(self.starting.pop(0))
            if time.ticks_diff(now, next_sweep) >= 0:
                for node in self.nodes:
                    self.step(node)
                next_sweep = time.ticks_add(time.ticks_ms(), SWEEP_MS)
            elif next_due is not None and time.ticks_diff(now, next_due) >= 0:
                for node in [n for n, d in self.busy.items() if time.ticks_diff(now, d) >= 0]:
                    self.step(node)
            next_due = _earliest(self.busy.values())

    def deregister_all(self, timeout_ms=DEREGISTER_MS):
        """De-register every registered endpoint at once (CON DELETEs, retransmitted), then wait for the answers
        up to timeout_ms. -> (answered, unanswered)."""
        going = []
        for node in self.nodes:
            c = node.client
            if not c.location:
                continue
            msg = cm.Message(cm.CON, cm.DELETE, token=c.ep.new_token())
            for seg in c.location:
                msg.add(cm.URI_PATH, seg)
            c.location = None
            c.observations = []
            going.append((node, c.ep.start(c.server, msg)))
        limit = time.ticks_add(time.ticks_ms(), timeout_ms)
        waiting = going
        while waiting and time.ticks_diff(limit, time.ticks_ms()) > 0:
            for entry in self.poller.poll(100):
                node = self.by_sock.get(entry[0])
                if node is not None:
                    node.client.ep.poll(0)
            for node, t in waiting:
                node.client.ep.poll(0)  # retransmissions due
            waiting = [(n, t) for n, t in waiting if t.state in ("pending", "acked")]
        answered = 0
        for node, t in going:
            _speaker[0] = node.name
            if t.state == "done":
                answered += 1
                print("deregistered")
            else:
                print("deregister: no answer (%s)" % t.state)
        _speaker[0] = "fleet"
        return answered, len(going) - answered


def main(argv):
    if len(argv) != 2 or argv[0] != "--config":
        raise SystemExit("usage: fleet_main.py --config FLEET.json")
    with open(argv[1]) as f:
        spec = json.load(f)
    devices = spec.pop("devices")
    board_heap = spec.pop("board_heap")
    builtins.print = _named_print
    gc.collect()
    code = gc.mem_alloc()
    nodes = []
    fleet = Fleet(nodes)
    own = 0
    t0 = time.ticks_ms()  # start times count from here (devices must come in their order)
    for i, d in enumerate(devices):
        cfg = dict(td.DEFAULTS)
        cfg.update(spec)
        cfg.update(d)
        cfg["serial"] = cfg["endpoint"]
        node = Node(cfg, board_heap)
        nodes.append(node)
        fleet.attach(node, time.ticks_add(t0, d.get("start_ms", 0)))
        if i == 0:
            gc.collect()
            first = gc.mem_alloc()  # the first endpoint also imports what the others share
    gc.collect()
    if len(nodes) > 1:
        own = (gc.mem_alloc() - first) // (len(nodes) - 1)
    elif nodes:
        own = first - code
    for node in nodes:
        node.budget.own = own
    gc.threshold(GC_THRESHOLD)
    shared = (first - own) if nodes else code  # code and what every endpoint shares
    print("ready endpoints=%d shared=%d per_endpoint=%d heap_total=%d" % (len(nodes), shared, own,
                                                                         gc.mem_free() + gc.mem_alloc()))
    try:
        fleet.run()
    except KeyboardInterrupt:  # the supervisor stops the fleet: leave the server's registry clean
        answered, lost = fleet.deregister_all()
        print("stopped deregistered=%d unanswered=%d" % (answered, lost))


if __name__ == "__main__":
    main(sys.argv[1:])
