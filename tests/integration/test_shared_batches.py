"""Identical streams share their batches: a sweep's trainers and the validation streams cost
the work of one stream, each still gets a lone stream's bytes, exactly once, and a slow or
departing reader holds back or takes away nothing from the others."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from augstream import Client
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import FrameDecoder, FrameKind, decode_batch
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from augstream_service.shared import epochs_alike
from tests.imagefolder import make_image_folder
from tests.integration.test_observability import scrape, value

#: A sweep's data spec: augmented, shuffled, one seed; 40 images, 10 batches an epoch.
SPEC: dict[str, Any] = {
    "dataset": "shots",
    "target_size": (192, 192),
    "batch_size": 4,
    "seed": 5,
    "rotation_range": 15,
    "zoom_range": 0.1,
    "horizontal_flip": True,
    "epochs": 2,
}
#: A validation stream: not shuffled, not augmented, the same batches every epoch.
VALIDATION: dict[str, Any] = {
    "dataset": "shots",
    "target_size": (64, 64),
    "batch_size": 8,
    "shuffle": False,
    "seed": 1,
    "epochs": 5,
}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset of 40 images in three classes."""
    return make_image_folder(tmp_path_factory.mktemp("shared") / "shots", per_class=(14, 13, 12))


@pytest.fixture(scope="module")
def plain(shots: Path) -> Iterator[str]:
    """A server without the batch cache: every stream makes its own batches."""
    with BackgroundServer(create_app(Settings(datasets=[shots], batch_cache_bytes=0))) as server:
        yield server.url


@pytest.fixture(scope="module")
def lone(plain: str) -> list[bytes]:
    """``SPEC``'s batch frames as a lone stream gets them."""
    return frames(plain, SPEC)


@pytest.fixture
def server(shots: Path) -> Iterator[str]:
    """A server of its own (the counters start from zero), with the batch cache."""
    with BackgroundServer(create_app(Settings(datasets=[shots], threads=2))) as running:
        yield running.url


def frames(
    url: str,
    spec: dict[str, Any],
    *,
    taken: list[bytes] | None = None,
    pause: float = 0.0,
    until: threading.Event | None = None,
    leave_after: int | None = None,
) -> list[bytes]:
    """The bodies of a stream's batch frames, read through a small socket receive buffer
    (so a reader that ``pause``s between batches, until ``until`` is set, holds its stream
    back on the server), appended to ``taken`` as they come."""
    taken = [] if taken is None else taken
    body = StreamSpec.model_validate(spec).request_body()
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 14)])
    decoder = FrameDecoder()
    with (
        httpx.Client(transport=transport, timeout=60) as client,
        client.stream("POST", f"{url}/v1/stream", json=body) as response,
    ):
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw(1 << 14):
            for frame in decoder.feed(chunk):
                assert frame.kind != FrameKind.ERROR, frame.json()
                if leave_after == 0:  # gone once the header came
                    return taken
                if frame.kind != FrameKind.BATCH:
                    continue
                taken.append(bytes(frame.body))
                if len(taken) == leave_after:
                    return taken
                if pause and not (until is not None and until.is_set()):
                    time.sleep(pause)
    return taken


def augments(url: str) -> float:
    """Batches augmented so far (one augment stage per batch made)."""
    return value(scrape(url), "augstream_stage_seconds_count", stage="augment")


def test_identical_streams_cost_one_stream_s_work_and_get_its_bytes(
    server: str, lone: list[bytes]
) -> None:
    start = threading.Barrier(4)
    first: list[bytes] = []

    def sweep(n: int) -> list[bytes]:
        start.wait()
        return frames(server, SPEC, taken=first if n == 0 else None)

    with ThreadPoolExecutor(5) as pool:
        four = [pool.submit(sweep, n) for n in range(4)]
        deadline = time.monotonic() + 60
        while len(first) < 5:  # the fifth trainer starts while the four are under way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        later = pool.submit(frames, server, SPEC)
        got = [future.result() for future in [*four, later]]
    assert all(stream == lone for stream in got)
    made = augments(server)
    assert len(lone) <= made <= 1.25 * len(lone)
    samples = scrape(server)
    shared = value(samples, "augstream_shared_batches_total", dataset="shots")
    assert shared == 5 * len(lone) - made  # each batch sent was made for its stream or shared
    saved = value(samples, "augstream_shared_bytes_total", dataset="shots")
    assert saved >= shared * 4 * 192 * 192 * 3
    status = httpx.get(f"{server}/v1/status", timeout=30).json()["shared"]
    assert status["batches"] == shared and status["bytes"] == saved
    assert status["by_dataset"]["shots"] == {"batches": shared, "bytes": saved}
    assert status["cache"]["made"] == made and status["cache"]["entries"] == len(lone)


