"""Whatever the server does to go faster, a batch is the same bytes: decoded-image cache hit
or cold read, caches on or off, compact (uint8 + scale) or float32 on the wire, JPEGs large
enough to be decoded at a reduced scale included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from augstream import Client
from augstream_protocol.wire import FrameDecoder, FrameKind, decode_batch
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

SPEC: dict[str, Any] = {
    "dataset": "photos",
    "target_size": (96, 96),
    "batch_size": 4,
    "seed": 11,
    "rotation_range": 20,
    "width_shift_range": 0.1,
    "zoom_range": 0.1,
    "horizontal_flip": True,
    "rescale": 1 / 255,
    "epochs": 2,
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 JPEGs: 8 at least twice the target (decoded at 1/2 or 1/4 scale), 2 smaller."""
    root = tmp_path_factory.mktemp("same") / "photos"
    rng = np.random.default_rng(5)
    sizes = [(420, 500), (400, 800), (200, 260), (450, 390)] * 2 + [(150, 170), (120, 300)]
    for n, (height, width) in enumerate(sizes):
        folder = root / f"class{n % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (height // 30 + 2, width // 30 + 2, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{n:02d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


@pytest.fixture(scope="module")
def servers(photos: Path) -> Iterator[tuple[str, str]]:
    """One server with the caches, one without."""
    cached = create_app(Settings(datasets=[photos], threads=2))
    uncached = create_app(
        Settings(datasets=[photos], threads=1, image_cache_bytes=0, byte_cache_bytes=0)
    )
    with BackgroundServer(cached) as a, BackgroundServer(uncached) as b:
        yield a.url, b.url


def read(url: str) -> list[tuple[int, int, bytes, bytes]]:
    """Both epochs of ``SPEC``: position, images and labels of each batch."""
    with Client(url) as client, client.stream(**SPEC) as stream:
        batches = [stream.next_batch(timeout=60) for _ in range(2 * len(stream))]
    return [(b.epoch, b.index, b.x.tobytes(), np.asarray(b.y).tobytes()) for b in batches]


def test_cache_hits_and_cold_reads_give_the_same_bytes(servers: tuple[str, str]) -> None:
    cached, uncached = servers
    cold = read(cached)  # every image decoded: the first stream of this server
    decodes = httpx.get(f"{cached}/v1/cache").json()["decodes"]
    warm = read(cached)  # every image found decoded
    assert httpx.get(f"{cached}/v1/cache").json()["decodes"] == decodes
    assert cold == warm == read(uncached)
    assert len(cold) == 6  # 10 images, batches of 4, two epochs


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("change", [{}, {"random_resized_crop_scale": (0.5, 1.0)}])
def test_compact_images_expand_to_the_server_s_floats(
    servers: tuple[str, str], change: dict[str, Any], threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3: each batch's rows expanded on three threads (``augstream._expand``), small as it is.
    monkeypatch.setattr("augstream._expand.EXPANDER._threads", threads)
    monkeypatch.setattr("augstream._expand.MIN_FLOAT_BYTES", 0)
    url, spec = servers[0], {**SPEC, **change}
    with Client(url) as client, client.stream(**spec) as stream:
        assert stream.header.arrays["x"]["wire"] == {"dtype": "uint8", "scale": 1 / 255}
        compact = [stream.next_batch(timeout=60).x for _ in range(2 * len(stream))]
    floats = raw_floats(url, spec)
    assert [x.dtype for x in compact] == [np.dtype(np.float32)] * len(floats)
    assert [x.tobytes() for x in compact] == [x.tobytes() for x in floats]


@pytest.mark.parametrize(
    "change",
    [
        {"channel_shift_range": 10.0},
        {"samplewise_center": True},
        {"brightness_range": (0.8, 1.2)},
        {"contrast_range": (0.8, 1.2)},
        {"mixup_alpha": 0.4},
    ],
)
def test_photometric_work_is_sent_as_floats(servers: tuple[str, str], change: Any) -> None:
    with Client(servers[0]) as client, client.stream(**SPEC, **change) as stream:
        assert "wire" not in stream.header.arrays["x"]
        assert stream.next_batch(timeout=60).x.dtype == np.float32


def raw_floats(url: str, spec: dict[str, Any]) -> list[np.ndarray]:
    """The stream as a client that does not ask for compact images reads it."""
    from augstream_protocol.spec import StreamSpec

    body = StreamSpec.model_validate(spec).request_body()
    decoder = FrameDecoder()
    out = []
    with httpx.stream("POST", f"{url}/v1/stream", json=body, timeout=60) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            for frame in decoder.feed(chunk):
                if frame.kind == FrameKind.HEADER:
                    assert "wire" not in frame.json()["arrays"]["x"]
                elif frame.kind == FrameKind.BATCH:
                    out.append(decode_batch(frame.body).arrays["x"])
    return out


def decoded(url: str, compat: str) -> list[bytes]:
    """One epoch of ``photos`` at the target size, not augmented: the decoded images."""
    spec = dict(dataset="photos", target_size=SPEC["target_size"], batch_size=4, compat=compat)
    with Client(url) as client, client.stream(**spec, shuffle=False, epochs=1) as stream:
        return [stream.next_batch(timeout=60).x.tobytes() for _ in range(len(stream))]


def test_legacy_and_documented_decodes_never_share_a_cache_entry(photos: Path) -> None:
    # keras-legacy decodes JPEGs at full size; the documented compat decodes the ones at
    # least twice the target at a reduced scale. Whichever a server decoded first, a stream
    # of the other gets its own images, the same bytes as on a server that never saw them.
    def fresh() -> BackgroundServer:
        return BackgroundServer(create_app(Settings(datasets=[photos], threads=1)))

    with fresh() as first, fresh() as second:
        documented_cold = decoded(first.url, "documented")
        legacy_after = decoded(first.url, "keras-legacy")
        legacy_cold = decoded(second.url, "keras-legacy")
        documented_after = decoded(second.url, "documented")
    assert legacy_cold != documented_cold  # the reduced decode gives other pixels
    assert legacy_after == legacy_cold
    assert documented_after == documented_cold
