"""Build the shared test vectors every blob reader (host, MicroPython, C) is tested against.

    python tests/vectors/generate.py

For each source model: the compiled blob, seeded inputs and TFLite Micro's outputs, as raw files, plus
deliberately corrupted blobs with the error each reader must report. Everything is described by manifest.json:

    {"format_version": 1,
     "models": [{"name", "source", "blob", "sha256", "count",
                 "inputs": file, "input_bytes": [bytes per graph input], "input_dtypes": [...],
                 "outputs": file, "output_bytes": [...], "output_dtypes": [...], "reference": "tflite-micro"}],
     "corrupt": [{"name", "blob", "kind", "mentions": [strings the error message must contain]}]}

`inputs` holds `count` input sets back to back, each the graph inputs' raw bytes in graph order; `outputs` likewise.
A reader passes when it loads every model blob, reproduces every output byte for byte, and rejects every corrupt
blob with an error of the stated kind.
"""

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = REPO / "tests" / "corpus" / "models"
MLPERF = REPO.parent / "shared" / "models" / "mlperf-tiny"
SEED = 7
COUNT = 3

# name -> source model. softmax_* pin down the gemmlowp reciprocal sequence of SOFTMAX (docs/blob-format.md §5).
SOURCES = {
    "conv_same_stride2": CORPUS / "conv_same_stride2.tflite",
    "depthwise_dm2": CORPUS / "depthwise_dm2.tflite",
    "avgpool_same": CORPUS / "avgpool_same.tflite",
    "add_broadcast_two_inputs": CORPUS / "add_broadcast_two_inputs.tflite",
    "pad_conv": CORPUS / "pad_conv.tflite",
    "concat_channels": CORPUS / "concat_channels.tflite",
    "fc_logistic_tanh": CORPUS / "fc_logistic_tanh.tflite",
    "softmax_fc": CORPUS / "fc_no_bias_softmax.tflite",
    "softmax_rows": CORPUS / "reshape_softmax.tflite",
    "float_io_cnn": CORPUS / "float_io_cnn.tflite",
    "mlperf_ad": MLPERF / "ad01_int8.tflite",
    # PATCH stages (§12), as the compiler chooses them: a conv run row by row over its own input (MobileNetV2 block),
    # a depthwise + pointwise pair run 4 rows at a time (streaming WW)
    "patch_mbv2_block": REPO / "tests" / "compiler" / "models" / "mbv2_block.tflite",
    "patch_sww": MLPERF / "str_ww_ref_model.tflite",
}
PATCHED = ("patch_mbv2_block", "patch_sww")
CORRUPT_BASE = "conv_same_stride2"
TREES = "trees_forest"  # a scikit-learn forest (TREE_ENSEMBLE, §10): float32 features in, int32 class scores out


def tree_vector():
    """(blob, input sets, output sets, source text) of a small random forest; outputs from the host statement of
    TREE_ENSEMBLE (backends/trees.reference_scores). Inputs include -0.0, +0.0 and values on split thresholds."""
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from tinymlaas.backends.trees import compile_estimator, reference_scores

    x, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=SEED)
    model = RandomForestClassifier(n_estimators=4, max_depth=5, random_state=SEED).fit(x, y)
    blob, tables = compile_estimator(model, TREES)
    rows = x[:COUNT].astype(np.float32)
    rows[0, :2] = (-0.0, 0.0)
    rows[1, 0] = np.float32(model.estimators_[0].tree_.threshold[0])  # exactly on the first split
    sets = [[r[None, :]] for r in rows]
    outs = [[s[None, :].astype(np.int32)] for s in reference_scores(tables, rows)]
    return blob, sets, outs, "sklearn RandomForestClassifier(n_estimators=4, max_depth=5) in generate.py"


CLASSIC = ("classic_svc_rbf", "classic_knn_manhattan", "classic_gnb_affine", "classic_poly_votes")


