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
}
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


def main():
    import numpy as np

    from tinymlaas.blob import reader
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
        parsed = reader.parse(blob)
        (HERE / (name + ".blob")).write_bytes(blob)
        (HERE / (name + ".in.bin")).write_bytes(b"".join(np.ascontiguousarray(x).tobytes() for s in sets for x in s))
        (HERE / (name + ".out.bin")).write_bytes(b"".join(np.ascontiguousarray(y).tobytes() for s in outs for y in s))
        from tinymlaas.blob import format as F

        ins = [parsed.tensors[i] for i in parsed.inputs]
        outs_t = [parsed.tensors[i] for i in parsed.outputs]
        manifest["models"].append({
            "name": name,
            "source": source,
            "blob": name + ".blob",
            "sha256": hashlib.sha256(blob).hexdigest(),
            "count": COUNT,
            "inputs": name + ".in.bin",
            "input_bytes": [t.nbytes for t in ins],
            "input_dtypes": [F.DTYPE_NAMES[t.dtype] for t in ins],
            "outputs": name + ".out.bin",
            "output_bytes": [t.nbytes for t in outs_t],
            "output_dtypes": [F.DTYPE_NAMES[t.dtype] for t in outs_t],
            "reference": reference,
        })
        blobs[name] = blob
        print("%-26s blob %7d B  %s" % (name, len(blob), reference))
    (HERE / "corrupt").mkdir(exist_ok=True)
    for cname, data, kind, mentions in corruptions(blobs[CORRUPT_BASE]):
        (HERE / "corrupt" / (cname + ".blob")).write_bytes(data)
        manifest["corrupt"].append({"name": cname, "blob": "corrupt/" + cname + ".blob", "kind": kind,
                                    "mentions": mentions, "derived_from": CORRUPT_BASE})
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
