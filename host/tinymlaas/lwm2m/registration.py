"""The LwM2M Registration interface's request checking (LwM2M 1.1 TS Core §6.2, Transport §6.4.1).

Pure functions over the decoded CoAP parts (query strings, content format, payload) so every rule is testable
without sockets. A request that breaks a rule raises `Rejected(code, reason)`; the server answers with that
code and keeps no state. Accepted values are returned as plain data; the server builds the `Registration`.
"""

import re
from dataclasses import dataclass, field

from . import paths as P
from .codecs import CodecError, linkformat

BAD_REQUEST = "4.00"
NOT_FOUND = "4.04"
PRECONDITION_FAILED = "4.12"  # LwM2M: unsupported lwm2m version
UNSUPPORTED_FORMAT = "4.15"

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
DEFAULT_LIFETIME = 86400
MAX_LIFETIME = 0xFFFFFFFF
MAX_ENDPOINT = 255
MAX_LINKS = 512
_BINDING_RE = re.compile(r"(?!.*(.).*\1)[UQSTN]{1,5}\Z")  # letters from the 1.1 set, none repeated


class Rejected(Exception):
    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Registration:
    endpoint: str
    id: str
    address: str  # "host:port" the device registered from (requests go back to it)
    lifetime: int
    lwm2m_version: str
    binding: str
    objects: list  # object / instance links as path strings, e.g. ["/1/0", "/3/0", "/5/0"]
    registered_at: float
    updated_at: float
    root_path: str = "/"
    content_formats: list = field(default_factory=list)  # the root link's ct=, in the device's order
    object_versions: dict = field(default_factory=dict)  # object id -> "1.1" when the link says ver=
    capabilities: dict = None
    remote: object = None  # aiocoap remote of the last Register/Update; not persisted

    def expires_at(self):
        return self.updated_at + self.lifetime

    def has_object(self, oid):
        return any(P.parse(p)[0] == oid for p in self.objects)


def parse_query(queries):
    """Uri-Query options -> {key: value}. Repeated keys and empty keys are rejected."""
    out = {}
    for q in queries:
        key, sep, value = q.partition("=")
        if not key:
            raise Rejected(BAD_REQUEST, "empty query parameter")
        if key in out:
            raise Rejected(BAD_REQUEST, "query parameter %r repeated" % key)
        out[key] = value if sep else None
    return out


def _lifetime(value):
    if value is None or not value.isdigit() or not value.isascii():
        raise Rejected(BAD_REQUEST, "lt must be a positive integer")
    lt = int(value)
    if not 1 <= lt <= MAX_LIFETIME:
        raise Rejected(BAD_REQUEST, "lt %d out of range 1..%d" % (lt, MAX_LIFETIME))
    return lt


def _binding(value):
    if value is None or not _BINDING_RE.match(value):
        raise Rejected(BAD_REQUEST, "b must be binding letters from U, Q, S, T, N")
    if "U" not in value:
        raise Rejected(BAD_REQUEST, "this server only speaks CoAP over UDP: binding %r lacks U" % value)
    return value


def _content_formats(value):
    """The root link's ct= (RFC 7252 §7.2.1: one number, or several in quotes separated by spaces)."""
    formats = (value or "").split(" ")
    if not all(f.isdigit() and f.isascii() and int(f) <= 0xFFFF for f in formats):
        raise Rejected(BAD_REQUEST, "ct of the root link must be Content-Format numbers, got %r" % value)
    return [int(f) for f in formats]


def parse_object_links(content_format, payload):
    """Register/Update payload -> (root path, [object or instance path strings], {oid: version}, [ct of the
    root link]: the content formats the device says it supports, LwM2M 1.1 §6.2.1)."""
    if content_format not in (None, 40):
        raise Rejected(UNSUPPORTED_FORMAT, "registration payload must be link-format (40), got %s" % content_format)
    try:
        links = linkformat.decode(payload)
    except CodecError as e:
        raise Rejected(BAD_REQUEST, "object links: %s" % e) from None
    if len(links) > MAX_LINKS:
        raise Rejected(BAD_REQUEST, "more than %d object links" % MAX_LINKS)
    root, formats = "/", []
    for link in links:
        if link.params.get("rt") == "oma.lwm2m":
            root = link.uri if link.uri.endswith("/") else link.uri + "/"
            if "ct" in link.params:
                formats = _content_formats(link.params["ct"])
    objects, versions = [], {}
    for link in links:
        if link.params.get("rt") == "oma.lwm2m":
            continue
        uri = link.uri
        if root != "/":
            if not uri.startswith(root):
                raise Rejected(BAD_REQUEST, "link %s is outside the alternate path %s" % (uri, root))
            uri = "/" + uri[len(root):]
        try:
            path = P.parse(uri)
        except P.PathError as e:
            raise Rejected(BAD_REQUEST, "object link: %s" % e) from None
        if len(path) not in (1, 2):
            raise Rejected(BAD_REQUEST, "object link %s must name an object or an object instance" % link.uri)
        if "ver" in link.params:
            if len(path) != 1 or not re.match(r"[0-9]{1,3}\.[0-9]{1,3}\Z", link.params["ver"] or ""):
                raise Rejected(BAD_REQUEST, "bad ver attribute on %s" % link.uri)
            versions[path[0]] = link.params["ver"]
        p = P.fmt(path)
        if p not in objects:
            objects.append(p)
    return root, objects, versions, formats


def check_register(queries, content_format, payload):
    """Register (POST /rd?ep=..): returns the accepted fields as a dict."""
    q = parse_query(queries)
    ep = q.get("ep")
    if not ep:
        raise Rejected(BAD_REQUEST, "ep (endpoint name) is required")
    if len(ep.encode("utf-8")) > MAX_ENDPOINT or not ep.isprintable():
        raise Rejected(BAD_REQUEST, "endpoint name must be 1..%d printable characters" % MAX_ENDPOINT)
    version = q.get("lwm2m", "1.0")
    if version not in SUPPORTED_VERSIONS:
        raise Rejected(PRECONDITION_FAILED, "unsupported LwM2M version %r" % version)
    lifetime = _lifetime(q["lt"]) if "lt" in q else DEFAULT_LIFETIME
    binding = _binding(q["b"]) if "b" in q else "U"
    if "Q" in q and q["Q"] is not None:
        raise Rejected(BAD_REQUEST, "Q takes no value")
    if "Q" in q and "Q" not in binding:
        binding += "Q"
    root, objects, versions, formats = parse_object_links(content_format, payload)
    if not objects:
        raise Rejected(BAD_REQUEST, "registration must list at least one object")
    return dict(endpoint=ep, lwm2m_version=version, lifetime=lifetime, binding=binding, root_path=root,
                objects=objects, object_versions=versions, content_formats=formats)


def check_update(queries, content_format, payload, registered_version):
    """Update (POST /rd/<id>): only the fields present change; returns them as a dict. Some clients (e.g.
    lwm2m-node-lib) repeat lwm2m= in Updates; that is accepted when it names the registered version."""
    q = parse_query(queries)
    if "ep" in q:
        raise Rejected(BAD_REQUEST, "ep cannot change in an Update")
    if "lwm2m" in q and q["lwm2m"] != registered_version:
        raise Rejected(BAD_REQUEST, "lwm2m version cannot change in an Update")
    out = {}
    if "lt" in q:
        out["lifetime"] = _lifetime(q["lt"])
    if "b" in q:
        out["binding"] = _binding(q["b"])
    if payload:
        root, objects, versions, formats = parse_object_links(content_format, payload)
        out.update(root_path=root, objects=objects, object_versions=versions, content_formats=formats)
    return out