def classic_vectors():
    """[(name, blob, input sets, output sets, source)] for §11's ops, from the host statement (blob/classic.py).
    Their arithmetic is float (binary32 in C, double in the unix port's MicroPython), so every vector is built to
    give the same bytes in any of them: outputs that are integer votes with no decision near 0, or sums of
    dyadic values that are exact in binary32. They pin down the rules floats cannot blur: ties between equal
    distances go to the lower row, a zero distance takes all the weight, a decision of exactly 0 votes for the
    second class of the pair, libsvm's order of class pairs, and AFFINE's x*m + o."""
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from tinymlaas.backends.classic import ClassicProgram, compile_estimator, svc_decision_bound, write_classic_blob
    from tinymlaas.blob import classic as C
    from tinymlaas.blob import format as F
    from tinymlaas.blob.reference import Executor

    def run(blob, rows):
        ex = Executor(blob)
        return [[r[None, :]] for r in rows], [[ex.run([r[None, :]])[0]] for r in rows]

    out = []
    x, y = load_iris(return_X_y=True)
    svc = make_pipeline(StandardScaler(), SVC(gamma=0.5)).fit(x[::2], y[::2])
    rows = x[1::2][[3, 30, 60]].astype(np.float32)
    dec, bound = svc_decision_bound(svc, rows)
    assert np.all(np.abs(dec) > 100 * bound)              # votes far from any rounding
    blob = compile_estimator(svc, "classic_svc_rbf")[0]
    out.append(("classic_svc_rbf", blob) + run(blob, rows) +
               ("sklearn Pipeline(StandardScaler, SVC(rbf, gamma=0.5)) on even iris rows, in generate.py",))
    # k-NN, Manhattan distances of quarter-integers (exact), distance weights 1/d with d powers of two
    train = np.array([[0, 1], [1, 0], [0, -1], [-1, 0], [2, 2], [0, 0.25]], dtype=np.float32)
    knn = KNeighborsClassifier(3, weights="distance", p=1).fit(train, [2, 1, 1, 0, 0, 2])
    rows = np.array([[0, 0], [0, 0.25], [2, 3]], dtype=np.float32)   # ties at 1; a zero distance; ties at 4
    blob = compile_estimator(knn, "classic_knn_manhattan")[0]
    out.append(("classic_knn_manhattan", blob) + run(blob, rows) +
               ("KNeighborsClassifier(3, weights='distance', p=1) on 6 dyadic rows, in generate.py",))
    # AFFINE then GAUSSIAN_NB with dyadic tables: every product and sum exact in binary32
    prog = ClassicProgram("GaussianNB", 3, ["a", "b", "c"], "log-joint")
    prog.add("AFFINE", [np.array([0.5, 2, -1], np.float32), np.array([0.25, -1, 0], np.float32)], [],
             F.DTYPE_FLOAT32, 3)
    prog.add("GAUSSIAN_NB", [np.array([[0, 1, 2], [0.5, -0.5, 0], [-2, 0.25, 1]], np.float32),
                             np.array([[0.5, 0.25, 1], [2, 0.5, 0.125], [1, 1, 1]], np.float32),
                             np.array([-1.5, -2.25, 0.75], np.float32)], [], F.DTYPE_FLOAT32, 3)
    blob = write_classic_blob(prog, "classic_gnb_affine")[0]
    out.append(("classic_gnb_affine", blob) + run(blob, np.array([[1, 0.5, -2], [0, 0, 0], [-0.5, 1.5, 0.25]],
                                                                 np.float32)) +
               ("hand-made AFFINE + GAUSSIAN_NB tables (dyadic), in generate.py",))
    # KERNEL(poly) then SVM_VOTE over 3 classes, dyadic: one pair's decision is exactly 0 (votes the second class)
    prog = ClassicProgram("SVC", 2, ["a", "b", "c"], "votes")
    prog.add("KERNEL", [np.array([[1, 0], [0, 1], [1, 1], [-1, 0.5]], np.float32)],
             [C.KERNEL_POLY, C.f32_bits(0.5), C.f32_bits(1.0), 3], F.DTYPE_FLOAT32, 4)
    prog.add("SVM_VOTE", [np.array([[1, -1, 0.5, 0], [0.25, 0, -1, 1]], np.float32),
                          np.array([-0.5, -2.5, 0.125], np.float32), np.array([0, 2, 3, 4], np.int32)], [],
             F.DTYPE_INT32, 3)
    blob = write_classic_blob(prog, "classic_poly_votes")[0]
    out.append(("classic_poly_votes", blob) + run(blob, np.array([[0, 0], [1, -1], [2, 0.5]], np.float32)) +
               ("hand-made KERNEL(poly, gamma 0.5, coef0 1, degree 3) + SVM_VOTE tables (dyadic), in generate.py",))
    return out


def rehash(blob):
    """Recompute the header's SHA-256 after an edit (so the edit, not the hash, is what a reader must catch)."""
    from tinymlaas.blob import format as F

    b = bytearray(blob)
    b[F.SHA256_OFFSET:F.SHA256_OFFSET + 32] = hashlib.sha256(bytes(b[F.HEADER_BYTES:])).digest()
    return bytes(b)


