"""Host-side OMA LwM2M 1.1: content-format codecs, object definitions and the LwM2M server.

`codecs` and `objects` are pure (no sockets, no CoAP) so they can be fuzzed and reused; `server` puts them on
aiocoap. The service layer uses `LwM2MServer` only.
"""

import os

# aiocoap binds every UDP socket with SO_REUSEPORT unless told otherwise. Then a second `serve` on a taken port binds
# too and the kernel splits the devices' datagrams between the two, and — worse, because silent — two sockets bound
# to port 0 can be given the same ephemeral port (Linux shares a port among SO_REUSEPORT sockets of one user), so a
# server or client on "a free port" may receive another's datagrams. One port, one socket, unless a deployment
# asks for a port group explicitly (AIOCOAP_REUSE_PORT=1).
os.environ.setdefault("AIOCOAP_REUSE_PORT", "0")
