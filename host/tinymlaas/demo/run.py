"""`tinymlaas demo`: the whole service on one machine, from an empty state.

1. starts the service (LwM2M server on loopback, SQLite registry in a fresh data directory);
2. registers three models: the MLPerf Tiny keyword-spotting model (int8 .tflite), a vibration classifier for
   predictive maintenance, trained here on generated machine-vibration data, compiled as a full and a pruned
   variant whose accuracy is measured on held-out data through the compiled blob, and a vibration anomaly model
   (an autoencoder fitted to the normal machine only) whose alarm threshold the service sets on normal data at a
   1 % false-alarm rate;
3. starts three emulated devices — MicroPython unix-port processes with different heap limits and flash sizes —
   which register over LwM2M and report their capabilities (TinyML object 32770);
4. explains, per model and device, which variant fits and why the others do not;
5. deploys over LwM2M (object 5, Block1) with a canary; each device verifies the package, runs the golden
   vectors and switches slots atomically;
6. sends real inputs to each device over LwM2M, observes the results; the pump's anomaly model scores normal and
   faulty windows and reports each alarm to the server with LwM2M Send; prints a summary.

All along, the service's console (http://127.0.0.1:8080/) shows it; the demo prints an operator and a viewer
token to sign in with, and with `--keep-running` stays up after the summary until Ctrl-C.
"""

import asyncio
import json
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from ..devices.emulated import EmulatedDevice, device_trust
from ..devices.qemu import QemuDevice, QemuError
from ..lwm2m.bootstrap import BootstrapServer
from ..signing.anchors import device_anchors
from ..paths import mlperf_model
from ..service import anomaly
from ..service.core import Service
from . import vibration

CONSOLE_PORT = 8080   # the console's port when it is free (else any)
KWS_LABELS = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown"]

# name, board profile (devices/emulated.py), flash for model packages (None: the profile's), co-processor board
# (the bare-metal firmware under QEMU on the device's UART: models run there) or None, and whether it ships knowing
# only the Bootstrap-Server (which gives it its server account and fresh OSCORE keys) instead of the server
DEVICES = [
    ("esp32s3-kitchen", "esp32-s3", None, None, False),
    ("esp32-pump-7", "esp32", None, None, True),
    ("m4-fan-2", "cortex-m4", "16k", None, False),     # most of its 1 MB flash holds firmware: a 16 KB partition
    ("esp32-stm32-line-3", "esp32", None, "stm32f4", False),
]


class Narrator:
    def __init__(self, quiet=False):
        self.t0 = time.monotonic()
        self.quiet = quiet

    def step(self, text):
        if not self.quiet:
            print("\n[%5.1fs] %s" % (time.monotonic() - self.t0, text), flush=True)

    def say(self, text):
        if not self.quiet:
            print("         " + text, flush=True)


def train_vibration(workdir, say):
    """Train the vibration classifier (seeded) and return (keras path, representative .npy, train .npz, test set)."""
    import keras

    X, y = vibration.waveform_dataset(2400, seed=0)
    Xt, yt = vibration.waveform_dataset(400, seed=1)
    keras.utils.set_random_seed(0)
    model = vibration.build_model(width=16)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X, y, epochs=12, batch_size=64, verbose=0)
    float_acc = float(model.evaluate(Xt, yt, verbose=0)[1])
    say("trained vibration classifier on %d generated windows: float accuracy %.3f on %d held-out" % (len(X), float_acc, len(Xt)))
    path = workdir / "vibration.keras"
    model.save(path)
    np.save(workdir / "vibration-calibration.npy", X[:200])
    np.savez(workdir / "vibration-train.npz", x=X, y=y, x_val=Xt, y_val=yt)
    np.savez(workdir / "vibration-eval.npz", x=Xt, y=yt)
    return path, (Xt, yt), float_acc


def anomaly_model(workdir):
    """The vibration anomaly model: an autoencoder of the normal machine's band energies (vibration.autoencoder)
    -> (keras path, {normal, anomalous} .npy paths)."""
    normal = vibration.normal_features(800, seed=2)
    np.save(workdir / "vibration-normal.npy", normal)
    np.save(workdir / "vibration-faults.npy", vibration.fault_features(300, seed=3))
    path = workdir / "vibration-anomaly.keras"
    vibration.autoencoder(normal).save(path)
    return path, {"normal": workdir / "vibration-normal.npy", "anomalous": workdir / "vibration-faults.npy"}


