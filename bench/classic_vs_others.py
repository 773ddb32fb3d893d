"""SVMs, naive Bayes and k-NN: the tinymlaas classic blob ("classic" back-end) vs micromlgen (MicroML),
sklearn-porter, m2cgen and emlearn, same scikit-learn models, same run.

    python bench/classic_vs_others.py            (or: python -m bench classic_vs_others)

Held-out rows as in tests/backends/test_classic.py (30 % of iris, wine, breast_cancer, stratified, seed 0;
"scaled": a StandardScaler fitted on the training rows applied beforehand, so every tool gets the bare estimator).
Per model and tool:
* bytes: ours = the blob file (the kernels, shared by every model, are the runtime's: tml_classic.c below); the
  code generators' = text + data of their C / C++ for Cortex-M4 (arm-none-eabi-gcc -Os), model and predict;
* agreement with scikit-learn's predict() on all held-out rows: ours through the C runtime on this host; the
  others' generated code compiled for this host (gcc -O2) and run on the same float32 rows;
* mpy us: our blob in the real `micropython` unix port (the runtime's own timer, best of 30 rows);
* M4 instr: instructions per inference on the Cortex-M4 (mps2-an386 under QEMU, -icount shift=0: exact), every
  tool built into the same bare-metal harness with arm-none-eabi-gcc -O2 (ours: the C runtime with the blob in
  flash), the mean of 10 held-out rows.
sklearn-porter 0.7.4 (the latest on PyPI, 2019) imports only with two shims applied here: the scikit-learn
module paths it names (sklearn.svm.classes, ...) aliased to today's, and json.load's removed `encoding`
argument dropped. micromlgen 1.1.28 reads GaussianNB's `sigma_`, renamed `var_` in scikit-learn 1.2: given it.
"""

import argparse
import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tinymlaas.paths import C_RUNTIME as RUNTIME, c_runtime_sources

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware"
CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
M4_ROWS = 10

NATIVE_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
int bench_predict(const float *x);
int main(int argc, char **argv) {
    int n = atoi(argv[2]), f = atoi(argv[3]), r;
    float *x = malloc(sizeof(float) * n * f);
    FILE *in = fopen(argv[1], "rb");
    if (!in || fread(x, sizeof(float), (size_t)n * f, in) != (size_t)n * f) return 2;
    for (r = 0; r < n; r++) printf("%d\n", bench_predict(x + r * f));
    return 0;
}
"""

M4_MAIN = r"""
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include "systick.h"
extern void initialise_monitor_handles(void);
int bench_predict(const float *x);
void bench_setup(void);
static const float ROWS[%d][%d] = {%s};
int main(void) {
    uint64_t t0, t1;
    int p[%d], r;
    initialise_monitor_handles();
    bench_setup();
    systick_start();
    p[0] = bench_predict(ROWS[0]);   /* warm-up: also lets SysTick leave its first reload before t0 */
    t0 = systick_cycles();
    for (r = 0; r < %d; r++) p[r] = bench_predict(ROWS[r]);
    t1 = systick_cycles();
    printf("cycles %%lu preds", (unsigned long)(t1 - t0));
    for (r = 0; r < %d; r++) printf(" %%d", p[r]);
    printf("\n");
    exit(0);
}
"""


def _c_floats(rows):
    return ",".join("{%s}" % ",".join(float(v).hex() + "f" for v in np.asarray(r, np.float32)) for r in rows)


# -- the tools: each gives (language, code defining int bench_predict(const float *x), include dirs) ------------

def ours_code(blob):
    """C calling the tinymlaas runtime on the blob, kept in flash as a const array."""
    data = ",".join(str(b) for b in blob)
    return "c", r"""
#include <string.h>
#include "tml.h"
static const unsigned char BLOB[%d] __attribute__((aligned(16))) = {%s};
static unsigned char arena[%d] __attribute__((aligned(16)));
static tml_model model;
void bench_setup(void) { tml_load(&model, BLOB, sizeof BLOB, arena, sizeof arena); }
int bench_predict(const float *x) {
    tml_tensor in, out;
    int32_t best = 0, k, n;
    if (!model.loaded) bench_setup();
    tml_tensor_get(&model, tml_input_index(&model, 0), &in);
    tml_tensor_get(&model, tml_output_index(&model, 0), &out);
    memcpy(arena + in.offset, x, in.bytes);
    tml_invoke(&model);
    n = (int32_t)(out.bytes / 4u);
    for (k = 1; k < n; k++) {
        if (out.dtype == TML_INT32 ? ((int32_t *)(arena + out.offset))[k] > ((int32_t *)(arena + out.offset))[best]
                                   : ((float *)(arena + out.offset))[k] > ((float *)(arena + out.offset))[best])
            best = k;
    }
    return best;
}
""" % (len(blob), data, max(_arena(blob), 16)), [RUNTIME]


def _arena(blob):
    from tinymlaas.blob.reader import parse
    return parse(blob).arena_bytes


def micromlgen_code(model, n_features):
    import micromlgen
    if type(model).__name__ == "GaussianNB" and not hasattr(model, "sigma_"):
        model.sigma_ = model.var_
    code = "#include <stdint.h>\n#include <math.h>\n" + micromlgen.port(model).replace("#pragma once", "")  # Arduino
    cls = re.search(r"class (\w+)", code).group(1)
    return "c++", code + """
