"""A small JSON HTTP client for commands that talk to a running `tinymlaas serve`."""

import json
import os
import urllib.error
import urllib.request

from ..cli import UserError

DEFAULT_API = os.environ.get("TINYMLAAS_API", "http://127.0.0.1:8080")


def add_api_argument(parser):
    parser.add_argument("--server", dest="api", default=DEFAULT_API,
                        help="HTTP API of a running `tinymlaas serve` (default $TINYMLAAS_API or %(default)s)")


def call(api, method, path, body=None, timeout=30):
    """-> (status, decoded JSON). Raises UserError when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(api.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, {"error": e.reason}
    except (urllib.error.URLError, OSError) as e:
        raise UserError("no tinymlaas service answers at %s (%s); start one with `tinymlaas serve`"
                        % (api, getattr(e, "reason", e))) from None
