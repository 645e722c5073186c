"""One stream spread over several replicas: the same batches, byte for byte, as from one
server, each replica making its share; uploads reach every replica."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest

from augstream import Batch, Client, Stream
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

SPEC = dict(
    dataset="pets",
    target_size=(20, 20),
    batch_size=3,
    seed=11,
    epochs=2,
    rotation_range=25,
    zoom_range=0.2,
    horizontal_flip=True,
)


@pytest.fixture(scope="module")
def replicas(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Three servers of the same data, each with uploads of its own."""
    with ExitStack() as stack:
        urls = []
        for i in range(3):
            uploads = tmp_path_factory.mktemp(f"uploads{i}")
            settings = Settings(datasets=[image_root], threads=1, upload_dir=uploads)
            urls.append(stack.enter_context(BackgroundServer(create_app(settings))).url)
        yield urls


def drain(stream: Stream) -> list[Batch]:
    """Every batch of a finite stream."""
    batches = []
    while True:
        try:
            batches.append(stream.next_batch(timeout=60))
        except StopIteration:
            return batches


def read_all(url: str | list[str], **changes: object) -> list[Batch]:
    with Client(url) as client, client.stream(**{**SPEC, **changes}) as stream:
        return drain(stream)


def served_batches(url: str) -> int:
    return int(httpx.get(f"{url}/v1/status", timeout=30).json()["totals"]["batches"])


def assert_same(got: list[Batch], want: list[Batch]) -> None:
    assert [(b.epoch, b.index) for b in got] == [(b.epoch, b.index) for b in want]
    for mine, theirs in zip(got, want, strict=True):
        assert mine.sample_ids == theirs.sample_ids
        assert mine.x.tobytes() == theirs.x.tobytes()
        np.testing.assert_array_equal(mine.y, theirs.y)


def test_a_stream_over_three_replicas_is_byte_identical_to_one_servers(
    replicas: list[str],
) -> None:
    alone = read_all(replicas[0])
    before = [served_batches(url) for url in replicas]
    spread = read_all(replicas)
    assert len(alone) == 2 * 7  # 19 images in batches of 3
    assert_same(spread, alone)
    shares = [served_batches(url) - old for url, old in zip(replicas, before, strict=True)]
    # Ranges go to whichever replica is ready: each takes part, and together they made the
    # stream's batches (and at most a few more: a range that moved on to another replica
    # may leave batches its first replica had made ahead, up to its prefetch of 4).
    assert all(share >= 1 for share in shares), shares
    assert 14 <= sum(shares) <= 14 + 3 * 4, shares


@pytest.mark.parametrize(("start", "parts"), [((0, 4), 2), ((1, 5), 3), ((1, 6), 3)])
def test_resumed_and_short_streams_end_where_one_servers_does(
    replicas: list[str], start: tuple[int, int], parts: int
) -> None:
    """From (1, 5) only 2 batches are left, from (1, 6) one: fewer than the replicas."""
    changes = {"start": start}
    assert_same(read_all(replicas[:parts], **changes), read_all(replicas[0], **changes))


def test_the_streams_spec_and_position_are_one_servers(replicas: list[str]) -> None:
    with Client(replicas) as client, client.stream(**SPEC) as stream:
        assert stream.spec.stride == 1 and stream.spec.start.batch == 0
        stream.next_batch(timeout=60)
        stream.next_batch(timeout=60)
        assert stream.position == (0, 2)
        assert len(stream) == 7


def test_uploads_reach_every_replica(replicas: list[str]) -> None:
    x = np.arange(6 * 8 * 8 * 3, dtype=np.uint8).reshape(6, 8, 8, 3)
    with Client(replicas) as client:
        digest = client.upload(x)
        for url in replicas:
            assert httpx.get(f"{url}/v1/arrays/{digest}", timeout=30).status_code == 200
        with client.stream(
            arrays={"x": digest},
            target_size=(8, 8),
            class_mode="none",
            batch_size=2,
            shuffle=False,
            epochs=1,
        ) as stream:
            got = np.concatenate([batch.x for batch in drain(stream)])
    np.testing.assert_array_equal(got, x)


def test_replica_urls_come_from_a_list_or_a_comma_separated_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUGSTREAM_URL", "http://a:1, http://b:2/")
    with Client() as client:
        assert client.urls == ["http://a:1", "http://b:2"]
    with Client(["http://c:3"]) as client:
        assert client.url == "http://c:3"
    with pytest.raises(ValueError, match="at most"):
        Client([f"http://h{i}:1" for i in range(65)])
