"""On-device learning against drift: the demo's vibration classifier trained on machine A, run on machine B
(learning/drift.py: the same states 1.5x faster, plus a structural mode), its head taught N labelled B windows on
the device.

    python bench/learning_drift.py [--quick] [--n 8,20,40,80]     (or: python -m bench learning_drift)

One service, one emulated ESP32 (the real MicroPython device code over LwM2M on loopback). For each head kind
(softmax: starts from the model's own last layer; ncm: starts empty) and each N: reset the head, write N balanced
B windows with their labels (/37, `learn sample`), then `infer` the held-out B windows and count the device's class
(/23). Beside it: the device's own update rule run on the host in float64 on the same embeddings (the host
reference executor's graph output 1, dequantized as the device does), in the same order — what the device should
reach — and the peer, scikit-learn's LogisticRegression fit on the same N embeddings (many passes, converged). Also printed: the model on A
and on B before any learning, and after-learning accuracy on A (what the head forgets).
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def embeddings(blob, X):
    """Dequantized graph output 1 of the embedding-output blob for float windows X (quantized as `infer`
    does)."""
    from tinymlaas.blob.reader import parse
    from tinymlaas.blob.reference import Executor, quantize_steps
    from tinymlaas.learning.register import dequantized

    b = parse(blob)
    t_in, t_emb = b.tensors[b.inputs[0]], b.tensors[b.outputs[1]]
    ex = Executor(blob)
    q = np.clip(quantize_steps(X.reshape(len(X), -1), t_in.scale) + t_in.zero_point, -128, 127).astype(np.int8)
    return np.array([dequantized(np.asarray(ex.run([r.reshape(t_in.shape)])[1]).reshape(-1), t_emb.scale,
                                 t_emb.zero_point) for r in q])


async def device_accuracy(svc, endpoint, X, y):
    answer = await svc.inference.run(endpoint, X.reshape(len(X), -1).tolist())
    return float(np.mean(np.array([r["class"] for r in answer["results"]]) == y))


async def run(args, tmp):
    from tinymlaas.devices.emulated import EmulatedDevice
    from tinymlaas.learning import drift
    from tinymlaas.service.core import Service
    from tinymlaas.learning.register import float_fc
    from tinymlaas.service.learning import Learning, source_tflite

    say = print
    t0 = time.perf_counter()
    model, rep = drift.train_on_a(n=1200 if args.quick else 2400, epochs=8 if args.quick else 12)
    path = tmp / "vibration.keras"
    model.save(path)
    np.save(tmp / "rep.npy", rep)
    n_test = 120 if args.quick else 300
    Xa, ya = drift.dataset(n_test, "A", seed=11)
    Xb_pool, yb_pool = drift.dataset(200, "B", seed=12)      # the windows an operator labels
    Xb, yb = drift.dataset(n_test, "B", seed=13)              # held out
    say("trained on machine A in %.0f s; float accuracy A %.3f, B %.3f"
        % (time.perf_counter() - t0, np.mean(model.predict(Xa, verbose=0).argmax(1) == ya),
           np.mean(model.predict(Xb, verbose=0).argmax(1) == yb)))

    svc = await Service(tmp / "svc").start("127.0.0.1", 0)
    devices = []
    try:
        svc.catalog.add(path, "vibration", "1", datasets={"representative": tmp / "rep.npy"},
                        builds=[("tmlb-int8", "tinyml-mpy", {"quantize": True})])
        learning = Learning(svc)
        rows, blob = [], None
        for kind in ("softmax", "ncm"):
            for n in args.n:
                # a fresh device per run, so runs are independent (it also kept the bench clear of the 5.00 out of
                # memory an ESP32 answered after ~1,000 head inferences, since fixed: docs/learning.md "Heap over
                # a long run", bench/learning_heap.py)
                ep = "b-%s-%d" % (kind, n)
                devices.append(EmulatedDevice("coap://127.0.0.1:%d" % svc.server.port, ep, profile="esp32",
                                              data_dir=tmp / ep).start())
                while not getattr(svc.server.find(ep), "capabilities", None):
                    await asyncio.sleep(0.1)
                dep = await svc.engine.run(svc.create_deployment(
                    "vibration", [ep], head={"kind": kind, "lr": args.lr, "save_every": 50}))
                assert dep["devices"][0]["state"] == "active", dep
                if blob is None:
                    blob = svc.registry.artifact(svc.registry.variant(dep["devices"][0]["variant_id"]))
                    e_pool, e_test = embeddings(blob, Xb_pool), embeddings(blob, Xb)
                    start = float_fc(source_tflite(svc, svc.registry.model("vibration"),
                                                   svc.registry.variant(dep["devices"][0]["variant_id"])))
                    # the softmax head starts as the model's own last layer: the model before learning
                    say("int8 model on the device before learning: A %.3f, B %.3f"
                        % (await device_accuracy(svc, ep, Xa, ya), await device_accuracy(svc, ep, Xb, yb)))
                pick = drift.balanced(Xb_pool, yb_pool, n, seed=n)
                for lo in range(0, n, 20):                    # 20 windows per request
                    part = pick[lo:lo + 20]
                    await learning.sample(ep, [int(v) for v in yb_pool[part]],
                                          Xb_pool[part].reshape(len(part), -1).tolist())
                acc_b = await device_accuracy(svc, ep, Xb, yb)
                acc_a = await device_accuracy(svc, ep, Xa, ya)
                status = await learning.status(ep)
                peer = peer_accuracy(e_pool[pick], yb_pool[pick], e_test, yb)
                same = same_rule_accuracy(kind, start, args.lr, e_pool[pick], yb_pool[pick], e_test, yb)
                rows.append((kind, n, status["samples"], acc_b, acc_a, same, peer))
                say("%-7s N=%-3d device head: B %.3f (A %.3f) | its rule on the host: B %.3f | LogisticRegression "
                    "on the same %d embeddings: B %s" % (kind, n, acc_b, acc_a, same, n,
                                                         "%.3f" % peer if peer is not None else "-"))
                await asyncio.to_thread(devices.pop().stop)
        return rows
    finally:
        for dev in devices:
            await asyncio.to_thread(dev.stop)
        await svc.stop()


def same_rule_accuracy(kind, start, lr, e_fit, y_fit, e_test, y_test):
    """The device's update rule on the host in float64, same samples in the same order (tinyml/learn.py: one SGD
    step per sample from the model's last layer; ncm running class means): the accuracy the device should have."""
    w, b = (start[0].copy(), start[1].copy()) if kind == "softmax" else (np.zeros_like(start[0]), None)
    counts = np.zeros(len(w))
    for x, label in zip(e_fit, y_fit):
        if kind == "softmax":
            z = w @ x + b
            p = np.exp(z - z.max())
            g = lr * (p / p.sum() - np.eye(len(w))[label])
            b -= g
            w -= np.outer(g, x)
        else:
            counts[label] += 1
            w[label] += (x - w[label]) / counts[label]
    if kind == "softmax":
        pred = np.argmax(e_test @ w.T + b, axis=1)
    else:
        d = ((e_test[:, None, :] - w[None]) ** 2).sum(axis=2)
        d[:, counts == 0] = np.inf
        pred = np.argmin(d, axis=1)
    return float(np.mean(pred == y_test))


def peer_accuracy(e_fit, y_fit, e_test, y_test):
    from sklearn.linear_model import LogisticRegression

    if len(set(y_fit)) < 2:
        return None
    lr = LogisticRegression(max_iter=3000).fit(e_fit, y_fit)
    return float(np.mean(lr.predict(e_test) == y_test))


def main(argv=()):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", default=None, help="comma-separated sample counts (default 8,20,40,80; quick 8,40)")
    p.add_argument("--lr", type=float, default=0.05, help="the softmax head's learning rate")
    args = p.parse_args(list(argv))
    args.n = [int(v) for v in (args.n or ("8,40" if args.quick else "8,20,40,80")).split(",")]
    with tempfile.TemporaryDirectory(prefix="learning-drift-") as tmp:
        os.environ.setdefault("TINYMLAAS_KEYS", str(Path(tmp) / "keys"))   # one key store: service and device
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
