"""Paths shared by the verification tests."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus" / "models"
VECTORS = REPO / "tests" / "vectors"


def corpus_models():
    return sorted(p.stem for p in CORPUS.glob("*.tflite"))
