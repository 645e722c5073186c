"""How a client finds a box's other server processes: a server's ``sibling_ports`` name them,
each is asked itself (with the client's key) and only those that answer for the same box take
part; a port that answers nothing, or another box's server, is left out without a failure."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from augstream import Client
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

KEY = "sibling-key"
SPEC = dict(dataset="pets", target_size=(16, 16), batch_size=3, seed=2, epochs=1)


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@pytest.fixture
def box(image_root: Path, tmp_path: Path) -> Iterator[list[int]]:
    """Two servers with keys that name three ports as their box: theirs and one unused;
    and a server of another box on a fourth port (it names no siblings)."""
    a, b, unused, other = _free_ports(4)
    with ExitStack() as stack:
        for port, siblings in ((a, [a, b, unused]), (b, [a, b, unused]), (other, [])):
            settings = Settings(
                datasets=[image_root], threads=1, upload_dir=tmp_path / str(port),
                api_keys=[KEY], sibling_ports=siblings,
            )  # fmt: skip
            stack.enter_context(BackgroundServer(create_app(settings), port=port))
        yield [a, b, unused, other]


def test_a_client_given_one_port_streams_from_the_boxs_servers_that_answer(
    box: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, _, other = box
    info = httpx.get(f"http://127.0.0.1:{a}/v1/server", headers={"Authorization": f"Bearer {KEY}"})
    assert info.json()["sibling_ports"] == [a, b, box[2]]
    # What it runs with, for an operator checking a running server (here: set by the test).
    sizing = info.json()["sizing"]
    assert (sizing["threads"], sizing["processes"], sizing["worker_threads"]) == (1, 0, None)
    assert sizing["servers"] == 3 and sizing["allowed_cores"] >= 1
    with Client(f"http://127.0.0.1:{a}", api_key=KEY) as client:
        # Nothing is asked before a stream (a server alone costs no request more)...
        assert [httpx.URL(e.address).port for e in client._replicas.endpoints()] == [a]
        with client.stream(**SPEC) as stream:
            batches = [stream.next_batch(timeout=60) for _ in range(len(stream))]
            made = {httpx.URL(url).port: n for url, n in stream.replicas.items()}
        # ... whose header names the box: the unused port is not asked to stream.
        assert [httpx.URL(e.address).port for e in client._replicas.endpoints()] == [a, b]
    assert sum(made.values()) == len(batches) and set(made) <= {a, b}
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text
    # A server that names no siblings is streamed from alone.
    with Client(f"http://127.0.0.1:{other}", api_key=KEY) as client:
        with client.stream(**SPEC) as stream:
            stream.next_batch(timeout=60)
        assert [httpx.URL(e.address).port for e in client._replicas.endpoints()] == [other]


def test_a_sibling_that_was_starting_when_asked_joins_once_it_answers(
    image_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A box's first process comes up before its siblings: a client that asked meanwhile
    asks again after a back-off, and takes the sibling in once it answers."""
    monkeypatch.setattr("augstream._discovery._ASK_AGAIN_S", 0.2)
    a, b = _free_ports(2)

    def app(port: int) -> BackgroundServer:
        settings = Settings(
            datasets=[image_root], threads=1, upload_dir=tmp_path / str(port),
            sibling_ports=[a, b],
        )  # fmt: skip
        return BackgroundServer(create_app(settings), port=port)

    with app(a), Client(f"http://127.0.0.1:{a}") as client:
        replicas = client._replicas
        (first,) = replicas.endpoints()
        assert replicas.learn(first, [a, b])  # as a stream's header tells it
        assert [httpx.URL(e.address).port for e in client._replicas.endpoints()] == [a]
        with app(b):
            assert [httpx.URL(e.address).port for e in client._replicas.endpoints()] == [a]
            time.sleep(0.3)
            assert [httpx.URL(e.address).port for e in client._replicas.endpoints()] == [a, b]