static Eloquent::ML::Port::%s clf;
extern "C" void bench_setup(void) {}
extern "C" int bench_predict(const float *x) { return clf.predict((float *)x); }
""" % cls, []


@contextlib.contextmanager
def porter_shims():
    """sklearn-porter 0.7.4 on today's scikit-learn and Python (see the module docstring)."""
    aliases = {"sklearn.tree.tree": "sklearn.tree", "sklearn.svm.classes": "sklearn.svm",
               "sklearn.ensemble.weight_boosting": "sklearn.ensemble", "sklearn.ensemble.forest": "sklearn.ensemble",
               "sklearn.neighbors.classification": "sklearn.neighbors",
               "sklearn.neural_network.multilayer_perceptron": "sklearn.neural_network",
               "sklearn.linear_model.logistic": "sklearn.linear_model",
               "sklearn.linear_model.stochastic_gradient": "sklearn.linear_model",
               "sklearn.linear_model.passive_aggressive": "sklearn.linear_model",
               "sklearn.linear_model.perceptron": "sklearn.linear_model",
               "sklearn.linear_model.ridge": "sklearn.linear_model", "sklearn.ensemble.bagging": "sklearn.ensemble",
               "sklearn.ensemble.gradient_boosting": "sklearn.ensemble"}
    added = [k for k in aliases if k not in sys.modules]
    for old in added:
        sys.modules[old] = importlib.import_module(aliases[old])
    load = json.load
    json.load = lambda f, encoding=None, **kw: load(f, **kw)
    try:
        yield
    finally:
        json.load = load
        for old in added:
            sys.modules.pop(old, None)


def porter_code(model, n_features):
    if type(model).__name__ != "SVC":
        raise NotImplementedError
    with porter_shims():
        from sklearn_porter import Porter
        code = Porter(model, language="c").export()
    return "c", "#define main porter_main\n" + code + """
void bench_setup(void) {}
int bench_predict(const float *x) { double f[%d]; int i; for (i = 0; i < %d; i++) f[i] = x[i]; return predict(f); }
""" % (n_features, n_features), []


def m2cgen_code(model, n_features):
    import m2cgen
    code = m2cgen.export_to_c(model)          # NotImplementedError for GaussianNB and k-NN
    n_classes = len(model.classes_)
    if n_classes == 2:                         # double score(double *): decision_function, class 1 when > 0
        call = "return score(f) > 0;"
    else:
        call = "double o[%d]; int k, b = 0; score(f, o); for (k = 1; k < %d; k++) if (o[k] > o[b]) b = k; return b;" % (
            n_classes, n_classes)
    return "c", code + """
void bench_setup(void) {}
int bench_predict(const float *x) { double f[%d]; int i; for (i = 0; i < %d; i++) f[i] = x[i]; %s }
""" % (n_features, n_features, call), []


def emlearn_code(model, n_features):
    import emlearn
    kind = type(model).__name__
    if kind not in ("GaussianNB", "KNeighborsClassifier"):
        raise NotImplementedError
    code = emlearn.convert(model).save(name="model")
    if kind == "GaussianNB":
        call = "return model_predict(x, %d);" % n_features
    else:                                      # int16 features (emlearn's k-NN tables are int16)
        n = len(model._fit_X)
        call = ("static EmlNeighborsDistanceItem d[%d]; int16_t f[%d], out = -1; int i; "
                "for (i = 0; i < %d; i++) f[i] = (int16_t)x[i]; "
                "eml_neighbors_predict(&model, f, %d, d, %d, &out); return out;" % (n, n_features, n_features,
                                                                                 n_features, n))
    return "c", code + "\nvoid bench_setup(void) {}\nint bench_predict(const float *x) { %s }\n" % call, \
        [Path(emlearn.includedir)]


# -- building and running ------------------------------------------------------------------------------------------

