"""``augstream serve --servers 2``: two server processes on one box, on consecutive ports; a
client given one of them spreads each stream over both, every sample exactly once and the
bytes one server's, through a sibling's crash (started again) and a stop of the box."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from augstream import Batch, Client, RetryPolicy, Stream
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from benchmarks.comparison.box import children
from tests.reliability.conftest import NO_CACHES, ServerProcess

pytestmark = pytest.mark.slow

SPEC = dict(
    dataset="odd",
    target_size=(48, 48),
    batch_size=4,
    seed=5,
    epochs=2,
    rotation_range=20,
    horizontal_flip=True,
)
PATIENT = RetryPolicy(attempts=30, backoff_s=0.05, max_backoff_s=0.5)


def _all(url: str, on_batch: Any = None, box: bool = True) -> tuple[list[Batch], dict[str, int]]:
    with Client(url, retry=PATIENT) as client, client.stream(**SPEC) as stream:
        got = []
        for _ in range(2 * len(stream)):
            got.append(stream.next_batch(timeout=120))
            if len(got) == 1 and box:
                _joined(stream)
            if on_batch is not None:
                on_batch(len(got), stream)
        with pytest.raises(StopIteration):
            stream.next_batch(timeout=120)
        return got, stream.replicas


def _joined(stream: Stream, timeout: float = 30.0) -> None:
    """Wait until the stream has taken the box's second process in. The first header names
    it and the client joins it within a look of its fleet, but this whole stream is made in
    less time than that; a trainer's steps would give it the time this wait gives."""
    deadline = time.monotonic() + timeout
    while len(stream.replicas) < 2:
        assert time.monotonic() < deadline, f"the sibling never joined: {stream.replicas}"
        time.sleep(0.02)


def _same(got: list[Batch], reference: list[Batch]) -> None:
    assert [(b.epoch, b.index, b.sample_ids) for b in got] == [
        (b.epoch, b.index, b.sample_ids) for b in reference
    ], "a batch missing, twice or out of order"
    for mine, theirs in zip(got, reference, strict=True):
        assert mine.x.tobytes() == theirs.x.tobytes()
        assert mine.y.tobytes() == theirs.y.tobytes()


def _up(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"nothing answers on port {port}")


def _box(server_process: type[ServerProcess], root: Path, **env: str) -> tuple[ServerProcess, int]:
    """``augstream serve --servers 2`` once both its processes answer, and the second's pid."""
    box = server_process(root, AUGSTREAM_SERVERS="2", **env).start()
    _up(box.port + 1)
    assert box.process is not None
    (sibling,) = children(box.process.pid)
    return box, sibling


def _gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                return True  # exited, not yet reaped by its parent
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def reference(odd_root: Path) -> list[Batch]:
    """The stream as one in-process server with one thread makes it."""
    with BackgroundServer(create_app(Settings(datasets=[odd_root], threads=1))) as server:
        return _all(server.url, box=False)[0]


def test_one_stream_is_spread_over_a_boxs_server_processes_as_one_servers_bytes(
    odd_root: Path,
    server_process: type[ServerProcess],
    reference: list[Batch],
    counts: dict[str, Any],
) -> None:
    box, _ = _box(server_process, odd_root, **NO_CACHES)
    infos = [httpx.get(f"http://127.0.0.1:{p}/v1/server").json() for p in (box.port, box.port + 1)]
    assert [info["sibling_ports"] for info in infos] == [[box.port, box.port + 1]] * 2
    # ``--threads 2`` is the box's: one each.
    assert [info["workers"]["workers"] for info in infos] == [1, 1]
    got, made = _all(box.url)
    _same(got, reference)
    ports = {httpx.URL(url).port: n for url, n in made.items()}
    counts.update(batches=len(got), made=ports)
    assert sum(ports.values()) == len(got)
    assert set(ports) == {box.port, box.port + 1} and min(ports.values()) > 0, ports


def test_a_sibling_that_dies_mid_stream_is_started_again_and_a_stop_stops_the_box(
    odd_root: Path,
    server_process: type[ServerProcess],
    reference: list[Batch],
    counts: dict[str, Any],
) -> None:
    box, sibling = _box(server_process, odd_root, **NO_CACHES)

    killed_at = []

    def crash(n: int, stream: Stream) -> None:
        # Once the sibling has made some of the stream, while it holds a grant.
        made = {httpx.URL(url).port: k for url, k in stream.replicas.items()}
        if n >= 10 and made.get(box.port + 1) and not killed_at:
            os.kill(sibling, signal.SIGKILL)
            killed_at.append(n)

    got, made = _all(box.url, crash)
    assert killed_at, f"the sibling made nothing to be killed during: {made}"
    _same(got, reference)
    _up(box.port + 1)  # started again by the first process
    assert box.process is not None
    (again,) = children(box.process.pid)
    assert again != sibling
    counts.update(batches=len(got), made=list(made.values()), killed_at=killed_at[0])
    # A stop of the box (SIGTERM to the process started) stops its siblings too.
    box.kill(signal.SIGTERM)
    assert _gone(again), "the sibling outlived the box's stop"


def test_a_sibling_stops_when_the_process_that_started_it_is_killed(
    odd_root: Path, server_process: type[ServerProcess]
) -> None:
    box, sibling = _box(server_process, odd_root)
    box.kill(signal.SIGKILL)
    assert _gone(sibling), "a sibling kept serving after the box's first process was killed"
