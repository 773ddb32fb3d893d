import sys
from pathlib import Path

import numpy as np
import pytest

# tflite_builder.py is a helper module of this folder.
sys.path.insert(0, str(Path(__file__).parent))

from tinymlaas.paths import REPO  # noqa: E402

CORPUS = REPO / "tests" / "corpus" / "models"
# TFLite Micro's arena for the five MLPerf Tiny models (print_allocations; non-persistent head), ANCHORS.md.
TFLM_HEAD_ARENA = {"kws": 16000, "vww": 73728, "ic": 49152, "ad": 768, "sww": 6656}
TFLM_TOTAL_ARENA = {"kws": 24272, "vww": 103680, "ic": 55984, "ad": 3984, "sww": 16640}
MLPERF_MACS = {"kws": 2656768, "vww": 7489664, "ic": 12501632, "ad": 264192, "sww": 826368}


@pytest.fixture
def corpus():
    def get(name):
        p = CORPUS / (name + ".tflite")
        if not p.is_file():
            pytest.fail("corpus model %s missing (tests/corpus/generate.py)" % p)
        return p
    return get


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
