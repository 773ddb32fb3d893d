# The device's OSCORE codec on a plain UDP socket, for the interop test against aiocoap:
#   micropython oscore_peer.py client PORT SECRET SALT SENDER RECIPIENT   (hex arguments)
#       protects GET /tinyml/status to 127.0.0.1:PORT, unprotects the answer, then sends the same protected
#       request again under a new message ID (what an attacker replaying it would do; the same ID would only
#       hit CoAP deduplication) and reports what the server says
#   micropython oscore_peer.py server PORT SECRET SALT SENDER RECIPIENT COUNT
#       binds 127.0.0.1:PORT, prints "ready", then answers COUNT datagrams: protected requests get a protected
#       2.05 with the path echoed; requests that fail to unprotect get an unprotected error response with the
#       module's code
import binascii
import socket
import sys

from coap import message as cm
from coap import oscore

h = binascii.unhexlify


def context(args):
    secret, salt, sender, recipient = (h(a) for a in args)
    return oscore.Context(secret, sender, recipient, salt)


def show(msg):
    return "%s cf=%s observe=%s payload=%s" % (
        cm.code_str(msg.code), msg.uint(cm.CONTENT_FORMAT), msg.uint(cm.OBSERVE), bytes(msg.payload).decode())


def exchange(sock, addr, datagram):
    sock.sendto(datagram, addr)
    return cm.decode(sock.recv(1500))


def client(port, args):
    ctx = context(args)
    addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    request = cm.Message(cm.CON, cm.GET, 0x2001, b"\x0a\x0b")
    request.add(cm.URI_PATH, "tinyml").add(cm.URI_PATH, "status").add(cm.ACCEPT, 0)
    protected, request_id = ctx.protect_request(request)
    datagram = bytes(cm.encode(protected))
    answer = exchange(sock, addr, datagram)
    print("outer", cm.code_str(answer.code))
    print("response", show(ctx.unprotect_response(answer, request_id)))
    protected.mid += 1
    replayed = exchange(sock, addr, bytes(cm.encode(protected)))
    try:
        ctx.unprotect_response(replayed, request_id)
        print("replay accepted")
    except oscore.OscoreError as e:
        print("replay", cm.code_str(replayed.code), e.reason, bytes(replayed.payload).decode())


def server(port, args, count):
    ctx = context(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    print("ready")
    for _ in range(count):
        data, addr = sock.recvfrom(1500)
        request = cm.decode(data)
        try:
            plain, request_id = ctx.unprotect_request(request)
        except oscore.OscoreError as e:
            print("rejected", e.reason)
            answer = cm.Message(cm.ACK, e.code, request.mid, request.token, payload=e.reason.encode())
        else:
            print("request", cm.code_str(plain.code), "/".join(plain.path()))
            reply = cm.Message(cm.ACK, cm.CONTENT, request.mid, request.token)
            reply.add(cm.CONTENT_FORMAT, 0)
            reply.payload = ("ok " + "/".join(plain.path())).encode()
            answer = ctx.protect_response(reply, request_id)
        sock.sendto(cm.encode(answer), addr)


if sys.argv[1] == "client":
    client(int(sys.argv[2]), sys.argv[3:7])
else:
    server(int(sys.argv[2]), sys.argv[3:7], int(sys.argv[7]))
