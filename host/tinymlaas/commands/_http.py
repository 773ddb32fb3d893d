"""The CLI's client for a running `tinymlaas serve`, local or remote.

Which service: `--server URL`, else $TINYMLAAS_API, else the config file's "server", else http://127.0.0.1:8080.
Which token: $TINYMLAAS_TOKEN, else the config file's "token" — the file's token is sent only to the file's
server, so pointing --server elsewhere never leaks it. The config file is ~/.config/tinymlaas/config.json
(or $TINYMLAAS_CONFIG), `{"server": URL, "token": TOKEN}`, and must not be readable by others (mode 0600).
"""

import json
import os
import secrets
import stat
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import UserError

LOCAL_API = "http://127.0.0.1:8080"


def config_path():
    return Path(os.environ.get("TINYMLAAS_CONFIG") or Path.home() / ".config" / "tinymlaas" / "config.json")


def load_config():
    path = config_path()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError("%s holds an API token but others may read it: chmod 600 %s" % (path, path))
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError("cannot read %s: %s" % (path, e)) from None
    if not isinstance(config, dict):
        raise UserError("%s must hold a JSON object {\"server\": URL, \"token\": TOKEN}" % path)
    return config


def add_api_argument(parser, local_alternative=None):
    """--server. `local_alternative` (e.g. "the local data directory") for commands that work without a
    service: then they use the service only when --server is given."""
    if local_alternative:
        help = "run against the `tinymlaas serve` at this URL (token from $TINYMLAAS_TOKEN or the config " \
               "file) instead of %s" % local_alternative
    else:
        help = "URL of a running `tinymlaas serve` (default $TINYMLAAS_API, the config file's server, or %s)" \
               % LOCAL_API
    parser.add_argument("--server", dest="api", default=None, metavar="URL", help=help)


def resolve(api):
    """(base URL, token or None) for --server `api` (None: the default service)."""
    config = load_config()
    base = api or os.environ.get("TINYMLAAS_API") or config.get("server") or LOCAL_API
    base = base.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UserError("--server must be an http:// or https:// URL, got %r" % base)
    token = os.environ.get("TINYMLAAS_TOKEN")
    if not token and str(config.get("server", "")).rstrip("/") == base:
        token = config.get("token")
    return base, token


def request(api, method, path, data=None, content_type="application/json", timeout=30, length=None):
    """-> (status, decoded JSON). `data` bytes (or an iterable of them, `length` bytes in all) sent as is.
    UserError when nothing answers."""
    base, token = resolve(api)
    headers = {"Content-Type": content_type} if data is not None else {}
    if length is not None:
        headers["Content-Length"] = str(length)
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            answer = json.loads(e.read() or b"null")
        except ValueError:
            answer = {"error": e.reason}
        if e.code == 401:
            raise UserError("%s refused the request: %s%s" % (base, (answer or {}).get("error", e.reason),
                            "" if token else " (set $TINYMLAAS_TOKEN or the token in %s)" % config_path())) from None
        if e.code == 429:
            raise UserError("%s: %s" % (base, (answer or {}).get("error", e.reason))) from None
        return e.code, answer
    except (urllib.error.URLError, OSError) as e:
        raise UserError("cannot reach %s%s (is `tinymlaas serve` running?): %s"
                        % (base, path, getattr(e, "reason", e))) from None
    except ValueError:
        raise UserError("%s%s did not answer JSON" % (base, path)) from None


def call(api, method, path, body=None, timeout=30):
    """A JSON request: -> (status, decoded JSON)."""
    return request(api, method, path, json.dumps(body).encode() if body is not None else None, timeout=timeout)


def expect(status, answer, *ok):
    """`answer` when `status` is one of `ok`, else UserError with the service's error."""
    if status not in ok:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise UserError(error or "service answered HTTP %d" % status)
    return answer


def upload(api, path, fields, files, timeout=3600):
    """POST multipart/form-data: `fields` {name: text}, `files` {name: local path}, streamed from disk (the
    length is computed first, so nothing is held in memory). -> (status, decoded JSON)."""
    boundary = "tinymlaas-" + secrets.token_hex(12)
    pieces = []         # bytes, or a Path to stream
    for name, value in fields.items():
        pieces.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                       % (boundary, name, value)).encode())
    for name, file in files.items():
        file = Path(file)
        if not file.is_file():
            raise UserError("cannot upload %s: not a file" % file)
        filename = file.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        pieces.append(('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
                       'Content-Type: application/octet-stream\r\n\r\n' % (boundary, name, filename)).encode())
        pieces.append(file)
        pieces.append(b"\r\n")
    pieces.append(("--%s--\r\n" % boundary).encode())
    length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in pieces)

    def body():
        for p in pieces:
            if isinstance(p, Path):
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 16):
                        yield chunk
            else:
                yield p

    return request(api, "POST", path, body(), "multipart/form-data; boundary=" + boundary, timeout=timeout,
                   length=length)
