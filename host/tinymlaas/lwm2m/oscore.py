"""OSCORE (RFC 8613) between the LwM2M server and the devices that have keys: the server side of docs/security.md.

One security context per device endpoint, kept by aiocoap's FilesystemSecurityContext in `<dir>/<endpoint>/`
(aiocoap persists the sender sequence number and the replay window there, so a restarted server neither reuses
nonces nor accepts old requests). The device's Sender ID is the server's Recipient ID and the reverse.

Policy: an endpoint that has keys must use them. Its Register/Update/De-register only count when they arrive
OSCORE-protected with its own context (a NoSec Register under its name, or one protected with another device's
keys, is refused with 4.01), and every request the server sends it is protected. Endpoints without keys stay NoSec.

aiocoap's own OscoreSiteWrapper and OSCORE client transport would do this too, but they import EDHOC's `lakers`,
which is not installable here; this module calls aiocoap's security contexts directly (protect/unprotect).
"""

import itertools
import json
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiocoap import Message
from aiocoap import oscore as aoscore
from aiocoap.numbers.codes import Code

log = logging.getLogger("tinymlaas.lwm2m.oscore")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class OscoreKeyError(ValueError):
    pass


@dataclass(frozen=True)
class DeviceKeys:
    """What a device and the server share: the device config's "oscore" object seen from the server."""
    endpoint: str
    master_secret: bytes
    device_id: bytes          # the device's Sender ID (its kid in requests)
    server_id: bytes          # the server's Sender ID
    master_salt: bytes = b""
    id_context: bytes = None

    @classmethod
    def from_json(cls, endpoint, obj):
        """{"master_secret": hex, "master_salt": hex, "device_id": hex, "server_id": hex, "id_context": hex}"""
        def hexval(key, required=True):
            v = obj.get(key)
            if v is None and not required:
                return None
            try:
                return bytes.fromhex(v)
            except (TypeError, ValueError):
                raise OscoreKeyError("%s: %s must be a hex string" % (endpoint, key)) from None

        keys = cls(endpoint, hexval("master_secret"), hexval("device_id"), hexval("server_id"),
                   hexval("master_salt", False) or b"", hexval("id_context", False))
        if not _NAME.match(endpoint):
            raise OscoreKeyError("endpoint %r: use 1-64 letters, digits, '-', '_' or '.'" % endpoint)
        if len(keys.master_secret) < 16:
            raise OscoreKeyError("%s: master_secret must be at least 16 bytes" % endpoint)
        if keys.device_id == keys.server_id or len(keys.device_id) > 7 or len(keys.server_id) > 7:
            raise OscoreKeyError("%s: device_id and server_id must differ and be at most 7 bytes" % endpoint)
        return keys

    @classmethod
    def generate(cls, endpoint, taken_ids=()):
        """Fresh random keys (16-byte secret, 8-byte salt) with the shortest device Sender ID not in taken_ids;
        the server's Sender ID is 00 for every device."""
        ids = (bytes([i]) for i in range(1, 256))
        ids2 = (i.to_bytes(2, "big") for i in range(256, 1 << 16))
        device_id = next(i for i in itertools.chain(ids, ids2) if i not in taken_ids)
        return cls(endpoint, secrets.token_bytes(16), device_id=device_id, server_id=b"\x00",
                   master_salt=secrets.token_bytes(8))

    def to_json(self):
        """The keys-file entry (load_keys reads it back)."""
        obj = {"master_secret": self.master_secret.hex(), "master_salt": self.master_salt.hex(),
               "device_id": self.device_id.hex(), "server_id": self.server_id.hex()}
        if self.id_context is not None:
            obj["id_context"] = self.id_context.hex()
        return obj

    def device_config(self):
        """The device side of the same keys: the "oscore" object of its config (lwm2m_client/tinyml_device.py)."""
        cfg = {"master_secret": self.master_secret.hex(), "master_salt": self.master_salt.hex(),
               "sender_id": self.device_id.hex(), "recipient_id": self.server_id.hex()}
        if self.id_context is not None:
            cfg["id_context"] = self.id_context.hex()
        return cfg


