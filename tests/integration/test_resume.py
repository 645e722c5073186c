"""A dropped connection resumes at the next batch: nothing lost, nothing repeated."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

from augstream import Batch, Client, ConnectionLostError, IncompatibleStreamError, RetryPolicy
from augstream_protocol.wire import FrameKind, encode_json_frame
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from tests.imagefolder import make_image_folder
from tests.proxy import CuttingProxy

SPEC = dict(
    dataset="pets",
    target_size=(32, 32),
    batch_size=4,
    seed=21,
    rotation_range=30,
    zoom_range=0.2,
    horizontal_flip=True,
)
BATCH_BYTES = 4 * 32 * 32 * 3


def _take(client: Client, count: int) -> list[Batch]:
    with client.stream(**SPEC) as stream:
        return [stream.next_batch(timeout=60) for _ in range(count)]


@pytest.mark.parametrize("cut", [100, BATCH_BYTES * 3 + 7, BATCH_BYTES * 6 + 1000])
def test_cut_connections_resume_without_loss_or_repeat(server_url: str, cut: int) -> None:
    with Client(server_url) as direct:
        reference = _take(direct, 14)
    port = urlparse(server_url).port
    assert port is not None
    # Connections 0, 1 and 2 are cut (the first after ``cut`` bytes, then mid-frame again).
    budgets = {0: cut, 1: BATCH_BYTES * 2 + 50, 2: 3000}
    proxy = CuttingProxy(port, lambda n: budgets.get(n))
    try:
        with (
            Client(proxy.url, retry=RetryPolicy(backoff_s=0.01)) as client,
            client.stream(**SPEC) as stream,
        ):
            got = [stream.next_batch(timeout=60) for _ in range(14)]
            reconnects = stream.reconnects
    finally:
        proxy.close()
    assert proxy.cuts >= 2
    assert reconnects >= 2
    assert [(b.epoch, b.index) for b in got] == [(b.epoch, b.index) for b in reference]
    for mine, theirs in zip(got, reference, strict=True):
        assert mine.sample_ids == theirs.sample_ids
        assert mine.x.tobytes() == theirs.x.tobytes()


def test_gives_up_with_a_clear_error_when_the_server_stays_away(server_url: str) -> None:
    port = urlparse(server_url).port
    assert port is not None
    # The first connection breaks after about three batches; every later one at once.
    proxy = CuttingProxy(port, lambda n: BATCH_BYTES * 3 if n == 0 else 0)
    try:
        with Client(proxy.url, retry=RetryPolicy(attempts=3, backoff_s=0.01)) as client:
            stream = client.stream(**SPEC)
            delivered = []
            with pytest.raises(ConnectionLostError, match="3 reconnects failed"):
                for _ in range(50):
                    delivered.append(stream.next_batch(timeout=60).index)
            stream.close()
    finally:
        proxy.close()
    assert delivered == list(range(len(delivered))) and 1 <= len(delivered) <= 3
    assert proxy.connections == 4  # the first, then three failed reconnects


def test_a_finite_stream_whose_end_frame_is_lost_still_ends_cleanly(server_url: str) -> None:
    spec = dict(dataset="pets", target_size=(8, 8), batch_size=5, seed=3, epochs=1)
    port = urlparse(server_url).port
    assert port is not None
    # Everything up to the end frame gets through; then the connection drops.
    end_frame = encode_json_frame(FrameKind.END, {"batches": 4})
    proxy = CuttingProxy(port, lambda n: None, drop_from=end_frame)
    try:
        with Client(proxy.url, retry=RetryPolicy(backoff_s=0.01)) as client:
            stream = client.stream(**spec)
            got = []
            with pytest.raises(StopIteration):
                while True:
                    got.append(stream.next_batch(timeout=60).index)
                    if len(got) == 4:
                        # The client knows the stream's length and may end at once; had it
                        # left before the end frame reached the proxy (a loaded machine),
                        # nothing would have been lost. Wait for the proxy to drop it.
                        deadline = time.monotonic() + 30
                        while not proxy.cuts and time.monotonic() < deadline:
                            time.sleep(0.01)
            stream.close()
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert got == [0, 1, 2, 3]
    assert proxy.connections == 1  # nothing was left to fetch, so no reconnect


def test_resuming_on_a_server_with_different_data_is_refused(
    server_url: str, tmp_path: Path
) -> None:
    """Exactly-once needs the same listing on both sides of a reconnect; when a replica holds
    other data the client stops with a clear error instead of mixing epochs."""
    other_root = make_image_folder(tmp_path / "pets", per_class=(9, 5, 6))  # 21 images, not 19
    port = urlparse(server_url).port
    assert port is not None
    with BackgroundServer(create_app(Settings(datasets=[other_root]))) as other:
        proxy = CuttingProxy(
            port, lambda n: BATCH_BYTES * 2 if n == 0 else None, later_port=other.port
        )
        try:
            with Client(proxy.url, retry=RetryPolicy(backoff_s=0.01)) as client:
                stream = client.stream(**SPEC)
                with pytest.raises(IncompatibleStreamError, match="differs"):
                    for _ in range(20):
                        stream.next_batch(timeout=60)
                stream.close()
        finally:
            proxy.close()


def test_a_stopping_server_hands_its_streams_over_with_a_go_away_frame(
    server_url: str, image_root: Path
) -> None:
    """A graceful stop (SIGTERM, or ``stop()``) ends each stream with a go-away frame naming the
    next batch; the client resumes there on another server: nothing lost, nothing repeated,
    and no error reaches the caller."""
    with Client(server_url) as direct:
        reference = _take(direct, 30)
    leaving = BackgroundServer(create_app(Settings(datasets=[image_root]))).start()
    with BackgroundServer(create_app(Settings(datasets=[image_root]))) as staying:
        proxy = CuttingProxy(leaving.port, lambda n: None, later_port=staying.port)
        try:
            with (
                Client(proxy.url, retry=RetryPolicy(backoff_s=0.01)) as client,
                client.stream(**SPEC) as stream,
            ):
                got = [stream.next_batch(timeout=60) for _ in range(5)]
                took: list[float] = []
                stopper = threading.Thread(target=lambda: took.append(_timed(leaving.stop)))
                stopper.start()
                got += [stream.next_batch(timeout=60) for _ in range(25)]
                stopper.join()
                reconnects = stream.reconnects
        finally:
            proxy.close()
    # The stream ended by itself: the stop did not wait out uvicorn's 5 s grace period.
    assert took[0] < 4.0
    assert reconnects == 1 and proxy.connections == 2
    assert [(b.epoch, b.index) for b in got] == [(b.epoch, b.index) for b in reference]
    for mine, theirs in zip(got, reference, strict=True):
        assert mine.x.tobytes() == theirs.x.tobytes()


def _timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started
