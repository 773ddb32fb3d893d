"""Where the repository's non-Python-package folders are (device code, firmware, shared vectors)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INFERENCE_MODULE = REPO / "inference_module"
LWM2M_CLIENT = REPO / "lwm2m_client"
FIRMWARE = REPO / "firmware"
VECTORS = REPO / "tests" / "vectors"
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