def load_keys(path):
    """A JSON file {endpoint: {...DeviceKeys fields as hex...}} -> [DeviceKeys]."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise OscoreKeyError("cannot read OSCORE keys from %s: %s" % (path, e)) from None
    if not isinstance(data, dict):
        raise OscoreKeyError("%s: expected an object {endpoint: keys}" % path)
    return [DeviceKeys.from_json(ep, obj if isinstance(obj, dict) else {}) for ep, obj in data.items()]


def device_config_for(path, endpoint):
    """The "oscore" object of `endpoint`'s device config, from the server's keys file."""
    mine = [k for k in load_keys(path) if k.endpoint == endpoint]
    if not mine:
        raise OscoreKeyError("%s has no keys for endpoint %s" % (path, endpoint))
    return mine[0].device_config()


class Contexts:
    """The server's OSCORE contexts, by endpoint and by the device's kid."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self._by_endpoint = {}
        self._by_kid = {}
        self.opened = 0  # protected requests from devices that verified (monitoring, tests)
        # contexts of earlier runs (keys from a keys file or handed out by the bootstrap server) stay valid
        if self.directory.is_dir():
            for d in sorted(self.directory.iterdir()):
                settings = d / "settings.json"
                if settings.is_file() and _NAME.match(d.name):
                    kid = bytes.fromhex(json.loads(settings.read_text())["recipient-id_hex"])
                    self._index(d.name, kid, aoscore.FilesystemSecurityContext(str(d)))

    def _index(self, endpoint, kid, ctx):
        for old_kid in [k for k, (ep, _) in self._by_kid.items() if ep == endpoint]:
            del self._by_kid[old_kid]
        self._by_endpoint[endpoint] = ctx
        self._by_kid[kid] = (endpoint, ctx)

    def sender_ids_in_use(self, except_endpoint=None):
        """The devices' Sender IDs, so new keys get one nobody has."""
        return {kid for kid, (ep, _) in self._by_kid.items() if ep != except_endpoint}

    def add(self, keys):
        d = self.directory / keys.endpoint
        d.mkdir(parents=True, exist_ok=True)
        settings = {"sender-id_hex": keys.server_id.hex(), "recipient-id_hex": keys.device_id.hex(),
                    "secret_hex": keys.master_secret.hex(), "salt_hex": keys.master_salt.hex()}
        if keys.id_context is not None:
            settings["id-context_hex"] = keys.id_context.hex()
        path = d / "settings.json"
        if not path.exists() or json.loads(path.read_text()) != settings:
            # new or changed keys: a fresh context (the old sequence numbers belong to the old keys)
            for f in d.iterdir():
                f.unlink()
            path.write_text(json.dumps(settings))
        other = self._by_kid.get(keys.device_id)
        if other is not None and other[0] != keys.endpoint:
            raise OscoreKeyError("device_id %s is already %s's" % (keys.device_id.hex(), other[0]))
        ctx = aoscore.FilesystemSecurityContext(str(d))
        self._index(keys.endpoint, keys.device_id, ctx)
        return ctx

    def for_endpoint(self, endpoint):
        return self._by_endpoint.get(endpoint)

    def unprotect_request(self, request):
        """(endpoint, context, plain request, request id) of a protected request, or an error response to send
        back unprotected (4.01 unknown kid / replay, 4.00 undecryptable, 4.02 malformed option)."""
        try:
            kid = aoscore.verify_start(request).get(aoscore.COSE_KID)
        except aoscore.DecodeError as e:
            return _refusal(Code.BAD_OPTION, "malformed OSCORE option: %s" % e)
        found = self._by_kid.get(kid)
        if found is None:
            return _refusal(Code.UNAUTHORIZED, "unknown kid")
        endpoint, ctx = found
        try:
            plain, request_id = ctx.unprotect(request)
        except aoscore.ReplayError:
            return _refusal(Code.UNAUTHORIZED, "replayed request")
        except (aoscore.ProtectionInvalid, aoscore.DecodeError) as e:
            return _refusal(Code.BAD_REQUEST, "OSCORE: %s" % e)
        plain.remote = request.remote
        self.opened += 1
        return endpoint, ctx, plain, request_id


def _refusal(code, text):
    log.info("OSCORE request refused: %s", text)
    return Message(code=code, payload=text.encode())


def protect_response(ctx, response, request_id):
    protected, _ = ctx.protect(response, request_id)
    return protected


def protect_request(ctx, message):
    """(outer message to send, request id to open its responses with)."""
    protected, request_id = ctx.protect(message)
    protected.remote = message.remote
    return protected, request_id


def unprotect_response(ctx, response, request_id):
    """The plain response, or a Message carrying the reason when the device answered unprotected (its OSCORE
    layer refused our request) or the response does not verify."""
    if response.opt.oscore is None:
        return response  # an unprotected error from the device: its code and text say why
    try:
        plain, _ = ctx.unprotect(response, request_id)
    except (aoscore.ProtectionInvalid, aoscore.DecodeError, aoscore.ReplayError) as e:
        return Message(code=Code.BAD_GATEWAY, payload=("response failed OSCORE verification: %s" % e).encode())
    return plain
