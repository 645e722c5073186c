"""Watching the server: /metrics moves as streams run, /v1/status shows them, /readyz tells
the truth, every answer carries a request id, and previews are real, reproducible grids."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from augstream import Client, InvalidSpecError, NotFoundError, ServerError
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from augstream_service.metrics import STAGES

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus-client's own parser."""
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server(
    image_root: Path, corrupt_root: Path, request: pytest.FixtureRequest
) -> BackgroundServer:
    """A server of its own, so the counters start from zero (with ``request.param`` worker
    processes, whose figures come back through shared memory: ``reports``)."""
    processes = getattr(request, "param", 0)
    settings = Settings(
        datasets=[image_root, corrupt_root], threads=2, heartbeat_s=0.5, processes=processes
    )
    with BackgroundServer(create_app(settings)) as running:
        yield running


@pytest.mark.parametrize("server", [0, 2], indirect=True, ids=["threads", "processes"])
def test_metrics_move_as_a_stream_runs_and_status_shows_it(server: BackgroundServer) -> None:
    before = scrape(server.url)
    assert value(before, "augstream_active_streams") == 0
    with (
        Client(server.url) as client,
        client.stream(dataset="pets", target_size=(32, 32), batch_size=4, seed=1) as stream,
    ):
        for _ in range(6):
            stream.next_batch(timeout=30)
        during = scrape(server.url)
        status = httpx.get(f"{server.url}/v1/status", timeout=30).json()
    assert value(during, "augstream_active_streams") == 1
    assert value(during, "augstream_streams_total", dataset="pets") == 1
    assert value(during, "augstream_batches_total", dataset="pets") >= 6
    assert value(during, "augstream_images_total", dataset="pets") >= 24
    assert value(during, "augstream_sent_bytes_total", dataset="pets") >= 6 * 4 * 32 * 32 * 3
    for stage in STAGES:
        assert value(during, "augstream_stage_seconds_count", stage=stage) > 0, stage
    assert value(during, "augstream_decodes_total") >= 19
    assert value(during, "augstream_cache_lookups_total", cache="images", result="miss") >= 19
    # Epoch 2 and later find the decoded images in the cache.
    assert value(during, "augstream_cache_lookups_total", cache="images", result="hit") > 0

    [live] = status["streams"]
    assert live["dataset"] == "pets"
    assert live["client"].startswith("127.0.0.1:")
    assert live["batches"] >= 6 and live["batches_per_s"] > 0 and live["bytes_per_s"] > 0
    assert status["totals"]["streams"] == 1
    assert 0 < status["caches"]["images"]["hit_rate"] < 1

    deadline = time.monotonic() + 30
    while httpx.get(f"{server.url}/v1/status", timeout=30).json()["streams"]:
        assert time.monotonic() < deadline, "the ended stream stayed on the board"
        time.sleep(0.1)
    assert value(scrape(server.url), "augstream_active_streams") == 0


@pytest.mark.parametrize("server", [0, 2], indirect=True, ids=["threads", "processes"])
def test_errors_are_counted_by_kind(server: BackgroundServer) -> None:
    with Client(server.url) as client:
        with pytest.raises(NotFoundError):
            client.dataset("nope")
        with pytest.raises(InvalidSpecError):
            client.files(dataset="pets", classes=["wolf"])
        with (
            client.stream(dataset="broken", target_size=(8, 8), batch_size=4) as stream,
            pytest.raises(ServerError, match=r"000\.png"),
        ):
            for _ in range(4):
                stream.next_batch(timeout=30)
    samples = scrape(server.url)
    assert value(samples, "augstream_errors_total", kind="not_found") == 1
    assert value(samples, "augstream_errors_total", kind="invalid_spec") == 1
    assert value(samples, "augstream_errors_total", kind="corrupt_sample") >= 1
    assert value(samples, "augstream_errors_total", kind="stream_sample_error") == 1
    errors = httpx.get(f"{server.url}/v1/status", timeout=30).json()["errors"]
    assert errors["not_found"] == 1


