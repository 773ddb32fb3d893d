"""Rollouts and compile jobs as tasks on procrastinate, the PostgreSQL task queue, for a group of service nodes on one database.

Why procrastinate (docs/nodes.md has the measurement): the nodes already share PostgreSQL, so the queue adds no
server; a job is a row taken with SELECT ... FOR UPDATE SKIP LOCKED and announced with LISTEN/NOTIFY, so it starts
within milliseconds on an idle node; and a job whose worker stops sending heartbeats (the node was SIGKILLed) is
found by `get_stalled_jobs` and retried on a live node: at-least-once, which the deployment engine tolerates
because its state is in the database and `DeploymentEngine.run` resumes a deployment from there (a device in
"delivering"/"verifying" is asked what it runs before anything is sent again).

Task kinds:
  run_deployment(dep_id)   queue "rollouts", one job per deployment (lock "deployment-<id>"): any node claims it;
  compile_model(job_id)    queue "compile": an uploaded model registered and compiled (compile_jobs.py) by any node;
  api_call(call_id, ...)   queue "node-<name>": an HTTP API request for a device that node owns (owner_routing.py);
  install_waiting(endpoint) queue "node-<name>": a device the rollout node cannot talk to (its datagrams reach
                           another node: the balancer's session or the SO_REUSEPORT hash) is installed by the node
                           that owns it, without waiting for the device's next Update.
"""

import asyncio
import json
import logging
import time

from ..db import migration
from .compile_jobs import CompileJobs
from .deployments import DeliveryError

log = logging.getLogger("tinymlaas.service.tasks")

# Which nodes are alive (a heartbeat each HEARTBEAT s), and the answers of calls one node asks another to make to
# a device only that node can reach (node_calls: the asking node polls the row).
migration("nodes", 1,
          "CREATE TABLE service_nodes (name TEXT PRIMARY KEY, heartbeat REAL NOT NULL)",
          """CREATE TABLE node_calls (
              id INTEGER PRIMARY KEY,
              node TEXT NOT NULL,
              endpoint TEXT NOT NULL,
              answer TEXT,
              error TEXT,
              at REAL NOT NULL)""")

# A node's worker beats every HEARTBEAT s; a job whose worker has been silent for STALLED s is retried elsewhere.
HEARTBEAT = 1.0
STALLED = 4.0


