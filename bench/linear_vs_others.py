"""Linear models and MLPs: tinymlaas int8 blob ("linear" back-end) vs m2cgen and emlearn, same scikit-learn models.

    python bench/linear_vs_others.py [--rows 300] [--quick]      (or: python -m bench linear_vs_others)

scikit-learn's digits (pixels scaled to [0, 1]; 1,200 training rows, the held-out rows after them). For each model:
* blob bytes (the whole file a device stores; the runtime's kernels are shared by every model) and, for the code
  generators, their C compiled for Cortex-M4 with arm-none-eabi-gcc -Os (text + data of the object: model and its
  predict function);
* agreement with scikit-learn's predict() on the held-out rows (m2cgen: its generated Python, the same double
  arithmetic as its C; emlearn: its own predict(), which runs its C);
* our latency: the MicroPython runtime inside the real `micropython` unix port (float32 in, the runtime's own
  per-inference timer, best of the rows), on this host in the same run.
m2cgen has no MLP; emlearn has no linear models. micromlgen and sklearn-porter are in bench/classic_vs_others.py
(SVMs, naive Bayes, k-NN; sklearn-porter 0.7.4 only behind that bench's import shims).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def m4_bytes(code, call):
    """text + data of C `code` plus a function calling it (`call`), for Cortex-M4 (-Os); None without the toolchain."""
    gcc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if not gcc or not size:
        return None
    import emlearn
    with tempfile.TemporaryDirectory() as tmp:
        src, obj = os.path.join(tmp, "use.c"), os.path.join(tmp, "use.o")
        with open(src, "w") as f:
            f.write(code + "\n" + call + "\n")
        subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os",
                        "-ffunction-sections", "-fdata-sections", "-I", emlearn.includedir, "-c", src, "-o", obj],
                       check=True)
        out = subprocess.run([size, obj], check=True, capture_output=True, text=True).stdout.splitlines()[1].split()
        return int(out[0]) + int(out[1])


def m2cgen_row(model, x_te):
    import m2cgen
    c = m4_bytes(m2cgen.export_to_c(model), "void use(double *x, double *y) { score(x, y); }")
    scope = {}
    exec(m2cgen.export_to_python(model), scope)      # noqa: S102 (code generated from our own model)
    pred = np.array([np.argmax(scope["score"](list(map(float, r)))) for r in x_te])
    return c, float(np.mean(model.classes_[pred] == model.predict(x_te)))


def emlearn_row(model, x_te):
    import emlearn
    cmodel = emlearn.convert(model)
    code = cmodel.save(name="model")
    c = m4_bytes(code, "int32_t use(const float *x, int n) { return model_predict(x, n); }")
    return c, float(np.mean(cmodel.predict(x_te.astype(np.float32)) == model.predict(x_te)))


def ours(model, x_tr, x_te):
    from tinymlaas.backends import SourceModel, Target, backend
    from tinymlaas.backends.linear import blob_outputs
    from tinymlaas.verify.micropython import MicroPythonRuntime
    art = backend("linear").compile(SourceModel("sklearn", model), Target("tinyml-mpy"), {"representative": x_tr})
    pred = model.classes_[np.argmax(blob_outputs(art.data, x_te), axis=1)]
    rt = MicroPythonRuntime(heap="256k")
    rt.run(art.data, [[r.reshape(1, -1)] for r in x_te[:50]])
    return art, float(np.mean(pred == model.predict(x_te))), min(rt.last_us)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300, help="held-out rows (default 300)")
    ap.add_argument("--quick", action="store_true", help="100 held-out rows")
    args, _ = ap.parse_known_args(argv)      # `python -m bench` hands every benchmark the same flags
    if args.quick:
        args.rows = 100
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import LinearSVC
    warnings.filterwarnings("ignore")
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    x_tr, y_tr, x_te = x[:1200], y[:1200], x[1200:1200 + args.rows]
    models = [("LogisticRegression", LogisticRegression(max_iter=500)), ("LinearSVC", LinearSVC()),
              ("MLP 32 relu", MLPClassifier((32,), max_iter=300, random_state=0)),
              ("MLP 32-16 tanh", MLPClassifier((32, 16), activation="tanh", max_iter=300, random_state=0))]
    print("| model | blob B / agree | arena B | mpy us | m2cgen M4 B / agree | emlearn M4 B / agree |")
    print("|---|---|---|---|---|---|")
    for _, model in models:          # all fitted first: a code generator leaves numpy raising on underflow
        model.fit(x_tr, y_tr)
    for name, model in models:
        art, agree, us = ours(model, x_tr, x_te)
        mlp = name.startswith("MLP")
        m2c = ("not supported",) if mlp else m2cgen_row(model, x_te)
        eml = emlearn_row(model, x_te) if mlp else ("not supported",)
        fmt = lambda r: r[0] if len(r) == 1 else "%s / %.3f" % (f"{r[0]:,}" if r[0] else "-", r[1])  # noqa: E731
        print("| %s | %s / %.3f | %d | %.1f | %s | %s |" % (name, f"{art.flash_bytes:,}", agree, art.ram_bytes, us,
                                                           fmt(m2c), fmt(eml)))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
