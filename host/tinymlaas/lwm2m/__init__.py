"""Host-side OMA LwM2M 1.1: content-format codecs, object definitions and the LwM2M server.

`codecs` and `objects` are pure (no sockets, no CoAP) so they can be fuzzed and reused; `server` puts them on
aiocoap. The service layer uses `LwM2MServer` only.
"""
