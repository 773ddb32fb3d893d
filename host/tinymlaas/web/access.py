"""Routes that manage access to the API itself:

    POST   /api/session        {"token": T} -> a console session: HttpOnly SameSite=Strict cookie + CSRF token
    GET    /api/session        who is calling: token id, name, role, how (bearer/session/local), CSRF token
    DELETE /api/session        sign out: the session is closed on the server and the cookie cleared
    GET    /api/tokens         API tokens (never their secrets)                                  admin
    POST   /api/tokens         {"role": R, "name": N} -> the new token, shown this once           admin
    DELETE /api/tokens/{id}    revoke a token (and close its sessions)                           admin
    GET    /api/audit          the audit log, newest first (?limit=N&before=ID)                  admin
"""

from ..errors import UserError
from .app import IDENTITY, HttpError, dumps, json_body, reply


def _whoami(api, identity):
    return {"auth": api.auth, "token_id": identity.token_id, "name": identity.name, "role": identity.role,
            "via": identity.via, "csrf": identity.csrf}


def access_routes(api):
    async def sign_in(request):
        if not api.auth:
            raise HttpError(400, "authentication is off (loopback service): no sign-in needed")
        body = await json_body(request)
        if not isinstance(body.get("token"), str):
            raise HttpError(400, "'token' (an API token) is required")
        identity = api.check_token(request, body["token"])
        if identity is None:
            raise HttpError(401, "that token is not valid (revoked, mistyped or from another service)")
        request[IDENTITY] = identity          # audited as this token's sign-in
        response = reply({})
        csrf = api.open_session(response, identity)
        response.text = dumps(dict(_whoami(api, identity), via="session", csrf=csrf))
        return response

    async def whoami(request):
        return reply(_whoami(api, request[IDENTITY]))

    async def sign_out(request):
        identity = request[IDENTITY]
        if identity.via != "session":
            raise HttpError(400, "not a console session (a bearer token is revoked with DELETE /api/tokens/ID)")
        response = reply({"signed_out": True})
        api.close_session(response, identity)
        return response

    async def list_tokens(request):
        return reply(api.tokens.list())

    async def new_token(request):
        body = await json_body(request)
        if not isinstance(body.get("name", ""), str):
            raise HttpError(400, "'name' must be a string")
        try:
            row, token = api.tokens.create(body.get("role"), body.get("name", ""), created_by=request[IDENTITY].actor)
        except UserError as e:
            raise HttpError(400, str(e)) from None
        return reply(dict(row, token=token), 201)

    async def revoke_token(request):
        try:
            return reply(api.tokens.revoke(request.match_info["id"]))
        except UserError as e:
            raise HttpError(404, str(e)) from None

    async def audit(request):
        try:
            limit = int(request.query.get("limit", 100))
            before = int(request.query["before"]) if "before" in request.query else None
        except ValueError:
            raise HttpError(400, "limit and before must be integers") from None
        return reply(api.audit.entries(limit, before))

    api.route("POST", "/api/session", sign_in, None)
    api.route("GET", "/api/session", whoami, "viewer")
    api.route("DELETE", "/api/session", sign_out, "viewer")
    api.route("GET", "/api/tokens", list_tokens, "admin")
    api.route("POST", "/api/tokens", new_token, "admin")
    api.route("DELETE", "/api/tokens/{id}", revoke_token, "admin")
    api.route("GET", "/api/audit", audit, "admin")
    return api
