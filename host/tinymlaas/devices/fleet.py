"""Emulated fleets: many emulated devices in a few `micropython` processes, one supervisor for all of them.

Each process runs lwm2m_client/fleet_main.py with up to `per_vm` endpoints, and each endpoint is a whole
emulated device (its own UDP socket, registration, objects, flash directory, installer and heap budget). Devices
are dealt to the processes in turn, so a registration storm spreads over all of them. Used by
`tinymlaas fleet emulate`, the tests and bench/fleet_*.py; docs/fleet.md has the figures.

    with EmulatedFleet("coap://127.0.0.1:5683", 50, prefix="kws") as fleet:
        fleet.wait_registered(60)
        fleet.memory()   # RSS and PSS of the processes, per device

Layout under the data directory: NAME/flash/ (each device's flash, kept across runs with a given data_dir) and
vm-K.json (the config of process K).
"""

import collections
import json
import math
import os
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import unixport
from .emulated import CODE_IN_HEAP, PROFILES, board_config, compiled_path, device_trust

DEFAULT_PER_VM = 250
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,60}\Z")
FDS_PER_ENDPOINT = 1  # its UDP socket; files are opened and closed around each install step


class FleetError(RuntimeError):
    pass


def proc_memory(pid):
    """{"rss": bytes, "pss": bytes} of a process, from /proc (PSS shares the library pages among their users)."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(rest.split()[0]) * 1024
    return out


class _VM:
    """One micropython process and what its status lines say."""

    def __init__(self, index, names, config):
        self.index = index
        self.names = names
        self.config = config
        self.proc = None
        self.ready = None  # the "fleet ready ..." figures
        self.stopped = None  # the "fleet stopped ..." figures
        self.lines = collections.deque(maxlen=200)
        self.restarts = 0
        self.thread = None


def _figures(text):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text)}


class EmulatedFleet:
    def __init__(self, server, count, prefix="dev", profile="esp32", per_vm=DEFAULT_PER_VM, data_dir=None,
                 lifetime=300, ramp=0.0, ack_timeout_ms=2000, flash=None, first=0, log=None, trust=None):
        if not str(server).startswith("coap://"):
            raise ValueError("server must be a coap:// URI, got %r" % server)
        if profile not in PROFILES:
            raise ValueError("unknown profile %r (known: %s)" % (profile, ", ".join(PROFILES)))
        if count < 1 or per_vm < 1:
            raise ValueError("count and devices per process must be at least 1")
        if lifetime < 1 or ramp < 0:
            raise ValueError("lifetime must be at least 1 s and ramp not negative")
        self.names = ["%s-%04d" % (prefix, i) for i in range(first, first + count)]
        if not NAME_RE.match(self.names[-1]):
            raise ValueError("prefix %r: endpoint names are letters, digits, '.', '_' and '-' (and name folders)"
                             % prefix)
        self.server = server
        self.profile = profile
        prof = PROFILES[profile]
        self.board_heap = prof["board_heap"]
        self.flash_bytes = flash if flash is not None else prof["flash_bytes"]
        self.lifetime = lifetime
        self.ramp = ramp
        self.ack_timeout_ms = ack_timeout_ms
        self.own_dir = data_dir is None  # a temporary directory is removed at stop; a given one is the fleet's flash
        self.data_dir = Path(data_dir).resolve() if data_dir else Path(tempfile.mkdtemp(prefix="tinymlaas-fleet-"))
        self.log = log  # callable(line) for every status line, or None
        self.trust = trust  # package trust anchors (emulated.device_trust; default: the default key store's)
        n_vms = math.ceil(count / per_vm)
        self.vms = [_VM(k, self.names[k::n_vms], None) for k in range(n_vms)]  # dealt in turn
        self.per_vm = max(len(vm.names) for vm in self.vms)
        self.heap = CODE_IN_HEAP + self.per_vm * self.board_heap  # each endpoint room for its board's heap
        self.registered = {}  # endpoint -> registration location ("/rd/…")
        self.reboots = collections.Counter()
        self.errors = []
        self._cond = threading.Condition()
        self._stopping = False
        self.started_at = None

    # ---- configuration -------------------------------------------------------------------------------------

    def _vm_config(self, vm):
        start = {name: int(1000 * self.ramp * i / len(self.names)) for i, name in enumerate(self.names)}
        cfg = {"server": self.server, "lifetime": self.lifetime, "ack_timeout_ms": self.ack_timeout_ms,
               "board_heap": self.board_heap, **board_config(self.profile), **device_trust(self.trust),
               "devices": [{"endpoint": n, "data_dir": str(self.data_dir / n / "flash"), "start_ms": start[n]}
                           for n in vm.names]}
        if self.flash_bytes:
            cfg["flash_bytes"] = self.flash_bytes
        return cfg

    # ---- processes -----------------------------------------------------------------------------------------

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._raise_fd_limit(self.per_vm * FDS_PER_ENDPOINT + 64)
        code_path = compiled_path()
        self.started_at = time.monotonic()
        for vm in self.vms:
            path = self.data_dir / ("vm-%d.json" % vm.index)
            path.write_text(json.dumps(self._vm_config(vm)))
            vm.config = path
            self._spawn(vm, code_path)
        return self

    @staticmethod
    def _raise_fd_limit(need):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < need:
            if hard != resource.RLIM_INFINITY and hard < need:
                raise FleetError("%d devices per process need %d file descriptors; the limit is %d (ulimit -n)"
                                 % (need - 64, need, hard))
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    def _spawn(self, vm, code_path):
        # as a module, not a script: all the device code from compiled_path() (emulated.EmulatedDevice.command)
        cmd = unixport.module_command("fleet_main", "%d" % self.heap, ["--config", vm.config])
        # a session of its own: a Ctrl-C at the terminal reaches the supervisor only, which then stops each process
        # with one SIGINT (a second one would cut its de-registrations short)
        vm.proc = subprocess.Popen(cmd, env=unixport.env(code_path), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, cwd=self.data_dir, start_new_session=True)
        vm.thread = threading.Thread(target=self._follow, args=(vm, code_path), daemon=True)
        vm.thread.start()

    def _follow(self, vm, code_path):
        proc = vm.proc
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            vm.lines.append(line)
            self._status(vm, line)
            if self.log:
                self.log(line)
        code = proc.wait()
        with self._cond:
            gone = [n for n in vm.names if n in self.registered]
            for n in gone:
                del self.registered[n]
            self._cond.notify_all()
        if self._stopping:
            return
        if vm.ready is None:  # it never came up: restarting would fail the same way
            self.errors.append("process %d exited with %d before it was ready:\n%s"
                               % (vm.index, code, "\n".join(vm.lines)))
            with self._cond:
                self._cond.notify_all()
            return
        # a crash takes all its devices down, like a power cut: they come back on their flash and register again
        vm.restarts += 1
        if self.log:
            self.log("fleet process %d exited with %d; starting it again" % (vm.index, code))
        vm.ready = None
        self._spawn(vm, code_path)

    def _status(self, vm, line):
        name, _, rest = line.partition(" ")
        with self._cond:
            if name == "fleet":
                if rest.startswith("ready "):
                    vm.ready = _figures(rest)
                elif rest.startswith("stopped "):
                    vm.stopped = _figures(rest)
            elif rest.startswith("registered ") or rest.startswith("registration /"):
                self.registered[name] = rest.split(" ", 1)[1]
            elif rest in ("registration lost", "deregistered"):
                self.registered.pop(name, None)
            elif rest == "rebooted":
                self.reboots[name] += 1
            else:
                return
            self._cond.notify_all()

    # ---- waiting and figures -------------------------------------------------------------------------------

    def wait_registered(self, timeout=60, count=None):
        """Wait until `count` devices (default: all) are registered; -> seconds since start(). Raises
        TimeoutError (with how many made it) or FleetError (a process failed to start)."""
        want = len(self.names) if count is None else count
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.registered) < want:
                if self.errors:
                    raise FleetError(self.errors[0])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("%d of %d devices registered within %ss" % (len(self.registered), want,
                                                                                 timeout))
                self._cond.wait(min(left, 1.0))
        return time.monotonic() - self.started_at

    def pids(self):
        return [vm.proc.pid for vm in self.vms if vm.proc and vm.proc.poll() is None]

    def memory(self):
        """RSS and PSS of the device processes and of this supervisor, in total and per device."""
        vms = [proc_memory(pid) for pid in self.pids()]
        me = proc_memory(os.getpid())
        total = {k: sum(v[k] for v in vms) for k in ("rss", "pss")}
        n = len(self.names)
        return {"devices": n, "processes": len(vms), "vm": total, "supervisor": me,
                "per_device": {k: (total[k] + me[k]) / n for k in ("rss", "pss")},
                "heap": {"reserved_per_process": self.heap,
                         "per_endpoint": [vm.ready.get("per_endpoint") for vm in self.vms if vm.ready],
                         "shared": [vm.ready.get("shared") for vm in self.vms if vm.ready]}}

    # ---- stopping ------------------------------------------------------------------------------------------

    def stop(self, timeout=20):
        """SIGINT to every process: each de-registers all its devices at once and exits. -> (de-registered,
        unanswered) as the processes report them."""
        self._stopping = True
        running = [vm for vm in self.vms if vm.proc and vm.proc.poll() is None]
        for vm in running:
            unixport.interrupt(vm.proc.pid)
        deadline = time.monotonic() + timeout
        for vm in running:
            try:
                vm.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                vm.proc.kill()
                vm.proc.wait()
        for vm in self.vms:
            if vm.thread:
                vm.thread.join(5)
        done = sum((vm.stopped or {}).get("deregistered", 0) for vm in self.vms)
        lost = sum((vm.stopped or {}).get("unanswered", 0) for vm in self.vms)
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return done, lost

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
