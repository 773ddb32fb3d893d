"""Telemetry: time series of what devices report, kept for a retention period, exported as CSV; and what each
device says about itself in its Device object (/3/0), read once per registration.

A sample is taken every time the service reads a device's TinyML object (at registration, on an Update that
changes its objects, on a refresh, after every install): free heap, largest free block, flash free, inference
count and last latency (docs/tinyml-object.md resources 0, 1, 3, 17, 18). Inference results are kept only
when the user asks (`keep_result`). Rows older than the retention period are deleted as new ones arrive.
"""

import csv
import io
import json
import logging
import time

from ..db import migration

log = logging.getLogger("tinymlaas.service.telemetry")

migration(
    "telemetry",
    1,
    """CREATE TABLE telemetry_samples (
        endpoint TEXT NOT NULL,
        at REAL NOT NULL,
        free_heap INTEGER,
        largest_block INTEGER,
        flash_free INTEGER,
        inference_count INTEGER,
        latency_us INTEGER)""",
    "CREATE INDEX telemetry_samples_endpoint ON telemetry_samples(endpoint, at)",
    "CREATE INDEX telemetry_samples_at ON telemetry_samples(at)",
    """CREATE TABLE telemetry_results (
        id INTEGER PRIMARY KEY,
        endpoint TEXT NOT NULL,
        at REAL NOT NULL,
        model TEXT NOT NULL,
        top_class INTEGER,
        label TEXT,
        scores TEXT NOT NULL,
        latency_us INTEGER)""",
    "CREATE INDEX telemetry_results_endpoint ON telemetry_results(endpoint, at)",
)

migration(
    "telemetry",
    2,
    """CREATE TABLE device_info (
        endpoint TEXT PRIMARY KEY,
        info TEXT NOT NULL,
        at REAL NOT NULL)""",
)

DEVICE_OBJECT = "/3/0"
# series name -> (TinyML object resource name, what it is, unit); the order is the CSV's and the console's
METRICS = {
    "free_heap": ("Free Heap", "free heap", "B"),
    "largest_block": ("Largest Free Block", "largest free block", "B"),
    "flash_free": ("Flash Free", "flash free", "B"),
    "inference_count": ("Inference Count", "inferences since boot", ""),
    "latency_us": ("Last Latency", "last inference latency", "us"),
}
SAMPLE_COLUMNS = ("endpoint", "at") + tuple(METRICS)
RESULT_COLUMNS = ("endpoint", "at", "model", "top_class", "label", "scores", "latency_us")
DEFAULT_RETENTION_DAYS = 30.0
PRUNE_EVERY = 60.0  # seconds between deletions of expired rows


