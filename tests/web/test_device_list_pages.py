"""GET /api/devices in pages (?after=ENDPOINT&limit=N), for fleets too large for one answer; real devices over
CoAP/UDP (the CPython reference client) registered with the server behind the API."""

from tinymlaas.lwm2m.reference_client import ReferenceClient

NAMES = ["pg-a", "pg-b", "pg-c", "pg-d", "pg-e"]


def test_the_device_list_pages_by_endpoint(web_open):
    w = web_open
    devices = [w.call(ReferenceClient(name).start(w.coap_uri)) for name in reversed(NAMES)]
    try:
        for d in devices:
            assert w.call(d.register()).code.is_successful()
        api = w.client()

        def endpoints(query=""):
            status, body, _ = api.get("/api/devices" + query)
            assert status == 200, body
            return [d["endpoint"] for d in body]

        assert endpoints() == NAMES                                   # no parameters: all, as before
        assert endpoints("?limit=2") == ["pg-a", "pg-b"]
        assert endpoints("?after=pg-b&limit=2") == ["pg-c", "pg-d"]
        assert endpoints("?after=pg-d&limit=2") == ["pg-e"]
        assert endpoints("?after=pg-e&limit=2") == []
        assert endpoints("?after=pg-bb") == ["pg-c", "pg-d", "pg-e"]  # any string: the endpoints after it
        for bad in ("0", "-1", "x", "10001"):
            status, body, _ = api.get("/api/devices?limit=" + bad)
            assert status == 400 and "limit" in body["error"], (bad, status, body)
    finally:
        for d in devices:
            w.call(d.stop())
