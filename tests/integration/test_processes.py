"""A server whose batches' samples are made by worker processes (``processes``): the same
bytes as its threads make, every image decoded by one worker, a worker that dies replaced
without a batch lost, no shared memory left behind."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from augstream import Batch, Client
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from augstream_service.processes import WorkerLostError
from tests.imagefolder import make_image_folder, make_mask_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("processes")
    broken = make_image_folder(base / "broken", per_class=(3, 3))
    (broken / "dog" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    pets = make_image_folder(base / "pets", per_class=(9, 7, 8))
    return [pets, make_mask_folder(base / "seg"), broken]


def _server(roots: list[Path], processes: int, **settings: Any) -> BackgroundServer:
    fields = {"threads": 2, "on_corrupt": "skip", **settings}
    app = create_app(Settings(datasets=roots, processes=processes, **fields))
    return BackgroundServer(app)


@pytest.fixture(scope="module")
def servers(roots: list[Path]) -> Iterator[tuple[str, str, Any]]:
    """The same data from a server with two worker processes (three threads in each, so a
    worker makes several batches' parts at once) and one with threads only."""
    with _server(roots, 2, worker_threads=3) as pooled, _server(roots, 0) as threads:
        yield pooled.url, threads.url, pooled


def _read(url: str, **fields: Any) -> list[Batch]:
    with Client(url) as client, client.stream(**fields) as stream:
        got = []
        while True:
            try:
                got.append(stream.next_batch(timeout=60))
            except StopIteration:
                return got


def _by_threads(roots: list[Path], spec: dict[str, Any]) -> list[Batch]:
    """``spec``'s whole stream from a server without worker processes: the bytes to match."""
    with _server(roots, 0) as threads:
        return _read(threads.url, **spec)


SPECS = [
    {"dataset": "pets", "rotation_range": 20, "horizontal_flip": True, "rescale": 1 / 255},
    {"dataset": "pets", "zoom_range": 0.2, "channel_shift_range": 30, "contrast_range": [0.5, 2]},
    {"dataset": "pets", "width_shift_range": 3, "color_mode": "grayscale", "shuffle": False},
    {"dataset": "seg", "class_mode": "mask", "rotation_range": 30, "fill_mode": "constant"},
    {"dataset": "broken", "rotation_range": 10},  # a corrupt image, left out of its batch
]


@pytest.mark.parametrize("fields", SPECS)
def test_worker_processes_make_the_bytes_the_threads_make(
    servers: tuple[str, str, Any], fields: dict[str, Any]
) -> None:
    pooled, threads, _ = servers
    spec = {"target_size": (24, 20), "batch_size": 5, "seed": 4, "epochs": 2, **fields}
    mine, theirs = _read(pooled, **spec), _read(threads, **spec)
    assert [(b.epoch, b.index, b.sample_ids, b.skipped) for b in mine] == [
        (b.epoch, b.index, b.sample_ids, b.skipped) for b in theirs
    ]
    for a, b in zip(mine, theirs, strict=True):
        assert a.x.tobytes() == b.x.tobytes()
        assert np.asarray(a.y).tobytes() == np.asarray(b.y).tobytes()


def test_a_big_boxs_defaults_make_the_bytes_the_threads_make(
    roots: list[Path], servers: tuple[str, str, Any]
) -> None:
    # What a 64-core box starts with (64 threads: a lane each, 16 workers of 4 threads):
    # each batch of 16 has a sample for every worker, so every batch waits on 16 owners.
    spec = {"dataset": "pets", "target_size": (24, 20), "batch_size": 16, "seed": 8,
            "epochs": 2, "rotation_range": 15, "shuffle": False}  # fmt: skip
    # The decode scratch of 64 threads at the default largest image would ask for a
    # memory budget larger than this machine's.
    big = _server(roots, 16, threads=64, max_image_bytes=16 << 20)
    with big:
        mine = _read(big.url, **spec)
    theirs = _read(servers[1], **spec)
    assert [b.sample_ids for b in mine] == [b.sample_ids for b in theirs]
    assert [b.x.tobytes() for b in mine] == [b.x.tobytes() for b in theirs]


def test_uploaded_images_are_made_by_the_workers_too(servers: tuple[str, str, Any]) -> None:
    pooled, threads, _ = servers
    x = np.random.default_rng(1).integers(0, 256, (13, 16, 12, 3), dtype=np.uint8)
    spec = {"target_size": (16, 12), "class_mode": "none", "batch_size": 4, "seed": 2,
            "epochs": 1, "rotation_range": 25, "horizontal_flip": True}  # fmt: skip
    streams = []
    for url in (pooled, threads):
        with Client(url) as client:
            streams.append(_read(url, arrays={"x": client.upload(x)}, **spec))
    assert [b.x.tobytes() for b in streams[0]] == [b.x.tobytes() for b in streams[1]]


def test_each_image_is_decoded_by_one_worker_and_cached_there(roots: list[Path]) -> None:
    spec = {"dataset": "pets", "target_size": (24, 20), "batch_size": 6, "seed": 9,
            "epochs": 3, "rotation_range": 15}  # fmt: skip
    with _server(roots, 2) as server:
        got = _read(server.url, **spec)
        figures = httpx.get(f"{server.url}/v1/cache", timeout=30).json()
        images = httpx.get(f"{server.url}/v1/datasets/pets", timeout=30).json()["samples"]
    assert sum(len(b.sample_ids) for b in got) == 3 * images
    # Each image decoded once (by the worker that owns it), then found in its cache.
    assert figures["processes"] == 2 and figures["decodes"] == images
    assert figures["images"]["hits"] == 2 * images
    # The caches' bytes shared out (two workers and the server), not each given them all.
    shares = Settings.model_fields["image_cache_bytes"].default // 3
    assert figures["images"]["capacity_bytes"] == 3 * shares


def test_a_worker_that_dies_is_replaced_and_no_batch_is_lost(roots: list[Path]) -> None:
    spec = {"dataset": "pets", "target_size": (24, 20), "batch_size": 3, "seed": 6,
            "epochs": 3, "rotation_range": 15}  # fmt: skip
    reference = _by_threads(roots, spec)
    app = create_app(Settings(datasets=roots, threads=2, processes=2))
    made: list[str] = []
    with BackgroundServer(app) as server:
        pool = app.state.augstream.processes
        take = pool._blocks.take
        pool._blocks.take = lambda size: made.append((block := take(size)).name) or block
        got: list[Batch] = []
        with Client(server.url) as client, client.stream(**spec) as stream:
            for n in range(len(reference)):
                got.append(stream.next_batch(timeout=60))
                if n == 4:
                    os.kill(pool._workers[0].process.pid, signal.SIGKILL)
        restarts = pool.restarts
    assert [b.x.tobytes() for b in got] == [b.x.tobytes() for b in reference]
    assert restarts >= 1
    # Every block the pool made was unlinked when the server stopped (other processes' blocks
    # may come and go meanwhile: only this pool's are looked for).
    assert made and not set(made) & set(os.listdir("/dev/shm"))


@pytest.mark.parametrize("how", ["lost", "failed"])
def test_what_a_given_up_batch_left_is_not_taken_for_a_later_task_s(
    roots: list[Path], how: str
) -> None:
    # One server thread: one lane, a pipe to each worker. The first batch is given up:
    # "lost" before its owners announced it (their announcements come to the lane's socket
    # after), "failed" as if a reply said so (the real reply, for the corrupt sample it
    # left out, stays unread on the pipe). The lane must be free again, and the later tasks
    # sent there must wait for their own announcements and read their own replies (the
    # corrupt sample's owner replies again in each epoch), not take those.
    spec = {"dataset": "broken", "target_size": (24, 20), "batch_size": 4, "seed": 3,
            "epochs": 3, "rotation_range": 15}  # fmt: skip
    reference = _by_threads(roots, spec)
    app = create_app(Settings(datasets=roots, threads=1, processes=2, on_corrupt="skip"))
    given_up: list[int] = []
    read: list[int] = []
    with BackgroundServer(app) as server:
        pool = app.state.augstream.processes
        if how == "lost":
            real_await = pool._await

            def wait(lane: int, ident: int, workers: Any) -> Any:
                if not given_up:
                    given_up.append(ident)
                    raise WorkerLostError("lost, as far as this batch knows")
                return real_await(lane, ident, workers)

            pool._await = wait
        else:
            for worker in pool._workers:
                real = worker.reply

                def reply(lane: int, ident: int, real: Any = real) -> Any:
                    if not given_up:
                        given_up.append(ident)
                        return ("failed", ident, "could not make it, as far as this batch knows")
                    read.append(ident)
                    return real(lane, ident)

                worker.reply = reply
        got = _read(server.url, **spec)
    assert given_up and (how == "lost" or read)
    assert [b.sample_ids for b in got] == [b.sample_ids for b in reference]
    assert [b.x.tobytes() for b in got] == [b.x.tobytes() for b in reference]


def test_a_batch_whose_samples_were_all_made_is_read_without_a_reply(roots: list[Path]) -> None:
    # Its outcome (CRCs, seconds) is in the block: the server reads no worker's reply,
    # however many workers; only the corrupt sample's owner replies, with its error.
    spec = {"dataset": "pets", "target_size": (24, 20), "batch_size": 8, "seed": 5, "epochs": 2}
    app = create_app(Settings(datasets=roots, threads=2, processes=2, on_corrupt="skip"))
    replies: list[int] = []
    with BackgroundServer(app) as server:
        for worker in app.state.augstream.processes._workers:
            real = worker.reply

            def reply(lane: int, ident: int, real: Any = real) -> Any:
                replies.append(ident)
                return real(lane, ident)

            worker.reply = reply
        clean = _read(server.url, **spec)
        assert clean and not replies
        broken = _read(server.url, **{**spec, "dataset": "broken"})
    # One reply per epoch, from the corrupt sample's owner, naming it in its batch.
    assert len(replies) == sum(len(b.skipped) for b in broken) == 2


def test_a_server_stopped_under_its_workers_stops_quietly(
    roots: list[Path], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # Batches in the workers' hands when the server stops are nobody's any more: neither made
    # again in the server nor reported as lost workers, and the workers leave without a trace.
    spec = {"dataset": "pets", "target_size": (512, 512), "batch_size": 24, "seed": 1,
            "rotation_range": 15, "blur_sigma_range": [2, 3]}  # fmt: skip
    app = create_app(Settings(datasets=roots, threads=2, processes=2, prefetch=8))
    caplog.set_level("WARNING", logger="augstream.processes")
    server = BackgroundServer(app)
    with server, Client(server.url) as client:
        stream = client.stream(**spec)
        for _ in range(3):
            stream.next_batch(timeout=60)
        pool = app.state.augstream.processes
        workers = [w.process for w in pool._workers]
    stream.close()
    assert all(w.wait(timeout=10) == 0 for w in workers)
    assert not [r for r in caplog.records if r.name == "augstream.processes"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_full_dev_shm_makes_the_batches_in_the_server(
    roots: list[Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A container's /dev/shm is 64 MiB unless given more: a block that finds no room must not
    # be written past its end (SIGBUS), and the stream must not notice but in speed.
    from augstream_service import shm

    def full(name: str, size: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    spec = {"dataset": "pets", "target_size": (24, 20), "batch_size": 5, "seed": 4,
            "epochs": 2, "rotation_range": 20}  # fmt: skip
    reference = _by_threads(roots, spec)
    monkeypatch.setattr(shm, "_reserve", full)
    caplog.set_level("WARNING", logger="augstream.processes")
    with _server(roots, 2) as server:
        got = _read(server.url, **spec)
    assert [b.x.tobytes() for b in got] == [b.x.tobytes() for b in reference]
    told = [r.getMessage() for r in caplog.records if r.name == "augstream.processes"]
    assert len(told) == 1 and "/dev/shm: No space left on device" in told[0]
