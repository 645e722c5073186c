"""A box's server processes: each one's share of the box, their ports, a sibling's URL."""

from __future__ import annotations

import pytest

from augstream._discovery import Endpoint, _at_port
from augstream_service import Settings
from augstream_service.siblings import ports_of, share


def test_each_server_gets_its_share_of_the_box() -> None:
    box = Settings(
        threads=32,
        processes=8,
        byte_cache_bytes=400,
        image_cache_bytes=4000,
        batch_cache_bytes=40,
        memory_budget_bytes=64 << 30,
    )
    one = share(box, 4)
    assert (one.threads, one.processes) == (8, 2)
    assert (one.byte_cache_bytes, one.image_cache_bytes, one.batch_cache_bytes) == (100, 1000, 10)
    assert one.memory_budget_bytes == 16 << 30
    assert share(box, 1) is box
    # Never below one thread; worker processes round up, threads-only stays threads-only.
    assert (share(Settings(threads=2, processes=1), 4).threads, share(box, 3).processes) == (1, 3)
    assert share(Settings(threads=4, processes=0), 2).processes == 0


def test_the_ports_of_a_box() -> None:
    assert ports_of(8080, 1, None) == []
    assert ports_of(8080, 3, None) == [8080, 8081, 8082]
    assert ports_of(8081, 3, "8080,8081,8082") == [8080, 8081, 8082]  # a sibling's view
    with pytest.raises(ValueError, match="past port 65535"):
        ports_of(65534, 3, None)
    with pytest.raises(ValueError, match="needs a --port"):
        ports_of(0, 2, None)


@pytest.mark.parametrize(
    ("endpoint", "address", "host"),
    [
        (Endpoint("http://127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8080"),
         "http://127.0.0.1:8081", "127.0.0.1:8081"),
        (Endpoint("http://data.lab:8080", "http://10.0.0.7:8080", "data.lab:8080"),
         "http://10.0.0.7:8081", "data.lab:8081"),
        (Endpoint("http://[::1]:8080", "http://[::1]:8080", "[::1]:8080"),
         "http://[::1]:8081", "[::1]:8081"),
    ],
)  # fmt: skip
def test_a_siblings_endpoint_is_the_same_address_and_name_on_its_port(
    endpoint: Endpoint, address: str, host: str
) -> None:
    sibling = _at_port(endpoint, 8081)
    assert (sibling.url, sibling.address, sibling.host) == (endpoint.url, address, host)
    assert sibling.sibling and not endpoint.sibling
