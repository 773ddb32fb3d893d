"""Fixtures for the verification tests: corpus/MLPerf model paths and a per-session compile cache."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_compiled = {}


@pytest.fixture(scope="session")
def compiled():
    """compiled(path) -> blob bytes, compiled once per session."""
    from tinymlaas.compiler import compile_tflite

    def get(path):
        key = str(path)
        if key not in _compiled:
            _compiled[key] = compile_tflite(key).blob
        return _compiled[key]

    return get