def corruptions(blob):
    """(name, bytes, kind, mentions) for each deliberately broken blob derived from a valid one."""
    from tinymlaas.blob import format as F

    def patch(offset, fmt, value, fix_hash=False):
        b = bytearray(blob)
        struct.pack_into(fmt, b, offset, value)
        return rehash(b) if fix_hash else bytes(b)

    flipped = bytearray(blob)
    flipped[-1] ^= 0x40  # a constant byte: only the hash can tell
    return [
        ("bad_magic", b"TMLX" + blob[4:], "magic", ["magic"]),
        ("wrong_version", patch(4, "<H", 2), "format_version", ["version", "2", "1"]),
        ("wrong_abi", patch(12, "<H", 7), "abi", ["ABI", "7"]),
        ("bad_hash", bytes(flipped), "sha256", ["SHA-256"]),
        ("truncated", blob[:len(blob) - 100], "total_bytes", ["total_bytes"]),
        ("short_header", blob[:40], "header", ["header"]),
        ("arena_too_small", patch(20, "<I", 1, fix_hash=False), "tensor", ["arena"]),
    ]


def write_vector(name, blob, sets, outs, source, reference):
    """The three files of one model vector; returns its manifest entry."""
    import numpy as np

    from tinymlaas.blob import format as F
    from tinymlaas.blob import reader

    parsed = reader.parse(blob)
    (HERE / (name + ".blob")).write_bytes(blob)
    (HERE / (name + ".in.bin")).write_bytes(b"".join(np.ascontiguousarray(x).tobytes() for s in sets for x in s))
    (HERE / (name + ".out.bin")).write_bytes(b"".join(np.ascontiguousarray(y).tobytes() for s in outs for y in s))
    ins = [parsed.tensors[i] for i in parsed.inputs]
    outs_t = [parsed.tensors[i] for i in parsed.outputs]
    print("%-26s blob %7d B  %s" % (name, len(blob), reference))
    return {
        "name": name,
        "source": source,
        "blob": name + ".blob",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "count": len(sets),
        "inputs": name + ".in.bin",
        "input_bytes": [t.nbytes for t in ins],
        "input_dtypes": [F.DTYPE_NAMES[t.dtype] for t in ins],
        "outputs": name + ".out.bin",
        "output_bytes": [t.nbytes for t in outs_t],
        "output_dtypes": [F.DTYPE_NAMES[t.dtype] for t in outs_t],
        "reference": reference,
    }


def main_classic():
    """`generate.py --classic`: (re)write only the §11 vectors and their manifest entries, leaving the others."""
    path = HERE / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] not in CLASSIC]
    for name, blob, sets, outs, source in classic_vectors():
        manifest["models"].append(write_vector(name, blob, sets, outs, source, "classic-reference"))
    path.write_text(json.dumps(manifest, indent=1) + "\n")


def main_patch():
    """`generate.py --patch`: (re)write only the PATCH vectors and their manifest entries, leaving the others."""
    from tinymlaas.compiler import compile_tflite
    from tinymlaas.verify import inputs as vin
    from tinymlaas.verify import judge

    path = HERE / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] not in PATCHED]
    for name in PATCHED:
        model = SOURCES[name].read_bytes()
        blob = compile_tflite(model).blob
        sets = vin.random_inputs(vin.input_specs(model), COUNT, SEED)
        ref = judge.load_judge(model)
        manifest["models"].append(write_vector(name, blob, sets, ref.run(sets), os.path.relpath(SOURCES[name], REPO),
                                               ref.name))
    path.write_text(json.dumps(manifest, indent=1) + "\n")


def main():
    from tinymlaas.compiler import compile_tflite
    from tinymlaas.verify import inputs as vin
    from tinymlaas.verify import judge

    manifest = {"format_version": 1, "seed": SEED, "models": [], "corrupt": []}
    blobs = {}
    for name, src in list(SOURCES.items()) + [(TREES, None)]:
        if src is None:
            blob, sets, outs, source = tree_vector()
            reference = "trees-reference"
        else:
            model = src.read_bytes()
            blob = compile_tflite(str(src)).blob
            sets = vin.random_inputs(vin.input_specs(model), COUNT, SEED)
            ref = judge.load_judge(model)
            outs = ref.run(sets)
            source, reference = os.path.relpath(src, REPO), ref.name
        manifest["models"].append(write_vector(name, blob, sets, outs, source, reference))
        blobs[name] = blob
    for name, blob, sets, outs, source in classic_vectors():
        manifest["models"].append(write_vector(name, blob, sets, outs, source, "classic-reference"))
    (HERE / "corrupt").mkdir(exist_ok=True)
    for cname, data, kind, mentions in corruptions(blobs[CORRUPT_BASE]):
        (HERE / "corrupt" / (cname + ".blob")).write_bytes(data)
        manifest["corrupt"].append({"name": cname, "blob": "corrupt/" + cname + ".blob", "kind": kind,
                                    "mentions": mentions, "derived_from": CORRUPT_BASE})
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main_classic() if sys.argv[1:] == ["--classic"] else main_patch() if sys.argv[1:] == ["--patch"]
             else main())
