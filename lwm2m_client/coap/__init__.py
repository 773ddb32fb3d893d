# CoAP for MicroPython devices: `message` is the wire codec (no sockets), `block` the RFC 7959 Block option codec,
# `endpoint` the UDP transport with CON retransmission and duplicate detection.
