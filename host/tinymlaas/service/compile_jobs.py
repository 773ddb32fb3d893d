"""Compile jobs: registering an uploaded model (`POST /api/models`, `tinymlaas models add --server`) and compiling
its variants, as a job with a row of its own that every node of a group sees.

    queued ─► running ─► done | failed          (attempts counts the runs: a retried job was interrupted)

In a node group (docs/nodes.md) the job is a procrastinate task on queue "compile" (tasks.RolloutQueue): any
node's worker takes it, and a SIGKILLed node's job is retried by a live node (heartbeats), so a compile runs at
least once. A run that finds the model registered already (its first attempt died after the registry's writes)
ends "done" with it; the registry refuses a second model of the same name and version, so a retry never makes
two. On a single service the job runs in a worker thread of the process that got the upload, and a service that
starts with unfinished jobs (it was stopped or killed) runs them again.
The uploaded files stay in DATA/uploads/<folder> (the shared data directory) until the job ends.
"""

import json
import shutil
import time
from pathlib import Path

from ..db import migration
from ..registry import RegistryError

migration("compile_jobs", 1,
          """CREATE TABLE compile_jobs (
              id INTEGER PRIMARY KEY,
              name TEXT NOT NULL,
              version TEXT NOT NULL,
              state TEXT NOT NULL,
              request TEXT NOT NULL,
              node TEXT,
              attempts INTEGER NOT NULL DEFAULT 0,
              model_id INTEGER,
              result TEXT,
              error TEXT,
              created_at REAL NOT NULL,
              started_at REAL,
              finished_at REAL)""")

FINAL = ("done", "failed")


class CompileJobs:
    def __init__(self, db, catalog):
        self.db = db
        self.catalog = catalog
        self.registry = catalog.registry

    def create(self, name, version, folder, files, builds=None, **meta):
        """A queued job for the upload in `folder` ({role: path} files, "model" among them). RegistryError when
        the model exists already (nothing is queued)."""
        if self.registry.exists(name, version):
            raise RegistryError("model %s version %s already exists" % (name, version))
        request = {"folder": str(folder), "files": {k: str(v) for k, v in files.items()}, "builds": builds,
                   "meta": meta}
        return self.db.query_one("INSERT INTO compile_jobs (name, version, state, request, created_at) "
                                 "VALUES (?, ?, 'queued', ?, ?) RETURNING id",
                                 (name, version, json.dumps(request), time.time()))["id"]

    def run(self, job_id, node=None, progress=None):
        """Run the job (blocking: the caller's worker thread). -> its view; a final job is left as it is."""
        job = self._row(job_id)
        if job is None or job["state"] in FINAL:
            return self.view(job)
        self.db.execute("UPDATE compile_jobs SET state='running', node=?, attempts=attempts+1, started_at=? "
                        "WHERE id=?", (node, time.time(), job_id))
        request = json.loads(job["request"])
        files = dict(request["files"])
        model_file = files.pop("model")
        try:
            if job["attempts"] and self.registry.exists(job["name"], job["version"]):
                model = self.registry.model(job["name"], job["version"])
                self._end(job_id, "done", model, {})    # an earlier attempt registered it, then died
            else:
                model, errors = self.catalog.add(model_file, job["name"], job["version"], builds=request["builds"],
                                                 datasets=files, progress=progress, **request["meta"])
                self._end(job_id, "done", model, errors)
        except RegistryError as e:
            self._end(job_id, "failed", None, {}, str(e))
        except Exception as e:          # a back-end's bug: the job says so instead of being retried forever
            self._end(job_id, "failed", None, {}, "compile failed: %r" % (e,))
        shutil.rmtree(request["folder"], ignore_errors=True)
        return self.get(job_id)

    def _end(self, job_id, state, model, errors, error=None):
        result = {"variants": len(self.registry.variants(model)) if model else 0,
                  "errors": {"%s/%s" % k: v for k, v in errors.items()}}
        self.db.execute("UPDATE compile_jobs SET state=?, model_id=?, result=?, error=?, finished_at=? WHERE id=?",
                        (state, model["id"] if model else None, json.dumps(result), error, time.time(), job_id))

    def _row(self, job_id):
        return self.db.query_one("SELECT * FROM compile_jobs WHERE id=?", (job_id,))

    def get(self, job_id):
        return self.view(self._row(job_id))

    def unfinished(self):
        """Ids of the jobs not done or failed, oldest first."""
        return [r["id"] for r in self.db.query("SELECT id FROM compile_jobs WHERE state IN ('queued', 'running') "
                                               "ORDER BY id")]

    def list(self, limit=100):
        return [self.view(r) for r in self.db.query("SELECT * FROM compile_jobs ORDER BY id DESC LIMIT ?",
                                                    (limit,))]

    @staticmethod
    def view(row):
        if row is None:
            return None
        out = {k: row[k] for k in ("id", "name", "version", "state", "node", "attempts", "model_id", "error",
                                   "created_at", "started_at", "finished_at")}
        out.update(json.loads(row["result"]) if row["result"] else {})
        out["upload"] = Path(json.loads(row["request"])["folder"]).name
        return out
