"""Bad input gets a clear error naming what was wrong, and the server keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from augstream import Client, InvalidSpecError, NotFoundError, ServerError
from augstream_protocol.wire import FrameDecoder, FrameKind, decode_batch
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from tests.conftest import LiveServer


def post(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/stream", json=body, timeout=30)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataset": "pets", "batch_size": 0}, "batch_size"),
        ({"dataset": "pets", "rotation_rnage": 10}, "rotation_rnage"),
        ({"dataset": "pets", "target_size": [100000, 10]}, "target_size"),
        ({"dataset": "pets", "color_mode": "cmyk"}, "color_mode"),
        ({"dataset": "pets", "zoom_range": [2, 1]}, "zoom_range"),
        ({"dataset": "pets", "shard": {"index": 3, "count": 3}}, "shard"),
        ({"dataset": "../etc", "batch_size": 2}, "dataset"),
        ({"batch_size": 2}, "dataset"),
        ({"dataset": "pets", "dtype": "uint8", "rescale": 0.5}, "dtype"),
        ({"dataset": "pets", "class_mode": "binary"}, "class_mode"),
        ({"dataset": "pets", "classes": ["cat", "wolf"]}, "classes"),
        ({"dataset": "pets", "batch_size": 4096, "target_size": [2048, 2048]}, "batch_size"),
        ({"dataset": "pets", "start": [0, 99]}, "start"),
        ({"dataset": "pets", "channel_shift_range": 1e308}, "channel_shift_range"),
        ({"dataset": "pets", "rescale": 1e300}, "rescale"),
        ({"dataset": "pets", "shard": [25, 30]}, "shard"),
        ({"dataset": "pets", "batch_size": 10**9}, "batch_size"),
        ({"dataset": "pets", "batch_size": -3}, "batch_size"),
        ({"dataset": "pets", "target_size": [-1, 8]}, "target_size"),
        ({"dataset": "pets", "target_size": [0, 0]}, "target_size"),
        ({"dataset": "pets", "batch_size": "ten"}, "batch_size"),
        ({"dataset": "pets", "horizontal_flip": "maybe"}, "horizontal_flip"),
        ({"dataset": "pets", "seed": -1}, "seed"),
        ({"dataset": "pets", "arrays": {"x": "../../etc/passwd"}}, "arrays"),
    ],
)
def test_bad_specs_get_422_naming_the_field(server_url: str, body: object, field: str) -> None:
    response = post(server_url, body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert field in payload["message"]
    assert any(field in [str(p) for p in d["loc"]] or field in d["msg"] for d in payload["detail"])


def test_malformed_json_gets_422(server_url: str) -> None:
    response = httpx.post(
        f"{server_url}/v1/stream",
        content=b"{nope",
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "message" in response.json()


def test_unknown_dataset_gets_404(server_url: str) -> None:
    response = post(server_url, {"dataset": "unicorns"})
    assert response.status_code == 404
    assert "unicorns" in response.json()["message"]
    assert httpx.get(f"{server_url}/v1/datasets/unicorns").status_code == 404
    with Client(server_url) as client, pytest.raises(NotFoundError, match="unicorns"):
        client.stream(dataset="unicorns")


def test_client_raises_the_server_message(server_url: str) -> None:
    with Client(server_url) as client:
        with pytest.raises(InvalidSpecError, match="class_mode='binary' needs exactly 2"):
            client.stream(dataset="pets", class_mode="binary")
        # Locally invalid specs never reach the server; pydantic names the field.
        with pytest.raises(ValueError, match="rotation_range"):
            client.stream(dataset="pets", rotation_range=-1)


def test_corrupt_image_stops_the_stream_with_an_error_frame_naming_the_file(
    live_server: LiveServer,
) -> None:
    with Client(live_server.url) as client:
        stream = client.stream(dataset="broken", target_size=(8, 8), batch_size=4, shuffle=False)
        with pytest.raises(ServerError, match=r"broken/dog/000\.png.*not a decodable image"):
            for _ in range(5):
                stream.next_batch(timeout=60)
        stream.close()
        # The server keeps serving, other streams and datasets alike.
        assert client.health()
        with client.stream(dataset="pets", target_size=(8, 8), batch_size=4) as ok:
            x, _ = next(ok)
            assert x.shape == (4, 8, 8, 3)


def test_plain_http_client_can_read_a_finite_stream(server_url: str) -> None:
    """The body is the same spec as JSON, so curl (here: a bare httpx) works too."""
    body = {"dataset": "pets", "target_size": [8, 8], "batch_size": 10, "seed": 1, "epochs": 1}
    decoder = FrameDecoder()
    with httpx.stream("POST", f"{server_url}/v1/stream", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/vnd.augstream.v1")
        frames = [f for chunk in response.iter_raw() for f in decoder.feed(chunk)]
    decoder.close()
    # A busy machine may put heartbeats anywhere between the frames that carry data.
    frames = [f for f in frames if f.kind != FrameKind.HEARTBEAT]
    kinds = [f.kind for f in frames]
    assert kinds == [FrameKind.HEADER, FrameKind.BATCH, FrameKind.BATCH, FrameKind.END]
    header = frames[0].json()
    assert header["protocol"] == 1 and header["batches_per_epoch"] == 2
    assert header["spec"]["seed"] == 1
    batch = decode_batch(frames[1].body)
    assert batch.arrays["x"].shape == (10, 8, 8, 3) and batch.arrays["x"].dtype == np.uint8


def test_disconnecting_clients_free_their_stream_slots(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        streams = [
            client.stream(dataset="pets", target_size=(64, 64), batch_size=16, seed=s)
            for s in range(3)
        ]
        for stream in streams:
            next(stream)
        assert live_server.active_streams >= 3
        for stream in streams:
            stream.close()
    deadline = time.monotonic() + 15
    while live_server.active_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_server.active_streams == 0


def test_slow_batches_are_preceded_by_heartbeats(image_root: Path) -> None:
    """While a batch takes longer than the heartbeat interval, heartbeat frames keep the
    connection busy, so clients' per-read timeouts do not fire."""
    settings = Settings(datasets=[image_root], threads=1, prefetch=1, heartbeat_s=0.01)
    body = {
        "dataset": "pets",
        "target_size": [384, 384],
        "batch_size": 19,
        "epochs": 1,
        "rotation_range": 30,
        "dtype": "float32",
    }
    with BackgroundServer(create_app(settings)) as server:
        decoder = FrameDecoder()
        with httpx.stream("POST", f"{server.url}/v1/stream", json=body, timeout=60) as response:
            kinds = [f.kind for chunk in response.iter_raw() for f in decoder.feed(chunk)]
    assert kinds[0] == FrameKind.HEADER and kinds[-1] == FrameKind.END
    first_batch = kinds.index(FrameKind.BATCH)
    assert FrameKind.HEARTBEAT in kinds[1:first_batch]