def test_a_slow_reader_does_not_hold_back_the_others(server: str, plain: str) -> None:
    # Longer than what a reader's socket and prefetch hold, several times over.
    spec = {**SPEC, "epochs": 4}
    lone = frames(plain, spec)
    fast_done = threading.Event()
    slow: list[bytes] = []
    with ThreadPoolExecutor(4) as pool:
        # The slow trainer asks first: the others find its batches being made, and go on.
        slowly = pool.submit(frames, server, spec, taken=slow, pause=0.25, until=fast_done)
        while not slow:
            time.sleep(0.01)
        fast = [pool.submit(frames, server, spec) for _ in range(3)]
        assert all(stream.result() == lone for stream in fast)
        behind = len(slow)
        [held] = httpx.get(f"{server}/v1/status", timeout=30).json()["streams"]
        fast_done.set()
        assert slowly.result() == lone
    # The fast ones finished while the slow one was early, and the server held the slow
    # one's stream back (its socket and prefetch full), rather than the others.
    assert behind <= len(lone) // 4
    assert held["batches"] < len(lone) // 2
    assert augments(server) <= 1.25 * len(lone)


def test_a_stream_that_leaves_takes_no_batch_from_the_others(
    server: str, lone: list[bytes]
) -> None:
    start = threading.Barrier(4)

    def sweep(n: int) -> list[bytes]:
        start.wait()
        # The first leaves while its first batches, which the others wait for, are made.
        return frames(server, SPEC, leave_after=0 if n == 0 else None)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(sweep, range(4)))
    assert got == [[], lone, lone, lone]


def test_a_validation_stream_augments_once_over_five_epochs(server: str, plain: str) -> None:
    got = frames(server, VALIDATION)
    per_epoch = 5  # 40 images, batches of 8
    assert len(got) == 5 * per_epoch
    assert got == frames(plain, VALIDATION)
    assert augments(server) == per_epoch
    # Every trainer's validation stream is the same batches, whatever its seed.
    again = frames(server, {**VALIDATION, "seed": 2, "epochs": 1})
    assert again == got[:per_epoch]
    assert augments(server) == per_epoch


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"rescale": 1 / 255, "samplewise_center": True},
        {"validation_split": 0.25, "subset": "validation", "keep_aspect_ratio": True},
        {"shard": {"index": 1, "count": 3, "equal": True}, "class_mode": "sparse"},
    ],
)
def test_streams_taken_as_alike_make_the_same_batches_every_epoch(
    plain: str, change: dict[str, Any]
) -> None:
    # Made afresh each epoch (no batch cache), their arrays must not change: what the batch
    # cache relies on to keep one copy of each batch for every epoch.
    spec = {**VALIDATION, **change, "epochs": 3}
    assert epochs_alike(StreamSpec.model_validate(spec))
    batches = [decode_batch(body) for body in frames(plain, spec)]
    per_epoch = len(batches) // 3
    arrays = [{k: a.tobytes() for k, a in b.arrays.items()} for b in batches]
    assert arrays == arrays[:per_epoch] * 3
    assert [b.epoch for b in batches] == [e for e in range(3) for _ in range(per_epoch)]


def test_ranges_of_a_stream_share_its_batches_and_a_new_listing_does_not(
    server: str, lone: list[bytes]
) -> None:
    assert frames(server, SPEC) == lone
    made = augments(server)
    # A client spread over replicas asks each for ranges of the same stream.
    part = frames(server, {**SPEC, "start": {"epoch": 1, "batch": 3}, "batches": 4})
    assert part == lone[13:17]
    assert augments(server) == made
    # Listed again, the dataset may hold other files: its batches are made afresh.
    httpx.post(f"{server}/v1/datasets/shots/refresh", timeout=30).raise_for_status()
    assert frames(server, {**SPEC, "epochs": 1}) == lone[:10]
    assert augments(server) == made + 10


def test_compact_and_float_frames_of_one_spec_are_not_mixed(server: str, plain: str) -> None:
    # A client that expands compact frames gets uint8 pixels and a scale; one that does
    # not gets the floats: the same batches, other bytes.
    spec = {**SPEC, "rescale": 1 / 255, "epochs": 1}

    def compact(url: str) -> list[bytes]:
        with Client(url) as client, client.stream(**spec) as stream:
            return [stream.next_batch(timeout=60).x.tobytes() for _ in range(len(stream))]

    floats = frames(server, spec)
    assert compact(server) == compact(plain)
    assert frames(server, spec) == floats == frames(plain, spec)
