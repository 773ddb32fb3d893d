import pytest

from coap_test_peer import Peer


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()
