"""POST /api/models: `tinymlaas models add --server URL` from another machine (admin).

A multipart/form-data body: the file `model` (a .tflite, .keras, .onnx or pickled scikit-learn model), the optional
files `representative` (.npy), `train` and `eval` (.npz), and the fields `name`, `version`, `task`, `labels`,
`accuracy`, `no_compile`. Files are streamed to a fresh directory under DATA/uploads (never into memory), at
most MAX_UPLOAD bytes in all (413 beyond, nothing kept), then registered by the same Catalog.add as a local
`models add` in a compile job (service/compile_jobs.py): in a node group a procrastinate task any node runs, on a
single service a worker thread, so the LwM2M server keeps answering while the variants compile. The answer, once
the job is over, is what `models add --json` prints plus the job; with `?wait=0` it is 202 and the queued job at
once, to follow at GET /api/compile-jobs/{id}.

    GET /api/compile-jobs        the latest 100 jobs, newest first (state, node, attempts, model id, errors)
    GET /api/compile-jobs/{id}   one
"""

import asyncio
import re
import shutil
import tempfile
from pathlib import Path

from aiohttp.http_exceptions import HttpProcessingError

from ..registry import RegistryError
from ..service.compile_jobs import FINAL, CompileJobs
from .app import HttpError, reply

MAX_UPLOAD = 512 << 20
CHUNK = 1 << 16
FILES = {"model": None, "representative": ".npy", "train": ".npz", "eval": ".npz"}
FIELDS = ("name", "version", "task", "labels", "accuracy", "no_compile")
MAX_FIELD = 4096
UPLOAD_TIME = 1800      # seconds to receive the whole body (512 MiB at ~300 KB/s)
JOB_POLL = 0.2          # seconds between looks at a job another node may be running


def _suffix(filename):
    """The file name's extension, which tells a .keras archive from a pickle (catalog.model_kind)."""
    m = re.search(r"(\.[A-Za-z0-9]{1,10})$", filename or "")
    return m.group(1).lower() if m else ""


async def _receive(request, folder):
    """-> (fields, {role: path}) with the files written under `folder`; HttpError on anything out of bounds."""
    if (request.content_length or 0) > MAX_UPLOAD:
        raise HttpError(413, "upload larger than %d bytes" % MAX_UPLOAD)
    if not request.content_type.startswith("multipart/form-data"):
        raise HttpError(400, "send the model as multipart/form-data (`tinymlaas models add --server`)")
    try:
        async with asyncio.timeout(UPLOAD_TIME):     # a client trickling bytes does not hold a slot forever
            return await _parts(await request.multipart(), folder)
    except TimeoutError:
        raise HttpError(408, "upload not received within %d s" % UPLOAD_TIME) from None
    except (AssertionError, ValueError, HttpProcessingError) as e:    # what aiohttp's reader raises
        raise HttpError(400, "malformed multipart body: %s" % (getattr(e, "message", None) or e)) from None


async def _parts(reader, folder):
    fields, files, total = {}, {}, 0
    while True:
        part = await reader.next()
        if part is None:
            break
        name = part.name
        if name in FILES and part.filename is not None:
            if name in files:
                raise HttpError(400, "file %r given twice" % name)
            target = folder / (name + (FILES[name] or _suffix(part.filename)))
            with open(target, "wb") as out:
                while chunk := await part.read_chunk(CHUNK):
                    total += len(chunk)
                    if total > MAX_UPLOAD:
                        raise HttpError(413, "upload larger than %d bytes" % MAX_UPLOAD)
                    out.write(chunk)
            files[name] = target
        elif name in FIELDS:
            value = await part.read(decode=True)
            if len(value) > MAX_FIELD:
                raise HttpError(400, "field %r longer than %d bytes" % (name, MAX_FIELD))
            fields[name] = value.decode("utf-8")        # UnicodeDecodeError is a ValueError: 400
        else:
            raise HttpError(400, "unexpected part %r (files: %s; fields: %s)" % (name, ", ".join(FILES),
                                                                                 ", ".join(FIELDS)))
    if "model" not in files or not fields.get("name"):
        raise HttpError(400, "the file 'model' and the field 'name' are required")
    return fields, files


def upload_routes(api, svc):
    uploads = svc.data_dir / "uploads"
    jobs = CompileJobs(svc.db, svc.catalog)
    running = set()         # this process's compile threads (no queue): kept until they end

    def run_here(job_id):
        task = asyncio.create_task(asyncio.to_thread(jobs.run, job_id, svc.node))
        running.add(task)
        task.add_done_callback(running.discard)

    async def resume(app):
        """A single service that stopped (or died) with compile jobs unfinished runs them again at its start; in a
        node group the queue does (a stalled job is retried by a live node)."""
        if svc.queue is None:
            for job_id in jobs.unfinished():
                run_here(job_id)

    async def add_model(request):
        uploads.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=uploads))
        job_id = None
        try:
            fields, files = await _receive(request, folder)
            try:
                accuracy = float(fields["accuracy"]) if fields.get("accuracy") else None
            except ValueError:
                raise HttpError(400, "accuracy must be a number") from None
            labels = [l for l in fields.get("labels", "").split(",") if l]
            no_compile = fields.get("no_compile", "").lower() in ("1", "true", "yes")
            try:
                job_id = jobs.create(fields["name"], fields.get("version") or "1", folder, files,
                                     builds=[] if no_compile else None, task=fields.get("task", ""), labels=labels,
                                     accuracy=accuracy)
            except RegistryError as e:
                raise HttpError(400, str(e)) from None
        finally:
            if job_id is None:
                shutil.rmtree(folder, ignore_errors=True)
        # from here the job owns the folder (the catalog copies what it keeps; the job removes the rest)
        if svc.queue is not None:
            await svc.queue.defer_compile(job_id)
        else:
            run_here(job_id)
        if request.query.get("wait") == "0":
            return reply({"job": jobs.get(job_id)}, 202)
        while (job := jobs.get(job_id))["state"] not in FINAL:
            await asyncio.sleep(JOB_POLL)
        if job["state"] == "failed":
            raise HttpError(400, job["error"])
        model = svc.registry.model(job["model_id"])
        return reply({"model": model, "variants": svc.registry.variants(model), "errors": job["errors"],
                      "job": job}, 201)

    async def list_jobs(request):
        return reply(jobs.list())

    async def one_job(request):
        try:
            job = jobs.get(int(request.match_info["id"]))
        except ValueError:
            job = None
        if job is None:
            raise HttpError(404, "no compile job %s" % request.match_info["id"])
        return reply(job)

    api.app.on_startup.append(resume)
    api.route("POST", "/api/models", add_model, "admin", stream=True)
    api.route("GET", "/api/compile-jobs", list_jobs, "viewer")
    api.route("GET", "/api/compile-jobs/{id}", one_job, "viewer")
    return api
