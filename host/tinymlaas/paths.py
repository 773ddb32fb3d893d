"""Where the repository's non-Python-package folders are (device code, firmware, shared vectors)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INFERENCE_MODULE = REPO / "inference_module"
LWM2M_CLIENT = REPO / "lwm2m_client"
FIRMWARE = REPO / "firmware"
VECTORS = REPO / "tests" / "vectors"
C_RUNTIME = INFERENCE_MODULE / "c"


def c_runtime_sources(var="TML_CORE_SRCS"):
    """The C runtime's source files as inference_module/c/sources.mk names them (TML_CORE_SRCS: what runs a blob;
    TML_SIG_SRCS: the signed-manifest verifier), so builds driven from Python list the files Make does."""
    defs = {}
    for line in (C_RUNTIME / "sources.mk").read_text().splitlines():
        if ":=" in line and not line.startswith("#"):
            name, words = (part.strip() for part in line.split(":=", 1))
            defs[name] = [w for word in words.split() for w in (defs[word[2:-1]] if word.startswith("$(") else [word])]
    return [C_RUNTIME / n for n in defs[var]]
# MLPerf Tiny reference models live beside the repository (see ../shared/ANCHORS.md).
MLPERF_DIR = REPO.parent / "shared" / "models" / "mlperf-tiny"
MLPERF_MODELS = {
    "kws": "kws_ref_model.tflite",
    "vww": "vww_96_int8.tflite",
    "ic": "pretrainedResnet_quant.tflite",
    "ad": "ad01_int8.tflite",
    "sww": "str_ww_ref_model.tflite",
}


def mlperf_model(key):
    return MLPERF_DIR / MLPERF_MODELS[key]