def _compile(tmp, lang, code, includes, main, cross, opt):
    src = tmp / ("model.cpp" if lang == "c++" else "model.c")
    src.write_text(code)
    (tmp / "main.c").write_text(main)
    inc = sum((["-I", str(d)] for d in includes), [])
    if cross:
        gcc, gxx = "arm-none-eabi-gcc", "arm-none-eabi-g++"
        flags = CPU + [opt, "-ffunction-sections", "-fdata-sections"]
        objs = []
        for s in [src, tmp / "main.c", FW / "common" / "startup.c", FW / "common" / "systick.c"] + (
                c_runtime_sources()
                if RUNTIME in includes else []):
            obj = tmp / (s.stem + ".o")
            cc = gxx if s.suffix == ".cpp" else gcc
            extra = ["-fno-exceptions", "-fno-rtti"] if s.suffix == ".cpp" else ["-std=c99"] if s.name.startswith(
                "tml_") else []
            r = subprocess.run([cc] + flags + extra + inc + ["-I", str(FW / "common"), "-c", str(s), "-o", str(obj)],
                               capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError("%s: %s" % (s.name, r.stderr[-2000:]))
            objs.append(obj)
        elf = tmp / "bench.elf"
        subprocess.run([gxx if lang == "c++" else gcc] + CPU + ["-nostartfiles", "--specs=rdimon.specs",
                        "-Wl,--gc-sections", "-L", str(FW / "common"), "-T",
                        str(FW / "boards" / "mps2-an386" / "link.ld")] + [str(o) for o in objs] + ["-lm", "-o",
                                                                                                  str(elf)],
                       check=True, capture_output=True)
        return elf
    exe = tmp / "native"
    cc = "c++" if lang == "c++" else "cc"
    srcs = [str(src)] + ([str(p) for p in c_runtime_sources()]
                         if RUNTIME in includes else [])
    if lang == "c++":
        subprocess.run(["cc", "-O2", "-c", str(tmp / "main.c"), "-o", str(tmp / "main.o")], check=True)
        subprocess.run([cc, "-O2"] + inc + srcs + [str(tmp / "main.o"), "-lm", "-o", str(exe)], check=True,
                       capture_output=True)
    else:
        subprocess.run([cc, "-O2", "-std=gnu99"] + inc + srcs + [str(tmp / "main.c"), "-lm", "-o", str(exe)],
                       check=True, capture_output=True)
    return exe


def m4_bytes(lang, code, includes):
    """text + data of the model's code for Cortex-M4 (-Os); for ours, None (the blob is the model)."""
    if RUNTIME in includes:
        return None
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / ("m.cpp" if lang == "c++" else "m.c")
        src.write_text(code)
        cc = "arm-none-eabi-g++" if lang == "c++" else "arm-none-eabi-gcc"
        extra = ["-fno-exceptions", "-fno-rtti"] if lang == "c++" else []
        subprocess.run([cc] + CPU + ["-Os", "-ffunction-sections", "-fdata-sections"] + extra +
                       sum((["-I", str(i)] for i in includes), []) + ["-c", str(src), "-o", str(src) + ".o"],
                       check=True, capture_output=True)
        out = subprocess.run(["arm-none-eabi-size", str(src) + ".o"], check=True, capture_output=True,
                             text=True).stdout.splitlines()[1].split()
        return int(out[0]) + int(out[1])


def native_predictions(lang, code, includes, x):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        exe = _compile(tmp, lang, code, includes, NATIVE_MAIN, cross=False, opt="-O2")
        (tmp / "x.bin").write_bytes(np.ascontiguousarray(x, np.float32).tobytes())
        out = subprocess.run([str(exe), str(tmp / "x.bin"), str(len(x)), str(x.shape[1])], check=True,
                             capture_output=True, text=True).stdout
    return np.array([int(v) for v in out.split()])


def m4_instructions(lang, code, includes, rows):
    """(instructions per inference, predictions) of the code in the bare-metal harness under QEMU."""
    from tinymlaas.devices.qemu import BOARDS, qemu_binary
    r, f = rows.shape
    main = M4_MAIN % (r, f, _c_floats(rows), r, r, r)
    with tempfile.TemporaryDirectory() as d:
        elf = _compile(Path(d), lang, code, includes, main, cross=True, opt="-O2")
        out = subprocess.run([qemu_binary(), "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null",
                              "-icount", "shift=0,align=off,sleep=off", "-semihosting", "-kernel", str(elf)],
                             capture_output=True, text=True, timeout=600).stdout
    line = next(x for x in out.splitlines() if x.startswith("cycles "))
    words = line.split()
    per_tick = 1e9 / BOARDS["mps2-an386"].qemu_systick_hz
    return round(int(words[1]) * per_tick / r), [int(v) for v in words[3:]]


# -- the run -------------------------------------------------------------------------------------------------------

def datasets():
    from sklearn.datasets import load_breast_cancer, load_iris, load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    out = {}
    for name, loader in (("iris", load_iris), ("wine", load_wine), ("breast_cancer", load_breast_cancer)):
        x, y = loader(return_X_y=True)
        x_tr, x_te, y_tr, y_te = train_test_split(x.astype(np.float32), y, test_size=0.3, random_state=0, stratify=y)
        sc = StandardScaler().fit(x_tr)
        out[name] = (x_tr, x_te, y_tr)
        out[name + " scaled"] = (sc.transform(x_tr).astype(np.float32), sc.transform(x_te).astype(np.float32), y_tr)
    return out


def models():
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    # explicit gammas: micromlgen refuses gamma="scale"
    return [("SVC rbf", "breast_cancer scaled", SVC(gamma=0.03)),
            ("SVC linear", "breast_cancer scaled", SVC(kernel="linear", gamma=0.03)),
            ("SVC poly 3", "wine scaled", SVC(kernel="poly", gamma=0.08)), ("SVC rbf", "iris", SVC(gamma=0.2)),
            ("GaussianNB", "wine", GaussianNB()), ("k-NN 5", "iris", KNeighborsClassifier(5)),
            ("k-NN 5 distance", "wine scaled", KNeighborsClassifier(5, weights="distance"))]


TOOLS = [("micromlgen", micromlgen_code), ("sklearn-porter", porter_code), ("m2cgen", m2cgen_code),
         ("emlearn", emlearn_code)]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-m4", action="store_true", help="skip the QEMU instruction counts")
    args, _ = ap.parse_known_args(argv)
    from tinymlaas.backends.classic import compile_estimator
    from tinymlaas.devices.cruntime import Model
    from tinymlaas.verify.micropython import MicroPythonRuntime
    warnings.filterwarnings("ignore")
    m4 = not args.no_m4 and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")
    data = datasets()
    print("| model (data) | ours: blob B / agree / mpy us / M4 instr | " +
          " | ".join("%s: M4 B / agree / M4 instr" % t for t, _ in TOOLS) + " |")
    print("|---|---|" + "---|" * len(TOOLS))
    for label, dname, model in models():
        x_tr, x_te, y_tr = data[dname]
        model.fit(x_tr, y_tr)
        want = model.predict(x_te)
        blob = compile_estimator(model)[0]
        cm = Model(blob)
        pred = np.array([int(np.argmax(cm.invoke([r[None, :]])[0])) for r in x_te])
        agree = np.mean(model.classes_[pred] == want)
        rt = MicroPythonRuntime(heap="256k")
        rt.run(blob, [[r[None, :]] for r in x_te[:30]])
        cells = ["%s / %.3f / %.0f / %s" % (f"{len(blob):,}", agree, min(rt.last_us),
                                            "{:,}".format(m4_instructions(*ours_code(blob), x_te[:M4_ROWS])[0])
                                            if m4 else "-")]
        for _, make in TOOLS:
            try:
                lang, code, inc = make(model, x_te.shape[1])
            except (NotImplementedError, TypeError, ValueError, AttributeError):
                cells.append("not supported")
                continue
            size = m4_bytes(lang, code, inc)
            got = native_predictions(lang, code, inc, x_te)
            a = np.mean(model.classes_[got] == want)
            instr = "{:,}".format(m4_instructions(lang, code, inc, x_te[:M4_ROWS])[0]) if m4 else "-"
            cells.append("%s / %.3f / %s" % (f"{size:,}", a, instr))
        print("| %s (%s) | %s |" % (label, dname, " | ".join(cells)))
        sys.stdout.flush()
    sizes = []
    for src in ("tml_classic.c", "tml_load.c"):
        obj = Path(tempfile.gettempdir()) / ("classic_size_%s.o" % os.getpid())
        subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-Os"] + CPU + ["-ffunction-sections", "-I", str(RUNTIME),
                        "-c", str(RUNTIME / src), "-o", str(obj)], check=True)
        text = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True,
                              check=True).stdout.splitlines()[1].split()
        sizes.append("%s %d B" % (src, int(text[0]) + int(text[1])))
        obj.unlink()
    print("\nshared runtime code for Cortex-M4 (-Os): " + ", ".join(sizes))


if __name__ == "__main__":
    main(sys.argv[1:])
