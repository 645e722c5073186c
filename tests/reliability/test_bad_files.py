"""Files that are not images, in a dataset's folders: a FIFO (whose open would wait for a
writer for ever), a bit-depth bomb (a small 16-bit RGBA PNG whose pixels pass the pixel
limit but whose decoded bytes do not) and a JPEG cut in half with its end marker put back.
Each gives a clear error frame (or is skipped, under ``skip``) and the other datasets keep
streaming."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from augstream import Client, ServerError
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from tests.imagefolder import make_image_folder

pytestmark = pytest.mark.slow

#: The bomb decodes to 512 x 512 x 4 channels x 2 bytes = 2 MiB; the server allows 1 MiB
#: (262,144 pixels pass the default pixel limit, and would at 8 bits in RGB: 768 KiB).
MAX_IMAGE_BYTES = 1 << 20
BAD = {
    "fifo": ("cat/001.jpg", "is not a regular file"),
    "bomb": ("cat/002.png", "= 2097152 bytes decoded; this server decodes at most 1048576"),
    "half": ("cat/003.jpg", "truncated JPEG"),
}


def _spoil(root: Path, kind: str) -> None:
    target = root / BAD[kind][0]
    target.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "bomb":
        deep = np.random.default_rng(0).integers(0, 65535, (512, 512, 4), dtype=np.uint16)
        cv2.imwrite(str(target), deep)
    else:
        image = cv2.GaussianBlur(
            np.random.default_rng(1).integers(0, 256, (160, 200, 3), dtype=np.uint8), (9, 9), 3
        )
        data = cv2.imencode(".jpg", image)[1].tobytes()
        target.write_bytes(data[: len(data) // 2] + b"\xff\xd9")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("files")
    folders = [make_image_folder(base / "healthy", per_class=(20, 20))]
    for kind in BAD:
        folders.append(make_image_folder(base / kind, per_class=(6, 6)))
        _spoil(folders[-1], kind)
    lenient = make_image_folder(base / "lenient", per_class=(6, 6))
    for kind in BAD:
        _spoil(lenient, kind)
    settings = Settings(
        datasets=[*folders, lenient],
        on_corrupt_by_dataset={"lenient": "skip"},
        max_image_bytes=MAX_IMAGE_BYTES,
        threads=2,
        heartbeat_s=0.3,
    )
    with BackgroundServer(create_app(settings)) as server:
        yield server.url


SPEC: dict[str, Any] = {"target_size": (32, 32), "batch_size": 4, "shuffle": False}


@pytest.mark.parametrize("kind", list(BAD))
def test_each_bad_file_ends_its_stream_with_an_error_naming_it(
    url: str, kind: str, counts: dict[str, Any]
) -> None:
    name, reason = BAD[kind]
    started = time.monotonic()
    with (
        Client(url) as client,
        client.stream(dataset=kind, **SPEC) as stream,
        pytest.raises(ServerError) as raised,
    ):
        for _ in range(10):
            stream.next_batch(timeout=30)
    assert raised.value.kind == "sample_error"
    assert f"{kind}/{name}" in str(raised.value) and reason in str(raised.value)
    counts.update(kind=kind, error_after_s=round(time.monotonic() - started, 2))


def test_skip_leaves_each_bad_file_out_with_its_reason(url: str) -> None:
    with Client(url) as client, client.stream(dataset="lenient", epochs=1, **SPEC) as stream:
        files = client.files(dataset="lenient", shuffle=False).files
        got = [stream.next_batch(timeout=30) for _ in range(len(stream))]
    skipped = {files[i]: why for batch in got for i, why in batch.skipped}
    assert set(skipped) == {name for name, _ in BAD.values()}
    for name, reason in BAD.values():
        assert reason in skipped[name]
    assert sum(len(batch.sample_ids) for batch in got) == len(files) - len(BAD)


def test_the_other_datasets_keep_streaming(url: str, counts: dict[str, Any]) -> None:
    """Bad files, each read by two streams at once, block no worker: a healthy stream
    meanwhile gets a whole epoch, each batch in well under a second."""
    stop = threading.Event()

    def hammer(kind: str) -> None:
        while not stop.is_set():
            try:
                with Client(url) as client, client.stream(dataset=kind, **SPEC) as stream:
                    for _ in range(10):
                        stream.next_batch(timeout=30)
            except ServerError:
                pass

    threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in [*BAD, *BAD]]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        waits = []
        with Client(url) as client, client.stream(dataset="healthy", epochs=3, **SPEC) as stream:
            for _ in range(3 * len(stream)):
                began = time.monotonic()
                stream.next_batch(timeout=30)
                waits.append(time.monotonic() - began)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert max(waits) < 2.0
    counts.update(batches=len(waits), slowest_batch_s=round(max(waits), 2))
