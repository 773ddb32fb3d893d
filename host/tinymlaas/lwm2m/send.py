"""LwM2M 1.1 Send (Core TS §6.4.1, the Information Reporting interface): a registered device POSTs resource
values to `/dp` unasked, as SenML-CBOR (Content-Format 112) or SenML-JSON (110) with full paths as names. The
tinymlaas devices send one when an anomaly model's score crosses its threshold (docs/tinyml-object.md 33-36).

Who sent it is decided as for every other device request: under OSCORE the context it opened with names the
endpoint; without, the source address must be a registered device's (and that device must have no OSCORE keys).
A report is answered 2.04 only once it is committed (the database's writer thread), so a device that saw 2.04
knows the server has it; anything refused (4.00 malformed, 4.01 unknown sender, 4.15 format) stores nothing and
changes nothing, and the device's counters (Alarm Count /32770/0/35) travel again with its next report.

Pure checks here (`check`), the CoAP answer in coap_site.py, the rows in table `device_reports`.
"""

import json
import time

from ..db import migration
from . import codecs as C
from . import paths as P

migration(
    "reports",
    1,
    """CREATE TABLE device_reports (
        id INTEGER PRIMARY KEY,
        endpoint TEXT NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL)""",
    "CREATE INDEX device_reports_endpoint ON device_reports(endpoint, at)",
)

FORMATS = (C.SENML_CBOR, C.SENML_JSON)
MAX_PAYLOAD = 1024     # one datagram: a Send that needs Block1 is refused with 4.13
ALARM_COUNT = (32770, 0, 35)
# what an anomaly alarm's Send carries (lwm2m_client/lwm2m/anomaly.py), by the names the API shows
ALARM_FIELDS = {(32770, 0, 11): "model", (32770, 0, 17): "inference_count", (32770, 0, 33): "threshold",
                (32770, 0, 34): "score", (32770, 0, 35): "alarm_count"}


class Refused(Exception):
    """A Send the server does not take: `code` is "4.00", "4.01", "4.13" or "4.15", `reason` says why."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def check(content_format, payload, model, objects):
    """-> {path tuple: value} of a Send's payload, typed by the object model; Refused when the device may not
    send it: another format, too large, not SenML, no value, or a path outside the object instances the device
    registered (`objects`, e.g. ["/3/0", "/32770/0"])."""
    if content_format not in FORMATS:
        raise Refused("4.15", "a Send carries SenML-CBOR (112) or SenML-JSON (110), not Content-Format %s"
                      % content_format)
    if len(payload) > MAX_PAYLOAD:
        raise Refused("4.13", "a Send must fit one datagram (%d bytes)" % MAX_PAYLOAD)
    try:
        values = C.decode(content_format, (), payload, model)
    except C.CodecError as e:
        raise Refused("4.00", "malformed Send: %s" % e) from None
    if not values:
        raise Refused("4.00", "malformed Send: no values")
    registered = set()
    for link in objects or ():
        try:
            registered.add(P.parse(link)[:2])
        except (P.PathError, TypeError):
            continue
    for path in values:
        if path[:2] not in registered and path[:1] not in registered:
            raise Refused("4.00", "malformed Send: %s is not in an object instance the device registered"
                          % P.fmt(path))
    return values


def sender(server, address):
    """The registration a NoSec Send from `address` ("host:port") comes from, or None. In a node group the device
    may have registered through another node (docs/nodes.md: a reuse-port group re-hashed after a node left or
    joined, or a restarted node): its address is then in the shared `devices` table, not in this node's memory."""
    reg = next((r for r in server.devices() if r.address == address), None)
    if reg is None and server.shared:
        row = server.store.db.query_one("SELECT endpoint FROM devices WHERE address=? ORDER BY updated_at DESC "
                                        "LIMIT 1", (address,))
        reg = row and server.find(row["endpoint"])
        if reg is not None and reg.address != address:     # this node's copy is older than the table's
            full = server.store.device(endpoint=reg.endpoint)
            reg = server._adopt(full) if full and full["address"] == address else None
    return reg


def _json_value(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)


class Reports:
    """The stored Sends of every device (newest first on reading)."""

    def __init__(self, db):
        self.db = db

    async def save(self, endpoint, values):
        """Commit one report; -> the row as the API shows it."""
        kind = "alarm" if ALARM_COUNT in values else "report"
        data = {P.fmt(p): _json_value(v) for p, v in sorted(values.items())}
        at = time.time()
        text = json.dumps(data)
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO device_reports (endpoint, at, kind, data) VALUES (?, ?, ?, ?)", (endpoint, at, kind, text)))
        return self._view({"endpoint": endpoint, "at": at, "kind": kind, "data": text})

    def recent(self, endpoint, limit=20, kind=None):
        sql = "SELECT endpoint, at, kind, data FROM device_reports WHERE endpoint=?"
        args = [endpoint]
        if kind:
            sql += " AND kind=?"
            args.append(kind)
        rows = self.db.query(sql + " ORDER BY at DESC, id DESC LIMIT ?", tuple(args + [int(limit)]))
        return [self._view(r) for r in rows]

    def count(self, endpoint, kind="alarm"):
        row = self.db.query_one("SELECT COUNT(*) AS n FROM device_reports WHERE endpoint=? AND kind=?",
                                (endpoint, kind))
        return int(row["n"]) if row else 0

    @staticmethod
    def _view(row):
        data = json.loads(row["data"])
        out = {"endpoint": row["endpoint"], "at": row["at"],
               "at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["at"])), "kind": row["kind"],
               "values": data}
        for path, name in ALARM_FIELDS.items():
            if P.fmt(path) in data:
                out[name] = data[P.fmt(path)]
        return out
