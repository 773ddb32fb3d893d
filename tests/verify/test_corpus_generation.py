"""The corpus generator still runs, reproduces a committed model byte for byte, and covers every blob op."""

import importlib.util
import os

from verify_paths import CORPUS, REPO


def load_generator():
    spec = importlib.util.spec_from_file_location("corpus_generate", REPO / "tests" / "corpus" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_regenerated_model_is_identical(tmp_path):
    gen = load_generator()
    (path,) = gen.generate(["pad_conv"], out_dir=tmp_path)
    assert path.read_bytes() == (CORPUS / "pad_conv.tflite").read_bytes()


def test_every_committed_model_has_a_builder_and_is_small():
    gen = load_generator()
    committed = {p.stem for p in CORPUS.glob("*.tflite")}
    assert committed == set(gen.MODELS)
    assert sum(os.path.getsize(p) for p in CORPUS.glob("*.tflite")) < 200_000


def test_corpus_covers_every_blob_op(compiled):
    """Compiled together, the corpus emits every opcode of the spec's int8 op table (§5)."""
    from tinymlaas.blob import format as F
    from tinymlaas.blob.reader import parse

    seen = set()
    tflite_ops = set()
    for p in CORPUS.glob("*.tflite"):
        b = parse(compiled(p))
        seen |= {op.name for op in b.ops}
        tflite_ops |= set(b.meta.get("ops", []))
    assert {s.name for s in F.OPS if s.code <= 15} <= seen
    assert {"LOGISTIC", "TANH", "RELU", "RELU6", "LEAKY_RELU", "HARD_SWISH", "SHAPE", "STRIDED_SLICE", "PACK",
            "RESHAPE", "MEAN", "QUANTIZE", "DEQUANTIZE", "REDUCE_PROD", "GATHER"} <= tflite_ops
