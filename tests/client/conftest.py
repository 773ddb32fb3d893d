import pytest

from coap_test_peer import Peer


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


def pytest_configure(config):
    # also wanted in pyproject.toml's markers list (Makefile `fuzz` target selects -m fuzz)
    config.addinivalue_line("markers", "fuzz: seeded fuzzing; long counts with --fuzz-long")
