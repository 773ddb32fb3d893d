"""Node groups (docs/nodes.md): registrations/s and rollout time against the number of `tinymlaas serve --node`
processes (1, 2, 3) on one PostgreSQL, sharing the CoAP port through SO_REUSEPORT, with one `fleet emulate` fleet.

Per node count: a fresh database, the nodes, then the fleet starting all at once (registrations/s = devices / time
from the fleet's start to the last device's capabilities in the database), then one rollout of a small model to
every device (time from the POST to the last device "active"; stages 100, concurrency 8 per node).

    python -m bench fleet_nodes [--devices N] [--nodes 1,2,3] [--quick]      (defaults: 100 devices; quick: 30)

On this 2-core machine the nodes, PostgreSQL and the fleet share the same two cores, so this measures how the
work divides, not a cluster's capacity: see docs/benchmarks.md.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "models"
IMAGES = ROOT / "docs" / "images"


def run(count, n_nodes, work, pg_url):
    from tinymlaas.db import Database
    from tinymlaas.service.catalog import Catalog
    from tinymlaas.service.node_group import ServeNode, fleet_process, free_port, stop_fleet, wait

    import psycopg

    name = "nodes%d" % n_nodes
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE %s" % name)
    url = pg_url.replace("/postgres?", "/%s?" % name)
    work.mkdir(parents=True)
    data = work / "data"
    catalog = Catalog(url, data)
    catalog.add(CORPUS / "fc_no_bias_softmax.tflite", "model-a", "1", builds=[("tmlb-int8", "tinyml-mpy", {})])
    catalog.db.close()
    db = Database(url)
    port = free_port()
    nodes = [ServeNode("n%d" % i, url, data, port, work, True) for i in range(n_nodes)]
    fleet = None
    try:
        for node in nodes:
            node.start()
        t0 = time.monotonic()
        # 100 devices per micropython process: one process runs its devices' installs one after another
        fleet = fleet_process(port, count, "b", 300, work / "fleet", work / "fleet.log", per_process=100)
        wait(lambda: db.query_one("SELECT COUNT(*) AS n FROM devices WHERE capabilities IS NOT NULL")["n"] == count,
             600, "%d registrations" % count)
        registered_s = time.monotonic() - t0
        spread = {r["node"]: r["n"] for r in db.query("SELECT node, COUNT(*) AS n FROM devices GROUP BY node")}
        t1 = time.monotonic()
        dep = nodes[0].api("/api/deployments", {"model": "model-a", "devices": ["b-%04d" % i for i in range(count)],
                                                "concurrency": 8})
        wait(lambda: db.query_one("SELECT COUNT(*) AS n FROM deployment_devices WHERE deployment_id=? AND "
                                  "state='active'", (dep["id"],))["n"] == count, 600, "the rollout")
        rollout_s = time.monotonic() - t1
        return {"nodes": n_nodes, "count": count, "registered_s": registered_s, "rollout_s": rollout_s,
                "spread": spread}
    finally:
        stop_fleet(fleet)
        for node in nodes:
            node.stop()
        db.close()


def plot(rows):
    try:
        import matplotlib
    except ImportError:
        print("(no matplotlib: pip install -e .[bench] for the plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMAGES.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    xs = [r["nodes"] for r in rows]
    ax.plot(xs, [r["count"] / r["registered_s"] for r in rows], "o-", label="registrations / s")
    ax2 = ax.twinx()
    ax2.plot(xs, [r["rollout_s"] for r in rows], "s--", color="tab:red", label="rollout to all (s)")
    ax.set_xlabel("service nodes (SO_REUSEPORT group, one PostgreSQL, %d devices, 2-core machine)" % rows[0]["count"])
    ax.set_ylabel("registrations / s")
    ax2.set_ylabel("rollout time (s)")
    ax.set_xticks(xs)
    ax.grid(True, alpha=0.3)
    fig.legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    fig.savefig(IMAGES / "fleet-nodes.png")
    plt.close(fig)
    print("plot: %s" % (IMAGES / "fleet-nodes.png"))


def main(argv):
    ap = argparse.ArgumentParser(prog="bench fleet_nodes")
    ap.add_argument("--devices", type=int, default=None)
    ap.add_argument("--nodes", default="1,2,3")
    ap.add_argument("--quick", action="store_true")
    args, _ = ap.parse_known_args(argv)
    count = args.devices or (30 if args.quick else 100)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))
    from pg_cluster import Cluster   # the tests' throw-away PostgreSQL cluster (durable: commits are measured)

    rows = []
    with Cluster() as pg, tempfile.TemporaryDirectory(prefix="tinymlaas-bench-nodes-") as tmp:
        # one signing key for the nodes and the fleet's trust (else each would make its own on first use)
        os.environ["TINYMLAAS_KEYS"] = str(Path(tmp) / "keys")
        for n in [int(x) for x in args.nodes.split(",")]:
            r = run(count, n, Path(tmp) / ("n%d" % n), pg.url)
            rows.append(r)
            print("%d node(s), %d devices: registered in %.1f s (%.1f/s), rollout to all %.1f s, devices per node %s"
                  % (n, count, r["registered_s"], count / r["registered_s"], r["rollout_s"], r["spread"]), flush=True)
    print("\n| nodes | devices | registered in | registrations/s | rollout to all | devices per node |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %d | %.1f s | %.1f | %.1f s | %s |" % (r["nodes"], r["count"], r["registered_s"],
                                                          r["count"] / r["registered_s"], r["rollout_s"],
                                                          ", ".join(str(v) for _, v in sorted(r["spread"].items()))))
    if len(rows) > 1:
        plot(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
