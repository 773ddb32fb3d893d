"""The service's web layer: the JSON API (and the console's pages) on aiohttp, in the LwM2M server's loop.

    api = build_api(svc.server, svc, auth=True)     # svc None: the device routes only
    await api.start("127.0.0.1", 0)

app.py has the Api (routing, roles, middlewares), tokens.py the tokens and sessions, audit.py the audit log.
Importing this package costs nothing: the CLI reads tokens.py without loading aiohttp.
"""


def build_api(server, svc=None, *, auth=False, secure_cookies=False):
    from .access import access_routes
    from .app import Api
    from .devices import device_routes
    from .lwm2m import lwm2m_routes
    from .openapi import openapi_routes

    api = Api(server.store.db, auth=auth, secure_cookies=secure_cookies)
    openapi_routes(api)
    access_routes(api)
    device_routes(api, server)
    lwm2m_routes(api, server)
    if svc is not None:
        from ..service.http_routes import service_routes
        from .uploads import upload_routes

        from .learning import learning_routes

        service_routes(api, svc)
        upload_routes(api, svc)
        learning_routes(api, svc)      # on-device learning: /api/devices/{ep}/learn... (web/learning.py)
        from ..console import console_routes

        console_routes(api, svc)       # the console's pages at / and /console/ (console/__init__.py)
        if svc.queue is not None:      # a node of a group: device requests go to the device's node
            from .owner_routing import route_to_owner

            route_to_owner(api, svc)
    return api