class RolloutQueue:
    def __init__(self, service, db_url, node):
        import procrastinate

        self.service = service
        self.node = node
        self.db_url = db_url
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=db_url, min_size=1,
                                                                               max_size=3))
        self.run_deployment = self.app.task(name="run_deployment", queue="rollouts", pass_context=False,
                                            retry=procrastinate.RetryStrategy(max_attempts=5, wait=1))(
            self._run_deployment)
        self.install_waiting = self.app.task(name="install_waiting", pass_context=False)(self._install_waiting)
        self.device_call = self.app.task(name="device_call", pass_context=False)(self._device_call)
        self.compile_model = self.app.task(name="compile_model", queue="compile", pass_context=False)(
            self._compile_model)
        self.compiles = CompileJobs(service.db, service.catalog)
        # the API's device requests for a device another node owns (web/owner_routing.py): answered by that node
        self.api_call = self.app.task(name="api_call", pass_context=False)(self._api_call)
        self.api_answer = None      # set by web.owner_routing: runs this node's route handler
        self.direct = None          # the channel that talks to devices itself (set by NodeChannel)
        self._worker = None
        self._reaper = None

    async def start(self):
        await self.app.open_async()
        await self._apply_schema()
        self._worker = asyncio.create_task(self.app.run_worker_async(
            queues=["rollouts", "compile", self.queue_of(self.node)], name=self.node, concurrency=4,
            install_signal_handlers=False, update_heartbeat_interval=HEARTBEAT, stalled_worker_timeout=STALLED,
            fetch_job_polling_interval=1.0))
        self._reaper = asyncio.create_task(self._retry_stalled())

    async def stop(self):
        for t in (self._reaper, self._worker):
            if t:
                t.cancel()
        await asyncio.gather(*(t for t in (self._reaper, self._worker) if t), return_exceptions=True)
        await self.app.close_async()

    async def _apply_schema(self):
        rows = await self.app.connector.execute_query_all_async(
            "SELECT 1 AS present FROM pg_tables WHERE tablename = 'procrastinate_jobs'")
        if not rows:
            # two nodes starting at once: the loser's CREATE fails on an existing type; the winner's schema is there
            try:
                await self.app.schema_manager.apply_schema_async()
            except Exception as e:       # noqa: BLE001  (psycopg's DuplicateObject and friends)
                log.info("procrastinate schema applied by another node (%s)", type(e).__name__)

    @staticmethod
    def queue_of(node):
        return "node-%s" % node

    async def defer_deployment(self, dep_id):
        from procrastinate.exceptions import AlreadyEnqueued

        try:
            return await self.run_deployment.configure(lock="deployment-%d" % dep_id,
                                                       queueing_lock="deployment-%d" % dep_id).defer_async(
                dep_id=dep_id)
        except AlreadyEnqueued:
            return None

    async def defer_install(self, node, endpoint):
        return await self.install_waiting.configure(queue=self.queue_of(node)).defer_async(endpoint=endpoint)

    async def _run_deployment(self, dep_id):
        log.warning("node %s claims deployment %d", self.node, dep_id)   # operators see who runs it
        dep = await self.service.engine.run(dep_id)
        return dep and dep.get("state")

    async def defer_compile(self, job_id):
        return await self.compile_model.defer_async(job_id=job_id)

    async def _compile_model(self, job_id):
        log.warning("node %s compiles job %d", self.node, job_id)
        # in a thread: a compile is seconds of CPU, and this node's LwM2M server goes on answering its devices
        return (await asyncio.to_thread(self.compiles.run, job_id, self.node) or {}).get("state")

    async def _install_waiting(self, endpoint):
        await self.service.engine.registered(endpoint)

    async def _device_call(self, call_id, kind, endpoint, timeout):
        db = self.service.db
        try:
            answer = await getattr(self.direct, kind)(endpoint, timeout=timeout)
            db.execute("UPDATE node_calls SET answer=? WHERE id=?", (json.dumps(answer), call_id))
        except DeliveryError as e:
            db.execute("UPDATE node_calls SET error=? WHERE id=?", (str(e) or type(e).__name__, call_id))

    async def _api_call(self, call_id, method, route, match_info, query, body_hex):
        status, text = await self.api_answer(method, route, match_info, query, bytes.fromhex(body_hex))
        self.service.db.execute("UPDATE node_calls SET answer=? WHERE id=?",
                                (json.dumps({"status": status, "body": text}), call_id))

    async def ask(self, node, kind, endpoint, timeout):
        """Have `node` (the one the device's datagrams reach) make channel call `kind` ("installed"/"check")."""
        return await self._ask(node, endpoint, timeout, self.device_call, kind=kind, endpoint=endpoint,
                               timeout=timeout)

    async def ask_api(self, node, endpoint, method, route, match_info, query, body, timeout):
        """Have `node` answer an API request for its device -> (HTTP status, JSON text)."""
        answer = await self._ask(node, endpoint, timeout, self.api_call, method=method, route=route,
                                 match_info=match_info, query=query, body_hex=body.hex())
        return answer["status"], answer["body"]

    async def _ask(self, node, endpoint, timeout, task, **args):
        """Defer `task` on `node`'s queue with a node_calls row for its answer, and poll the row for it."""
        db = self.service.db
        call_id = db.query_one("INSERT INTO node_calls (node, endpoint, at) VALUES (?, ?, ?) RETURNING id",
                               (node, endpoint, time.time()))["id"]
        await task.configure(queue=self.queue_of(node)).defer_async(call_id=call_id, **args)
        end = time.monotonic() + (timeout or 30.0) + 2 * STALLED
        try:
            while time.monotonic() < end:
                row = db.query_one("SELECT answer, error FROM node_calls WHERE id=?", (call_id,))
                if row["error"] is not None:
                    raise DeliveryError("%s (asked through node %s)" % (row["error"], node))
                if row["answer"] is not None:
                    return json.loads(row["answer"])
                await asyncio.sleep(0.1)
            raise DeliveryError("node %s did not answer for %s" % (node, endpoint))
        finally:
            db.execute("DELETE FROM node_calls WHERE id=?", (call_id,))

    def alive(self, node):
        row = self.service.db.query_one("SELECT heartbeat FROM service_nodes WHERE name=?", (node,))
        return bool(row) and row["heartbeat"] > time.time() - STALLED

    def _beat(self):
        self.service.db.execute("INSERT INTO service_nodes (name, heartbeat) VALUES (?, ?) ON CONFLICT(name) DO "
                                "UPDATE SET heartbeat=excluded.heartbeat", (self.node, time.time()))

    async def _retry_stalled(self):
        """Jobs of a node that stopped beating (killed): back to 'todo', for whichever live node takes them."""
        while True:
            try:
                self._beat()
            except Exception:           # noqa: BLE001
                log.exception("node heartbeat failed")
            await asyncio.sleep(HEARTBEAT)
            try:
                for job in await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED):
                    log.warning("node %s retries job %s (%s) of a silent worker", self.node, job.id, job.task_name)
                    await self.app.job_manager.retry_job(job)
            except asyncio.CancelledError:
                raise
            except Exception:           # noqa: BLE001  (the database may be briefly away: try at the next beat)
                log.exception("stalled-job check failed")


