"""A user's first hour with the command line, each step a real `tinymlaas` process: what used to go wrong without a
word (a second server on the same port, relative paths, a model no back-end compiles, a reader that leaves a pipe)
now either works or stops with a one-line reason."""

import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

# The installed entry point's code path (not `python -m tinymlaas.cli`, which would load cli.py twice).
CLI = [sys.executable, "-c", "import sys; from tinymlaas.cli import main; sys.exit(main())"]

pytestmark = pytest.mark.xdist_group("e2e")


def tml(*args, cwd=None, timeout=300, stdin=None):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          stdin=stdin)


def serve(data, *extra, cwd=None):
    proc = subprocess.Popen(CLI + ["serve", "--coap-host", "127.0.0.1", "--http-port", "0", "--data", data]
                            + [str(a) for a in extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd)
    line = proc.stdout.readline()
    m = re.search(r"coap://127\.0\.0\.1:(\d+), API on (http://127\.0\.0\.1:\d+)", line)
    assert m, line + proc.stdout.read()
    return proc, int(m.group(1)), m.group(2)


def wine_model(folder):
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_wine(return_X_y=True)
    model = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(x, y)
    (folder / "wine.pkl").write_bytes(pickle.dumps(model))
    np.savez(folder / "wine-eval.npz", x=x[::3].astype(np.float32), y=y[::3])
    return x, y


def test_one_server_per_port_relative_paths_infer_and_names(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    x, y = wine_model(work)
    # relative paths, as typed in the folder that holds the files
    r = tml("models", "add", "wine.pkl", "--name", "wine", "--labels", "barolo,grignolino,barbera",
            "--eval", "wine-eval.npz", "--data", "data", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "trees for tinyml-mpy: compile its trees" in r.stderr          # progress, step by step
    shown = json.loads(tml("models", "show", "wine", "--json", "--data", work / "data", cwd=elsewhere).stdout)
    assert os.path.isabs(shown["model"]["metadata"]["eval"]) and os.path.exists(shown["model"]["metadata"]["eval"])

    first, port, api = serve(work / "data", "--coap-port", "0")
    dev = None
    try:
        # a second server on the same CoAP port is refused; the first one keeps it
        second = tml("serve", "--coap-host", "127.0.0.1", "--coap-port", port, "--http-port", "0",
                     "--data", tmp_path / "other", timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr.strip().splitlines() == [
            "tinymlaas serve: error: cannot bind CoAP 127.0.0.1:%d: Address already in use" % port]
        assert first.poll() is None

        # a device directory relative to where the command runs
        dev = subprocess.Popen(CLI + ["device", "emulate", "--server", "coap://127.0.0.1:%d" % port,
                                      "--endpoint", "rel-1", "--data-dir", "dev1"], cwd=elsewhere,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in dev.stdout:
            seen.append(line)
            if "registered" in line or "Traceback" in line:
                break
        assert "registered" in seen[-1], "".join(seen)
        assert (elsewhere / "dev1" / "device.json").exists()

        for _ in range(50):     # the server reads the device's TinyML object right after registering
            r = tml("explain", "--model", "wine", "--device", "rel-1", "--server", api)
            if r.returncode != 2:
                break
        assert r.returncode == 0 and "chosen: fits" in r.stdout, r.stdout + r.stderr
        r = tml("deploy", "--model", "wine", "--devices", "rel-1", "--server", api, "--json")
        assert r.returncode == 0, r.stdout + r.stderr

        rows = tml("deployments", "--server", api).stdout.splitlines()
        assert rows[0].split()[:3] == ["ID", "MODEL", "STATE"] and rows[1].split()[1:4] == ["wine", "1", "completed"]
        r = tml("explain", "--model", "wine", "--device", "rel-1", "--server", api)
        assert "chosen: runs on the device now" in r.stdout, r.stdout

        # infer: float features in, the class with its label out, one row per input
        (work / "three.json").write_text(json.dumps(x[[0, 70, 140]].tolist()))
        r = tml("infer", "--device", "rel-1", "--input", work / "three.json", "--server", api)
        assert r.returncode == 0, r.stdout + r.stderr
        table = r.stdout.splitlines()
        assert table[0].startswith("rel-1 runs wine 1 (variant 1), input 1x13 float32")
        assert [line.split()[1:3] for line in table[2:]] == [["0", "barolo"], ["1", "grignolino"], ["2", "barbera"]]
        r = tml("infer", "--device", "rel-1", "--input", "-", "--json", "--server", api,
                stdin=open(work / "three.json"))
        [one, _, _] = json.loads(r.stdout)["results"]
        assert abs(sum(one["scores"]) - 1) < 1e-3 and one["latency_us"] > 0     # a forest's class probabilities
        r = tml("infer", "--device", "rel-1", "--input", work / "three.json", "--raw", "--server", api)
        assert r.returncode == 2 and "input is float32" in r.stderr
    finally:
        if dev:
            dev.terminate()
            dev.wait(30)
        first.terminate()
        first.wait(30)


def test_a_model_no_back_end_compiles_is_refused_and_nothing_is_registered(tmp_path):
    from sklearn.datasets import load_wine
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    data = tmp_path / "data"
    x, y = load_wine(return_X_y=True)
    qda = QuadraticDiscriminantAnalysis().fit(x[:, :2], y)                           # no back-end takes it
    (tmp_path / "qda.pkl").write_bytes(pickle.dumps(qda))
    r = tml("models", "add", tmp_path / "qda.pkl", "--name", "qda", "--data", data)
    assert r.returncode == 2 and "nothing registered" in r.stderr and "RandomForestClassifier" in r.stderr
    assert "train one of those" in r.stderr and "LogisticRegression" in r.stderr and "GaussianNB" in r.stderr

    (tmp_path / "cut.keras").write_bytes(b"PK\x03\x04" + b"\0" * 5000)   # a download cut short
    r = tml("models", "add", tmp_path / "cut.keras", "--name", "cut", "--data", data)
    assert r.returncode == 2 and "truncated" in r.stderr and "File not found" not in r.stderr

    saved = tmp_path / "saved"                   # a SavedModel directory, without calibration inputs
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    r = tml("models", "add", saved, "--name", "sm", "--data", data)
    assert r.returncode == 2 and "--representative X.npy" in r.stderr and "options[" not in r.stderr
    r = tml("compile", saved)
    assert r.returncode == 2 and "tinymlaas models add %s" % saved in r.stderr

    assert json.loads(tml("models", "list", "--json", "--data", data).stdout) == []


def test_a_savedmodel_archive_is_accepted_and_a_float_tflite_gets_a_way_forward(tmp_path):
    script = """
import os, sys, tarfile
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras, tensorflow as tf
keras.utils.set_random_seed(0)
m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
m.export("sm", verbose=False)
with tarfile.open("sm.tgz", "w:gz") as t:
    t.add("sm")
open("float.tflite", "wb").write(tf.lite.TFLiteConverter.from_keras_model(m).convert())
np.save("calib.npy", np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32))
"""
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    r = tml("models", "add", "sm.tgz", "--name", "sm", "--representative", "calib.npy", "--data", "data",
            cwd=tmp_path)
    assert r.returncode == 0 and "added sm 1 (savedmodel), 1 variant(s)" in r.stdout, r.stderr
    assert "quantize the SavedModel to int8" in r.stderr
    r = tml("compile", "float.tflite", cwd=tmp_path)
    assert r.returncode == 2 and "computes in float" in r.stderr and "--representative" in r.stderr


def test_a_reader_that_leaves_ends_the_command_quietly(tmp_path):
    for args, status in ((["models", "list", "--data", tmp_path], 141), (["--help"], 0)):
        read, write = os.pipe()
        os.close(read)                           # `tinymlaas ... | head` after head has exited
        proc = subprocess.run(CLI + [str(a) for a in args], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120)
        os.close(write)
        # 141: ended as by SIGPIPE, like other Unix tools (argparse itself ignores a failed write of --help)
        assert (proc.returncode, proc.stderr) == (status, ""), args
