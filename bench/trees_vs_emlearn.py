"""Tree ensembles: tinymlaas TREE_ENSEMBLE blob vs emlearn, on the same scikit-learn models.

    python bench/trees_vs_emlearn.py [--trees 10] [--depth 8] [--rows 300]

For each model it prints:
* blob bytes (the whole file a device stores) and emlearn's model as flash: the C it generates, compiled for
  Cortex-M4 with arm-none-eabi-gcc -Os, text + data of the object (model + its predict function; our blob figure
  excludes our kernel, which is shared by all models);
* agreement with scikit-learn's predict() on a held-out set (ours must be 1.000);
* latency: our viper kernel inside the real `micropython` unix port (per inference, measured on the device with
  ticks_us), emlearn's predict() from CPython (its Python wrapper: batch call / rows), and emlearn's inline C
  compiled with the host gcc -O2 and timed in C ("inl C us"), all on this host in the same run.
emlearn's "loadable" node tables only take int16 features (inputs are truncated to integers, hence its lower
agreement); "inline" runs with float features. emlearn does not convert GradientBoostingClassifier ("-").
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from tinymlaas.backends.trees import compile_estimator, predict_on_unixport


# emlearn's two code generators: node tables ("loadable", int16 features only) and if/else code ("inline", float).
EMLEARN_METHODS = (("loadable", "int16_t"), ("inline", "float"))


def emlearn_c_bytes(model, method, dtype):
    """text + data bytes of emlearn's generated C for `method`, compiled for Cortex-M4 (-Os)."""
    import emlearn
    gcc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if not gcc or not size:
        return None
    ctype = "float" if dtype == "float" else dtype
    code = emlearn.convert(model, method=method, dtype=dtype).save(name="model")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "model.h"), "w") as f:
            f.write(code)
        with open(os.path.join(tmp, "use.c"), "w") as f:
            f.write('#include "model.h"\nint32_t use(const %s *x, int n) { return model_predict(x, n); }\n' % ctype)
        obj = os.path.join(tmp, "use.o")
        subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-Os", "-ffunction-sections", "-fdata-sections",
                        "-I", emlearn.includedir, "-c", os.path.join(tmp, "use.c"), "-o", obj], check=True)
        out = subprocess.run([size, obj], check=True, capture_output=True, text=True).stdout.splitlines()[1].split()
        return int(out[0]) + int(out[1])


_TIMING_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "model.h"
int main(int argc, char **argv) {
    int rows = atoi(argv[2]), features = atoi(argv[3]), repeat = 200;
    float *x = malloc(sizeof(float) * rows * features);
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(x, sizeof(float), rows * features, f) != (size_t)(rows * features)) return 1;
    struct timespec t0, t1;
    volatile int32_t sink = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < repeat; r++)
        for (int i = 0; i < rows; i++) sink += model_predict(x + i * features, features);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3) / ((double)repeat * rows);
    printf("%.4f\n", us);
    for (int i = 0; i < rows; i++) printf("%d\n", (int)model_predict(x + i * features, features));
    return 0;
}
"""


def emlearn_c_host(model, x):
    """(predictions, us per row) of emlearn's inline float C compiled with the host gcc -O2 and timed in C."""
    import emlearn
    gcc = shutil.which("gcc")
    if not gcc:
        return None, None
    code = emlearn.convert(model, method="inline", dtype="float").save(name="model")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "model.h"), "w") as f:
            f.write(code)
        with open(os.path.join(tmp, "main.c"), "w") as f:
            f.write(_TIMING_MAIN)
        exe, data = os.path.join(tmp, "bench"), os.path.join(tmp, "x.f32")
        subprocess.run([gcc, "-O2", "-I", emlearn.includedir, os.path.join(tmp, "main.c"), "-o", exe], check=True)
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        x32.tofile(data)
        out = subprocess.run([exe, data, str(len(x32)), str(x32.shape[1])], check=True, capture_output=True,
                             text=True).stdout.split()
    return np.array([int(v) for v in out[1:]]), float(out[0])


def emlearn_predict(model, x, method, dtype):
    import emlearn
    m = emlearn.convert(model, method=method, dtype=dtype)
    started = time.perf_counter()
    pred = m.predict(x.astype(np.float32))
    return np.asarray(pred), (time.perf_counter() - started) / len(x) * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=10)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--classes", type=int, default=3)
    args = ap.parse_args(argv)
    x, y = make_classification(n_samples=900 + args.rows, n_features=10, n_informative=6, n_classes=args.classes,
                               random_state=0)
    x_train, y_train, x_test = x[:900], y[:900], x[900:]
    models = [
        ("DecisionTree", DecisionTreeClassifier(max_depth=args.depth, random_state=0)),
        ("RandomForest", RandomForestClassifier(args.trees, max_depth=args.depth, random_state=0)),
        ("ExtraTrees", ExtraTreesClassifier(args.trees, max_depth=args.depth, random_state=0)),
        ("GradientBoosting", GradientBoostingClassifier(n_estimators=args.trees, max_depth=3, random_state=0)),
    ]
    head = ("model", "trees", "nodes", "blob B", "agree", "mpy us",
            "load B", "load agree", "load us", "inline B", "inl agree", "inl us", "inl C us")
    fmt = "%-16s %5s %6s %8s %6s %7s | %8s %10s %8s | %9s %9s %7s %8s"
    print(fmt % head)
    for name, model in models:
        model.fit(x_train, y_train)
        expected = model.predict(x_test)
        blob, tables = compile_estimator(model, name)
        classes, _, mpy_us = predict_on_unixport(blob, x_test)
        agree = np.mean(np.asarray(tables.classes)[classes] == expected)
        eml = []
        for method, dtype in EMLEARN_METHODS:
            if name == "GradientBoosting":
                eml += ["-", "-", "-"]
                continue
            pred, eml_us = emlearn_predict(model, x_test, method, dtype)
            eml += [emlearn_c_bytes(model, method, dtype), "%.3f" % np.mean(pred == expected), "%.1f" % eml_us]
        if name == "GradientBoosting":
            eml.append("-")
        else:
            c_pred, c_us = emlearn_c_host(model, x_test)
            assert c_pred is None or abs(np.mean(c_pred == expected) - float(eml[-2])) < 1e-3, "C == Python wrapper"
            eml.append("-" if c_us is None else "%.3f" % c_us)
        print(fmt % tuple([name, len(tables.trees), len(tables.nodes), len(blob), "%.3f" % agree, "%.1f" % mpy_us]
                          + eml))
    return 0


if __name__ == "__main__":
    sys.exit(main())
