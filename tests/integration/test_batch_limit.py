"""``max_batch_bytes`` to the byte: a batch exactly at the limit or one byte under it
streams, one byte over is a 422 naming ``batch_size``; its labels count as much as its
images (uploaded ``raw`` and ``multi_output`` targets can outweigh them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from augstream import Client
from augstream_protocol.npy import encode_npy
from augstream_protocol.spec import StreamSpec
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

BATCH = 8
#: Every spec below makes full batches of exactly this many bytes: 8 samples x 125 bytes.
BATCH_BYTES = 1000
RNG = np.random.default_rng(3)
X = RNG.integers(0, 256, (BATCH, 1, 17, 1), dtype=np.uint8)  # 17 bytes an image
RAW = RNG.normal(size=(BATCH, 27)).astype(np.float32)  # 108 bytes of labels a row
OUTPUTS = [  # 48 + 60 = 108 bytes of labels a row
    RNG.normal(size=(BATCH, 6)),
    RNG.integers(-99, 99, (BATCH, 3, 10), dtype=np.int16),
]
#: limit -> whether a 1000-byte batch streams: one byte under it, exactly at it, one over.
LIMITS = {BATCH_BYTES + 1: True, BATCH_BYTES: True, BATCH_BYTES - 1: False}


@pytest.fixture(scope="module")
def servers(image_root: Path) -> Iterator[dict[int, str]]:
    """A live server for each limit, each holding the uploaded arrays."""
    with ExitStack() as stack:
        urls = {}
        for limit in LIMITS:
            app = create_app(Settings(datasets=[image_root], max_batch_bytes=limit, threads=1))
            urls[limit] = stack.enter_context(BackgroundServer(app)).url
            with Client(urls[limit]) as client:
                for array in (X, RAW, *OUTPUTS):
                    client.upload(array)
        yield urls


def digest(array: np.ndarray[Any, Any]) -> str:
    return encode_npy(array).digest


SPECS: dict[str, dict[str, Any]] = {
    # 5 x 25 grey pixels, no labels: the images alone.
    "images": dict(dataset="pets", color_mode="grayscale", target_size=(5, 25), class_mode="none"),
    "raw": dict(
        arrays={"x": digest(X), "y": [digest(RAW)]},
        target_size=(1, 17),
        color_mode="grayscale",
        class_mode="raw",
    ),
    "multi_output": dict(
        arrays={"x": digest(X), "y": [digest(y) for y in OUTPUTS]},
        target_size=(1, 17),
        color_mode="grayscale",
        class_mode="multi_output",
    ),
}


@pytest.mark.parametrize("kind", SPECS)
@pytest.mark.parametrize("limit", LIMITS)
def test_the_batch_limit_is_exact_and_counts_the_labels(
    servers: dict[int, str], kind: str, limit: int
) -> None:
    spec = StreamSpec.model_validate(
        {**SPECS[kind], "batch_size": BATCH, "shuffle": False, "epochs": 1}
    )
    url = servers[limit]
    if not LIMITS[limit]:
        response = httpx.post(f"{url}/v1/stream", json=spec.request_body(), timeout=30)
        assert response.status_code == 422, response.content[:300]
        body = response.json()
        assert [error["loc"] for error in body["detail"]] == [["body", "batch_size"]]
        assert f"{BATCH_BYTES} bytes" in body["message"]
        assert f"at most {limit} bytes" in body["message"]
        return
    with Client(url) as client, client.stream(spec) as stream:
        batch = stream.next_batch(timeout=60)
    assert batch.x.shape == (BATCH, *spec.target_size, 1) and batch.x.dtype == np.uint8
    if kind == "images":
        assert batch.y is None
        return
    np.testing.assert_array_equal(batch.x, X)
    expected = [RAW] if kind == "raw" else OUTPUTS
    got = [batch.y] if kind == "raw" else batch.y
    assert isinstance(got, list) and len(got) == len(expected)
    for y, want in zip(got, expected, strict=True):
        assert y is not None and y.dtype == want.dtype
        np.testing.assert_array_equal(y, want)
