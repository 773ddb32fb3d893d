"""A CPython LwM2M server stand-in for client tests: one UDP socket on loopback, aiocoap's codec (an independent
implementation) to build and parse messages, and raw datagrams for malformed-input cases."""

import os
import socket
import subprocess
import time

from aiocoap import message as am
from aiocoap import numbers as an
from aiocoap.optiontypes import BlockOption

from tinymlaas.devices import unixport
from tinymlaas.devices.emulated import trust_args
from tinymlaas.paths import LWM2M_CLIENT

CON, NON, ACK, RST = an.CON, an.NON, an.ACK, an.RST


def make(mtype, code, mid, token=b"", payload=b""):
    msg = am.Message(code=code, payload=payload)
    msg.mtype = mtype
    msg.mid = mid
    msg.token = token
    return msg


class Peer:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.addr = None  # the device's address, learnt from its first datagram
        self.mid = 0x2000
        self.proc = None

    # -- raw datagrams
    def recv_raw(self, timeout=5.0):
        self.sock.settimeout(timeout)
        data, addr = self.sock.recvfrom(2048)
        self.addr = addr
        return data

    def recv(self, timeout=5.0):
        return am.Message.decode(self.recv_raw(timeout))

    def send_raw(self, data):
        self.sock.sendto(bytes(data), self.addr)

    def send(self, msg):
        self.send_raw(msg.encode())

    def no_datagram(self, timeout=0.5):
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(2048)
        except socket.timeout:
            return True
        raise AssertionError("unexpected datagram %r" % data)

    # -- requests to the device
    def next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def request(self, code, path, payload=b"", mtype=CON, token=None, timeout=5.0, **opts):
        msg = make(mtype, code, self.next_mid(), token if token is not None else os.urandom(2), payload)
        msg.opt.uri_path = [p for p in path.strip("/").split("/") if p]
        for k, v in opts.items():
            setattr(msg.opt, k, v)
        self.send(msg)
        return self.response_to(msg, timeout)

    def response_to(self, msg, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            r = self.recv(max(0.05, end - time.monotonic()))
            if r.token == msg.token and (r.mtype != ACK or r.mid == msg.mid):
                return r

    # -- registration
    def accept_register(self, location=("rd", "7"), timeout=10.0):
        try:
            req = self.recv(timeout)
        except socket.timeout:
            raise AssertionError("device did not register; its output:\n" + self.stop_device())
        assert req.code == an.POST and list(req.opt.uri_path) == ["rd"], req
        resp = make(ACK, an.CREATED, req.mid, req.token)
        resp.opt.location_path = list(location)
        self.send(resp)
        return req

    def close(self):
        self.stop_device()
        self.sock.close()

    # -- the device process
    def start_device(self, tmp_path, endpoint="dev1", heap="512k", lifetime=300, ack_timeout_ms=2000, extra=()):
        data_dir = tmp_path / "flash"
        cmd = unixport.command(LWM2M_CLIENT / "tinyml_device.py", heap, [
            "--server", "coap://127.0.0.1:%d" % self.port, "--endpoint", endpoint, "--lifetime", lifetime,
            "--data-dir", data_dir, "--ack-timeout-ms", ack_timeout_ms, *trust_args(), *extra])
        self.proc = subprocess.Popen(cmd, env=unixport.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=tmp_path)
        return self.proc

    def stop_device(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        out = self.proc.stdout.read().decode() if self.proc else ""
        return out


def block_opt(num, more, szx):
    return BlockOption.BlockwiseTuple(num, more, szx)


def put_block(peer, path, chunk, num, more, szx, size1=None, mid=None, token=b"\xb1"):
    msg = make(CON, an.PUT, mid if mid is not None else peer.next_mid(), token, chunk)
    msg.opt.uri_path = [p for p in path.strip("/").split("/") if p]
    msg.opt.content_format = 42
    msg.opt.block1 = block_opt(num, more, szx)
    if size1 is not None:
        msg.opt.size1 = size1
    peer.send(msg)
    return peer.response_to(msg, timeout=30)


def push(peer, path, data, szx=6):
    """Block1 PUT of data; returns the final response (stops early on a non-2.31 answer)."""
    size = 16 << szx
    n = (len(data) + size - 1) // size
    for num in range(n):
        more = num < n - 1
        r = put_block(peer, path, data[num * size:(num + 1) * size], num, more, szx,
                      size1=len(data) if num == 0 else None)
        if r.code != (an.CONTINUE if more else an.CHANGED):
            return r
    return r


def wait_value(peer, path, want, timeout=60.0):
    end = time.monotonic() + timeout
    while True:
        v = peer.request(an.GET, path).payload
        if v == want or time.monotonic() > end:
            return v
        time.sleep(0.1)