class NodeChannel:
    """The deployment channel of a node in a group. A device whose datagrams reach another node (the balancer's
    session, or the SO_REUSEPORT hash, chose that node) can only be spoken to by that node: a live owner is asked
    through its queue (installs: install_waiting; reads: device_call); a dead owner's device is tried directly (in
    a reuse-port group its datagrams now come here) and else waited for: its next Update reaches a live node."""

    def __init__(self, channel, server, queue, spawn):
        self._channel = channel
        self._server = server
        self._queue = queue
        self._spawn = spawn
        queue.direct = channel

    def __getattr__(self, name):
        return getattr(self._channel, name)

    def offline(self, endpoint):
        owner = self._server.owner_elsewhere(endpoint)
        if owner is None:
            return self._channel.offline(endpoint)
        if self._queue.alive(owner):
            # deferred from a task: the engine writes "waiting" before it next awaits, so the owner finds it so
            self._spawn(self._queue.defer_install(owner, endpoint))
            return "served by node %s (installed by that node)" % owner
        return "its node %s is gone: installed when its next Update reaches a live node" % owner

    async def installed(self, endpoint, timeout=None):
        return await self._call("installed", endpoint, timeout)

    async def check(self, endpoint, timeout):
        return await self._call("check", endpoint, timeout)

    async def _call(self, kind, endpoint, timeout):
        owner = self._server.owner_elsewhere(endpoint)
        if owner is None:
            return await getattr(self._channel, kind)(endpoint, timeout=timeout)
        if self._queue.alive(owner):
            return await self._queue.ask(owner, kind, endpoint, timeout)
        try:
            return await getattr(self._channel, kind)(endpoint, timeout=timeout)
        except DeliveryError:
            reg = self._server.find(endpoint)
            end = time.monotonic() + (reg.lifetime if reg else 0)
            while self._server.owner_elsewhere(endpoint) == owner and time.monotonic() < end:
                await asyncio.sleep(0.5)
            return await getattr(self._channel, kind)(endpoint, timeout=timeout)