async def _demo(data_dir, narrator, summary_json=None, keep_running=False):
    step, say = narrator.step, narrator.say
    data_dir.mkdir(parents=True, exist_ok=True)

    step("Starting the service: LwM2M server on loopback, registry in %s" % data_dir)
    svc = Service(data_dir / "service")
    await svc.start("127.0.0.1", 0)
    uri = "coap://127.0.0.1:%d" % svc.server.port
    # the Bootstrap-Server hands a zero-touch device the keys whose packages it may install, as `serve` does
    bootstrap = await BootstrapServer(svc.server, uri,
                                      anchors=lambda: device_anchors(svc.keys)).start("127.0.0.1", 0)
    say("LwM2M server at %s, Bootstrap-Server at coap://127.0.0.1:%d" % (uri, bootstrap.port))
    api, console = await start_console(svc)
    say("console at %s: sign in with the operator token %s (deploys, runs inferences, manages devices)"
        % (console["url"], console["operator"]))
    say("            or the viewer token %s (reads)" % console["viewer"])

    devices, coprocessors = [], []
    try:
        step("Starting %d emulated devices (MicroPython unix port, heap limited like a board; one drives an STM32F4 "
             "co-processor: the bare-metal C firmware in QEMU on its UART)" % len(DEVICES))
        for name, profile, flash, coproc_board, zero_touch in DEVICES:
            coproc = None
            if coproc_board:
                try:
                    # its firmware trusts the service's key too, or it refuses every package
                    qemu = QemuDevice(coproc_board, connect=False,
                                      trust=device_trust(svc.signing.device_config())).start()
                except QemuError as e:
                    say("%s not started: its co-processor cannot run here: %s" % (name, e))
                    continue
                coprocessors.append(qemu)
                coproc = "tcp:127.0.0.1:%d" % qemu.port
            # a zero-touch device knows only the Bootstrap-Server: its LwM2M traffic ends up under OSCORE
            dev = EmulatedDevice(None if zero_touch else uri, name, profile=profile, flash=flash,
                                 data_dir=data_dir / "devices" / name, coprocessor=coproc,
                                 bootstrap="coap://127.0.0.1:%d" % bootstrap.port if zero_touch else None,
                                 trust=svc.signing.device_config())   # provisioned with the service's key
            dev.start()
            devices.append(dev)

        for _ in range(sum(1 for d in DEVICES if d[4])):
            outcome = await asyncio.wait_for(bootstrap.outcomes.get(), 60)
            say("%s bootstrapped: %s" % (outcome.endpoint, "server account and fresh OSCORE keys (object 21) and "
                                         "trust anchors (/32770/0/32) written" if outcome.ok
                                         else "FAILED: " + outcome.reason))

        step("Registering models")
        kws_path = mlperf_model("kws")
        kws, errors = svc.catalog.add(kws_path, "kws", "1", task="keyword spotting (MLPerf Tiny DS-CNN)",
                                      labels=KWS_LABELS)
        for v in svc.registry.variants(kws):
            say("kws: %-10s for %-10s %6d B flash, %6d B RAM, %d MACs" % (v["backend"], v["runtime"], v["flash_bytes"], v["ram_bytes"], v["macs"]))
        work = data_dir / "training"
        work.mkdir(exist_ok=True)
        vib_path, (Xt, yt), float_acc = await asyncio.to_thread(train_vibration, work, say)
        meta = {"representative": str(work / "vibration-calibration.npy"), "train": str(work / "vibration-train.npz"),
                "eval": str(work / "vibration-eval.npz")}
        vib = svc.registry.add_model("vibration", "1", "keras", vib_path.read_bytes(), task="machine fault classification",
                                     labels=vibration.CLASSES, accuracy=float_acc, metadata=meta)
        errors = await asyncio.to_thread(svc.catalog.build, vib, [("tmlb-int8", "tinyml-mpy", {"quantize": "int8"})])
        for (be, rt), msg in errors.items():
            say("vibration: %s for %s not built: %s" % (be, rt, msg))
        show_variants(svc, vib, say)
        ad_path, ad_data = await asyncio.to_thread(anomaly_model, work)
        ad, errors = await asyncio.to_thread(
            svc.catalog.add, ad_path, "vibration-anomaly", "1", task="anomaly detection on vibration band energies",
            datasets=ad_data, metadata={"false_alarm_rate": 0.01})
        for v in svc.registry.variants(ad):
            say("vibration-anomaly: variant %d %6d B flash, %4d B RAM, alarm when %s"
                % (v["id"], v["flash_bytes"], v["ram_bytes"], anomaly.summary(v)))

        step("Waiting for the devices to register and report capabilities")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            regs = {r.endpoint: r for r in svc.server.devices()}
            if all(regs.get(d.endpoint) and regs[d.endpoint].capabilities for d in devices):
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError("devices did not report capabilities in time: %s" % [d.lines[-5:] for d in devices])
        for d in devices:
            c = svc.device_capabilities(d.endpoint)
            say("%-18s %-9s %-6s %s %7d B, largest block %7d B, flash free %8d B, %s runtime, %d ops"
                % (d.endpoint, d.profile, "OSCORE" if svc.server.oscore.for_endpoint(d.endpoint) else "NoSec",
                   "co-processor arena" if c["coprocessor"] else "heap free",
                   c["heap_free"], c["largest_block"], c["fs_free"], c["runtime"], len(c["ops"])))

        step("Fit-to-device selection (tinymlaas explain)")
        plan = {}
        for model in ("kws", "vibration", "vibration-anomaly"):
            for d in devices:
                _, caps, best, verdicts = svc.explain(model, d.endpoint)
                for v in verdicts:
                    say("%-17s -> %-18s variant %d %-28s %s" % (model, d.endpoint, v.variant["id"],
                                                              json.dumps(v.variant["options"]), v.summary()))
                plan[(model, d.endpoint)] = best

        step("Deploying over LwM2M (object 5, block-wise push; canary first). Where no variant fits, the service "
             "compiles a pruned one")
        running = [d.endpoint for d in devices]
        assignments = {"kws": [n for n in (DEVICES[0][0], DEVICES[2][0], DEVICES[3][0]) if n in running],
                       "vibration": [DEVICES[2][0]], "vibration-anomaly": [DEVICES[1][0]]}
        results = {}
        for model, targets in assignments.items():
            dep_id = svc.create_deployment(model, targets, canary=targets[:1])
            dep = await svc.engine.run(dep_id)
            results[model] = dep
            for dd in dep["devices"]:
                say("%-17s deployment %d: %-18s %-8s %s" % (model, dep_id, dd["endpoint"], dd["state"], dd["reason"]))
            say("%-17s deployment %d: %s %s" % (model, dep_id, dep["state"], dep["reason"]))

        say("vibration variants after the deployments:")
        show_variants(svc, vib, say)

        step("Running inference on the devices (input written to /32770/0/21, result observed on /32770/0/22)")
        rows = []
        for d in devices:
            caps = svc.device_capabilities(d.endpoint)
            inst = await svc.engine.channel.installed(d.endpoint)
            row = {"device": d.endpoint, "profile": d.profile + ("+stm32f4" if d.coprocessor else ""),
                   "security": "OSCORE" if svc.server.oscore.for_endpoint(d.endpoint) else "NoSec",
                   "largest_block": caps["largest_block"],
                   "fs_free": caps["fs_free"], "model": inst.get("name") or "-", "variant": "-",
                   "inferences": 0, "correct": "-", "alarms": "-", "latency_ms": "-"}
            if inst.get("sha256"):
                v = svc.db.query_one("SELECT id, options, ram_bytes, flash_bytes FROM variants WHERE artifact_sha256=?",
                                     (inst["sha256"],))
                row["variant"] = "%d %s" % (v["id"], v["options"]) if v else "?"
                row.update(await run_inferences(svc, d.endpoint, inst, Xt, yt))
            rows.append(row)

        step("Summary")
        print_summary(rows)
        for a in svc.server.reports.recent(DEVICES[1][0], kind="alarm")[::-1]:
            say("alarm from %s (LwM2M Send): %s score %.4g > threshold %.4g, alarm %d at inference %d"
                % (a["endpoint"], a["model"], a["score"], a["threshold"], a["alarm_count"], a["inference_count"]))
        ok = (results["vibration"]["state"] == "completed" and results["vibration-anomaly"]["state"] == "completed"
              and all(r["model"] != "-" for r in rows) and svc.server.reports.count(DEVICES[1][0]) > 0)
        if summary_json:
            Path(summary_json).write_text(json.dumps({"devices": rows, "deployments": results}, default=str, indent=1))
        say("demo finished in %.1f s: %s" % (time.monotonic() - narrator.t0, "OK" if ok else "NOT OK"))
        if keep_running:
            await until_stopped(console, say)
        return 0 if ok else 1
    finally:
        # In threads: a stopping device de-registers and waits for the server's answer, which this event loop
        # gives only while it runs. (Blocking it here left the de-registrations to arrive as the server shut down.)
        await asyncio.gather(*(asyncio.to_thread(d.stop) for d in devices))
        for q in coprocessors:
            q.stop()
        await bootstrap.stop()
        await api.stop()
        await svc.stop()