def _cell(value):
    """A CSV cell; text a spreadsheet would run as a formula (=, +, -, @ first: an endpoint name or a label
    chosen by whoever names the device or the model) gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Telemetry:
    def __init__(self, db, retention_days=DEFAULT_RETENTION_DAYS):
        if not retention_days > 0:
            raise ValueError("telemetry retention must be a positive number of days, got %r" % (retention_days,))
        self.db = db
        self.retention_days = float(retention_days)
        self._pruned_at = 0.0

    def attach(self, server, spawn):
        """Take a sample each time `server` reads a device's TinyML object, and read the device's Device object
        (/3/0: manufacturer, model, hardware and software versions) when it registers; `spawn(coro)` runs that
        read in the service's task set."""
        def on_event(event):
            if event.kind == "registered" and event.registration.has_object(3):
                spawn(self._read_device_object(server, event.endpoint))

        # the sample is written in the transaction that stores the capabilities (no commit of its own)
        server.capability_jobs.append(lambda endpoint, caps: self._sample_job(endpoint, caps) if caps else None)
        server.on_event(on_event)

    async def _read_device_object(self, server, endpoint):
        from ..lwm2m.server import LwM2MError, capabilities_from_values

        try:
            values = await server.read(endpoint, DEVICE_OBJECT)
        except LwM2MError as e:
            log.info("reading %s of %s failed: %s", DEVICE_OBJECT, endpoint, e)
            return
        self.record_device_info(endpoint, capabilities_from_values(server.model, values), later=True)

    def _write(self, later, sql, params, what):
        """A write now (own transaction), or queued to the database's writer thread (later=True: for the event
        loop; lost only if the process dies before the writer's next commit, a sample or two)."""
        if later:
            self.db.write_later(lambda tx: tx.execute(sql, params), what)
        else:
            self.db.execute(sql, params)

    def record_device_info(self, endpoint, info, at=None, later=False):
        """What the device says about itself (its Device object, by resource name); the latest is kept."""
        self._write(later, "INSERT INTO device_info (endpoint, info, at) VALUES (?, ?, ?) ON CONFLICT (endpoint) "
                    "DO UPDATE SET info=excluded.info, at=excluded.at",
                    (endpoint, json.dumps(info, default=str), time.time() if at is None else at), "device info")

    def device_info(self, endpoint=None):
        """{endpoint: {resource name: value}} of every device whose Device object was read (or of one)."""
        where, params = (" WHERE endpoint=?", (endpoint,)) if endpoint is not None else ("", ())
        self.db.flush()  # the writer's queued records first
        return {r["endpoint"]: json.loads(r["info"])
                for r in self.db.query("SELECT endpoint, info FROM device_info" + where, params)}

    def record(self, endpoint, capabilities, at=None):
        """One sample from a device's TinyML object values (keyed by resource name, as the server stores them)."""
        with self.db.transaction() as tx:
            self._sample_job(endpoint, capabilities, at)(tx)

    def _sample_job(self, endpoint, capabilities, at=None):
        at = time.time() if at is None else at
        values = [_int_or_none(capabilities.get(resource)) for resource, _, _ in METRICS.values()]
        sql = "INSERT INTO telemetry_samples (%s) VALUES (%s)" % (", ".join(SAMPLE_COLUMNS),
                                                                  ", ".join("?" * len(SAMPLE_COLUMNS)))
        prune = self._prune_due(at)

        def job(tx):
            tx.execute(sql, [endpoint, at] + values)
            for table in prune:
                tx.execute("DELETE FROM %s WHERE at<?" % table, (at - self.retention_days * 86400,))
        return job

    def keep_result(self, endpoint, model, top_class, label, scores, latency_us, at=None):
        """Keep one inference result the user chose to keep; its id."""
        at = time.time() if at is None else at
        row = self.db.query_one(
            "INSERT INTO telemetry_results (endpoint, at, model, top_class, label, scores, latency_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (endpoint, at, model, _int_or_none(top_class), label, json.dumps(list(scores)), _int_or_none(latency_us)))
        self._prune(at)
        return row["id"]

    def samples(self, endpoint, since=None):
        """Samples of one device, oldest first, each {"at": ..., metric: value or None}."""
        self.db.flush()
        return self.db.query("SELECT %s FROM telemetry_samples WHERE endpoint=? AND at>=? ORDER BY at"
                             % ", ".join(SAMPLE_COLUMNS[1:]), (endpoint, since or 0))

    def series(self, endpoint, metric, since=None):
        """[(at, value)] of one metric, samples without it left out."""
        if metric not in METRICS:
            raise ValueError("unknown metric %r (known: %s)" % (metric, ", ".join(METRICS)))
        return [(r["at"], r[metric]) for r in self.samples(endpoint, since) if r[metric] is not None]

    def results(self, endpoint, limit=50):
        rows = self.db.query("SELECT id, %s FROM telemetry_results WHERE endpoint=? ORDER BY at DESC, id DESC LIMIT ?"
                             % ", ".join(RESULT_COLUMNS), (endpoint, limit))
        for r in rows:
            r["scores"] = json.loads(r["scores"])
        return rows

    def csv(self, endpoint=None, kind="samples"):
        """CSV text of the samples (or kept results) of one device or of every device; times in UTC ISO 8601."""
        table, columns = {"samples": ("telemetry_samples", SAMPLE_COLUMNS),
                          "results": ("telemetry_results", RESULT_COLUMNS)}[kind]
        where, params = ("WHERE endpoint=?", (endpoint,)) if endpoint is not None else ("", ())
        self.db.flush()
        rows = self.db.query("SELECT %s FROM %s %s ORDER BY endpoint, at" % (", ".join(columns), table, where), params)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("time_utc",) + columns)
        for r in rows:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["at"]))
            writer.writerow([stamp] + [_cell(r[c]) for c in columns])
        return out.getvalue()

    def _prune_due(self, now):
        """The tables to prune of expired rows now (every PRUNE_EVERY seconds), else ()."""
        if now - self._pruned_at < PRUNE_EVERY:
            return ()
        self._pruned_at = now
        return ("telemetry_samples", "telemetry_results")

    def _prune(self, now):
        for table in self._prune_due(now):
            self.db.execute("DELETE FROM %s WHERE at<?" % table, (now - self.retention_days * 86400,))
