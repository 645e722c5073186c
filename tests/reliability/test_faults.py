"""Network faults through a TCP fault proxy: connections cut inside frames at several
offsets, a flipped byte, a frozen connection. The client recovers each time and delivers
exactly the uninterrupted stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from augstream import Batch, Client, RetryPolicy
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from tests.proxy import CuttingProxy

pytestmark = pytest.mark.slow

SPEC = dict(
    dataset="odd",
    target_size=(24, 24),
    batch_size=4,
    seed=9,
    epochs=1,
    rotation_range=25,
    zoom_range=0.1,
)
BATCH = 4 * 24 * 24 * 3  # image bytes in a full batch
QUICK = RetryPolicy(attempts=8, backoff_s=0.01, max_backoff_s=0.1)


@pytest.fixture(scope="module")
def port(odd_root: Path) -> Iterator[int]:
    # Heartbeats every 0.3 s: a healthy connection is never silent for the client's 5 s.
    app = create_app(Settings(datasets=[odd_root], threads=2, heartbeat_s=0.3))
    with BackgroundServer(app) as server:
        yield server.port


def _read(url: str) -> tuple[list[Batch], int]:
    # 5 s of silence counts as a frozen connection: well above what a loaded machine adds
    # between heartbeats (0.3 s), so only the injected freezes trip it.
    with Client(url, retry=QUICK, timeout=5) as client, client.stream(**SPEC) as stream:
        got = [stream.next_batch(timeout=60) for _ in range(len(stream))]
        with pytest.raises(StopIteration):
            stream.next_batch(timeout=60)
        return got, stream.reconnects


def _faults(**per_connection: dict[int, int]) -> dict[str, Callable[[int], int | None]]:
    return {name: (lambda n, table=table: table.get(n)) for name, table in per_connection.items()}


CASES = {
    # the HTTP status line, the header frame, deep in an array, then inside the first batch
    "cuts": _faults(cut_after={0: 5, 1: 700, 2: BATCH * 3 + 123, 3: BATCH // 2}),
    # Offsets count raw TCP bytes: the HTTP status line and headers come first (~150 bytes),
    # where a flipped byte may be harmless; these land in frames.
    "flipped-bytes": _faults(flip_at={0: BATCH * 2 + 500, 1: 400, 2: 2500}),
    "frozen": _faults(freeze_after={0: BATCH * 4 + 77, 1: 9}),
    "all-at-once": _faults(
        cut_after={0: BATCH + 10}, flip_at={1: BATCH * 5}, freeze_after={2: 1000}
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_client_delivers_the_uninterrupted_stream(
    port: int, case: str, counts: dict[str, Any]
) -> None:
    reference, _ = _read(f"http://127.0.0.1:{port}")
    proxy = CuttingProxy(port, **{"cut_after": lambda _: None, **CASES[case]})
    try:
        got, reconnects = _read(proxy.url)
    finally:
        proxy.close()
    faults = proxy.cuts + proxy.flips + proxy.freezes
    assert faults == len([v for f in CASES[case].values() for v in range(8) if f(v) is not None])
    # Each fault cost one new connection (a fault before the header is a retried start).
    assert proxy.connections == faults + 1
    assert [(b.epoch, b.index, b.sample_ids) for b in got] == [
        (b.epoch, b.index, b.sample_ids) for b in reference
    ]
    for mine, theirs in zip(got, reference, strict=True):
        assert mine.x.tobytes() == theirs.x.tobytes()
    counts.update(
        cuts=proxy.cuts,
        flips=proxy.flips,
        freezes=proxy.freezes,
        reconnects=reconnects,
        batches_compared=len(got),
    )