async def start_console(svc, port=CONSOLE_PORT):
    """The service's web API with its console, API tokens required (the demo's devices are real LwM2M clients
    and the console can deploy to them); on `port`, or any free port when that one is taken."""
    from ..web import build_api

    api = build_api(svc.server, svc, auth=True)
    try:
        await api.start("127.0.0.1", port)
    except OSError:
        await api.start("127.0.0.1", 0)
    _, operator = api.tokens.create("operator", "demo operator", created_by="demo")
    _, viewer = api.tokens.create("viewer", "demo viewer", created_by="demo")
    return api, {"url": "http://127.0.0.1:%d/" % api.port, "operator": operator, "viewer": viewer}


async def until_stopped(console, say):
    """--keep-running: serve the console and the devices until Ctrl-C (SIGINT) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    say("the demo keeps running: open %s and sign in with the operator token above; Ctrl-C ends it"
        % console["url"])
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    say("stopping")


def show_variants(svc, model, say):
    for v in svc.registry.variants(model):
        say("%s: variant %d %-34s %6d B flash, %6d B RAM, %7d MACs, int8 accuracy %s"
            % (model["name"], v["id"], json.dumps(v["options"]), v["flash_bytes"], v["ram_bytes"], v["macs"],
               "%.3f" % v["accuracy"] if v["accuracy"] is not None else "?"))


async def run_inferences(svc, endpoint, installed, Xt, yt, count=5):
    """Send `count` inputs to the device over LwM2M and collect its results (service/inference.py: what
    `tinymlaas infer` does): held-out vibration windows, or raw int8 inputs for KWS; for the anomaly model `count`
    normal windows' band energies, then `count` misaligned ones', and the alarms its Sends brought."""
    if installed["name"] == "vibration-anomaly":
        normal, faulty = vibration.normal_features(count, seed=5), vibration.fault_features(3 * count, seed=6)[1::3]
        before = svc.server.reports.count(endpoint)
        answer = {"results": (await svc.inference.run(endpoint, normal))["results"]}
        quiet = int(await svc.server.read_value(endpoint, "/32770/0/35"))   # alarms since the model came
        answer["results"] += (await svc.inference.run(endpoint, faulty))["results"]
        raised = int(await svc.server.read_value(endpoint, "/32770/0/35"))
        deadline = time.monotonic() + 10           # the device sends each alarm right after its result
        while svc.server.reports.count(endpoint) - before < raised and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        latencies = [r["latency_us"] for r in answer["results"]]
        return {"inferences": len(latencies), "correct": "n/a",
                "alarms": "%d/%d normal, %d/%d faulty" % (quiet, count, raised - quiet, count),
                "latency_ms": "%.1f" % (sum(latencies) / len(latencies) / 1000.0)}
    if installed["name"] == "vibration":
        answer = await svc.inference.run(endpoint, Xt[:count])
        correct = sum(int(r["class"] == label) for r, label in zip(answer["results"], yt[:count]))
    else:
        rng = np.random.default_rng(7)
        answer = await svc.inference.run(endpoint, rng.integers(-128, 128, (count, 490)), raw=True)
        correct = None
    latencies = [r["latency_us"] for r in answer["results"]]
    n = len(latencies)
    return {"inferences": n, "correct": "%d/%d" % (correct, n) if correct is not None else "n/a",
            "latency_ms": "%.1f" % (sum(latencies) / n / 1000.0)}


def print_summary(rows):
    from ..commands._output import print_table

    print_table(rows, [("device", "DEVICE"), ("profile", "PROFILE"), ("security", "LWM2M"),
                       ("largest_block", "LARGEST BLOCK B"),
                       ("fs_free", "FLASH FREE B"), ("model", "MODEL"), ("variant", "VARIANT"),
                       ("inferences", "INFERENCES"), ("correct", "CORRECT"), ("alarms", "ALARMS"),
                       ("latency_ms", "LATENCY MS")])


def run(data_dir=None, keep=False, quiet=False, summary_json=None, keep_running=False):
    tmp = None
    if data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="tinymlaas-demo-"))
        data_dir = tmp
    try:
        return asyncio.run(_demo(Path(data_dir), Narrator(quiet), summary_json, keep_running))
    finally:
        if tmp is not None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