def test_openapi_schema_and_docs_are_served(server_url: str) -> None:
    schema = httpx.get(f"{server_url}/openapi.json", timeout=30)
    assert schema.status_code == 200
    assert "/v1/stream" in schema.json()["paths"]
    assert httpx.get(f"{server_url}/docs", timeout=30).status_code == 200


def test_a_vanished_dataset_folder_is_a_clear_502_and_others_keep_serving(
    image_root: Path, tmp_path: Path
) -> None:
    ghost = tmp_path / "ghost"
    (ghost / "a").mkdir(parents=True)
    app = create_app(Settings(datasets=[image_root, ghost]))
    ghost.joinpath("a").rmdir()
    ghost.rmdir()
    with BackgroundServer(app) as server:
        response = post(server.url, {"dataset": "ghost"})
        # Final (not worth retrying until the operator acts): 502, not 503.
        assert response.status_code == 502
        assert "'ghost' is unavailable: the dataset's root: does not exist" in response.text
        assert str(tmp_path) not in response.text  # no server paths in answers
        listed = httpx.get(f"{server.url}/v1/datasets", timeout=30).json()["datasets"]
        assert [d["name"] for d in listed] == ["pets"]


def test_batches_are_writable_arrays(server_url: str) -> None:
    with (
        Client(server_url) as client,
        client.stream(dataset="pets", target_size=(8, 8), rescale=1 / 255) as stream,
    ):
        x, y = next(stream)
        x /= 2.0  # in place, as preprocess_input functions do
        y[0] = 0.0


def test_close_wakes_a_reader_blocked_in_another_thread(server_url: str) -> None:
    import threading

    from augstream import StreamClosedError

    with Client(server_url) as client:
        stream = client.stream(dataset="pets", target_size=(8, 8), batch_size=4, seed=1)
        next(stream)
        outcome: list[BaseException] = []

        def drain() -> None:
            try:
                while True:
                    stream.next_batch(timeout=60)
            except BaseException as exc:  # the test inspects what ended it
                outcome.append(exc)

        reader = threading.Thread(target=drain)
        reader.start()
        time.sleep(0.3)
        started = time.monotonic()
        stream.close()
        reader.join(timeout=20)
        assert not reader.is_alive()
        assert time.monotonic() - started < 10
        assert isinstance(outcome[0], StreamClosedError)
        with pytest.raises(StreamClosedError):
            stream.next_batch(timeout=1)
