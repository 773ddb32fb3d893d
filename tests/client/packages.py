"""Model packages for client tests, built the way the service builds them: `tinymlaas compile` (compiler API),
golden outputs from the host reference executor, `tinymlaas.package.build_package`."""

import functools

import numpy as np

from tinymlaas.blob import reference
from tinymlaas.blob.reader import parse
from tinymlaas.compiler import compile_tflite
from tinymlaas.package import build_package
from tinymlaas.paths import REPO, mlperf_model

CORPUS = REPO / "tests" / "corpus" / "models"


def inputs_for(blob, seed):
    rng = np.random.default_rng(seed)
    b = parse(blob)
    return [rng.integers(-128, 128, size=b.tensors[i].shape, dtype=np.int8) for i in b.inputs]


@functools.lru_cache(maxsize=None)
def package(source, name="model", version="1", n_vectors=2):
    """-> (package bytes, blob bytes, [(inputs, outputs)]) for a corpus model name or an MLPerf key."""
    path = mlperf_model(source) if source in ("kws", "ad", "ic", "vww", "sww") else CORPUS / (source + ".tflite")
    blob = bytes(compile_tflite(path).blob)
    vectors = []
    for k in range(n_vectors):
        ins = inputs_for(blob, k)
        outs = reference.run(blob, ins)
        vectors.append((ins, [np.asarray(o) for o in outs]))
    return build_package(blob, name, version, vectors), blob, vectors


def resigned(source, sequence, name="model", version="1", n_vectors=2):
    """package() signed again with manifest sequence number `sequence`: for tests that install models in turn,
    each install newer than the one before (a device refuses an older or equal sequence for another blob)."""
    _, blob, vectors = package(source, name, version, n_vectors)
    return build_package(blob, name, version, vectors, sequence=sequence)
