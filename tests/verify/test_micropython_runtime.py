"""The MicroPython runtime (real `micropython` process, viper kernels) is bit-exact with TFLite Micro."""

import pytest

from tinymlaas.commands.verify import verify
from tinymlaas.verify.micropython import MicroPythonRuntime
from tinymlaas.verify.runtimes import BlobRejected
from verify_paths import CORPUS, VECTORS, corpus_models

# Every corpus model, including fc_rows_dynamic_batch: its ADD has a const operand (the bias Keras 3 adds with a
# plain ADD on a dynamic-batch Dense), which spec §5 allows and tinyml runs (judged by LiteRT's reference kernels,
# since TFLM cannot load that model).
@pytest.mark.parametrize("name", corpus_models())
def test_corpus_model_bit_exact(name, compiled):
    path = CORPUS / (name + ".tflite")
    r = verify(compiled(path), path.read_bytes(), "micropython", n_inputs=3, seed=21)
    assert r["bit_exact"], r["first_mismatch"]


@pytest.mark.parametrize("key, n", [("ad", 4), ("kws", 2)])
def test_mlperf_bit_exact(key, n, mlperf, compiled):
    path = mlperf(key)
    rt = MicroPythonRuntime(heap="512k")
    r = verify(compiled(path), path.read_bytes(), rt, n_inputs=n, seed=2)
    assert r["bit_exact"], r["first_mismatch"]
    assert len(rt.last_us) == n and all(us > 0 for us in rt.last_us)


def test_streamed_from_file_bit_exact(mlperf, compiled):
    """Loading by path streams weights through a bounded buffer instead of holding the blob in RAM."""
    path = mlperf("ad")
    r = verify(compiled(path), path.read_bytes(), MicroPythonRuntime(heap="256k", stream=True), n_inputs=2)
    assert r["bit_exact"], r["first_mismatch"]


@pytest.mark.parametrize("name", ["bad_magic", "wrong_version", "wrong_abi", "bad_hash", "truncated"])
def test_loader_rejects_corrupt_vectors(name):
    import numpy as np

    blob = (VECTORS / "corrupt" / (name + ".blob")).read_bytes()
    with pytest.raises(BlobRejected):
        MicroPythonRuntime().run(blob, [[np.zeros((1, 9, 7, 2), np.int8)]])