def test_readyz_is_ready_with_listable_datasets_and_says_when_one_is_not(
    image_root: Path, tmp_path: Path
) -> None:
    ghost = tmp_path / "ghost"
    (ghost / "a").mkdir(parents=True)
    with BackgroundServer(create_app(Settings(datasets=[image_root, ghost]))) as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "datasets": 2}
    # A dataset that cannot be listed at all (a listed one that fails later keeps serving
    # what it had, so the server stays ready).
    (ghost / "a").rmdir()
    ghost.rmdir()
    with BackgroundServer(create_app(Settings(datasets=[image_root, ghost]))) as server:
        unready = httpx.get(f"{server.url}/readyz", timeout=30)
        assert unready.status_code == 503
        assert unready.json()["unavailable_datasets"] == 1
        assert "ghost" not in unready.text  # open to anyone: it names nothing


def test_every_answer_carries_a_request_id(server: BackgroundServer) -> None:
    made = httpx.get(f"{server.url}/v1/datasets", timeout=30).headers["x-request-id"]
    other = httpx.get(f"{server.url}/v1/datasets", timeout=30).headers["x-request-id"]
    assert made and made != other
    given = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "job-42.a"}, timeout=30)
    assert given.headers["x-request-id"] == "job-42.a"
    # Anything but a short plain token is replaced: it would end up in the operator's logs.
    odd = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "a b\tc"}, timeout=30)
    assert odd.headers["x-request-id"] != "a b\tc"


def decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_preview_is_a_reproducible_grid_of_the_streams_samples(server: BackgroundServer) -> None:
    spec = {"dataset": "pets", "target_size": (40, 40), "rotation_range": 30, "seed": 3}
    with Client(server.url) as client:
        grid = client.preview(**spec, rows=2, cols=3, tile=80)
        again = client.preview(**spec, rows=2, cols=3, tile=80)
        other_seed = client.preview(**{**spec, "seed": 4}, rows=2, cols=3, tile=80)
        wider = client.preview(**spec, rows=2, cols=5, tile=80)
    assert grid == again
    assert grid != other_seed
    image, wide = decode_png(grid), decode_png(wider)
    assert image.shape[0] == wide.shape[0] and image.shape[1] < wide.shape[1]
    # 40-pixel samples are shown twice as large (the tile asked for 80).
    assert image.shape[1] >= 3 * 80


def test_preview_shows_exactly_the_streamed_pixels(server: BackgroundServer) -> None:
    spec = {
        "dataset": "pets",
        "target_size": (16, 16),
        "horizontal_flip": True,
        "zoom_range": 0.2,
        "seed": 9,
    }
    with Client(server.url) as client:
        grid = decode_png(client.preview(**spec, rows=1, cols=2, tile=16))
        with client.stream(**spec, batch_size=2) as stream:
            x, _ = next(stream)
    first = cv2.cvtColor(grid[4:20, 4:20], cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(first, x[0])


def test_preview_query_parameters_and_bad_requests(server: BackgroundServer) -> None:
    url = f"{server.url}/v1/preview"
    flat = httpx.get(
        url,
        params={"dataset": "pets", "target_size": "[24,24]", "color_mode": "grayscale"},
        timeout=30,
    )
    assert flat.status_code == 200 and flat.headers["content-type"] == "image/png"
    as_json = httpx.get(
        url,
        params={
            "spec": json.dumps({"dataset": "pets", "target_size": [24, 24]}),
            "color_mode": "grayscale",
        },
        timeout=30,
    )
    assert as_json.content == flat.content
    for params, status, named in [
        ({"spec": "{not json"}, 422, "spec"),
        ({"dataset": "pets", "bogus": "1"}, 422, "bogus"),
        ({"dataset": "pets", "rotation_range": "-3"}, 422, "rotation_range"),
        ({"dataset": "pets", "rows": "8", "cols": "16"}, 422, "rows"),
        ({"dataset": "nope"}, 404, "nope"),
    ]:
        response = httpx.get(url, params=params, timeout=30)
        assert response.status_code == status, (params, response.text)
        assert named in response.json()["message"]
    assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
