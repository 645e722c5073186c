"""Streams from a live server: shapes, labels, determinism, shards, epochs, resume points."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from augstream import Batch, Client, Stream
from augstream._body import _socket_body, socket_frames
from augstream._http import iter_frames
from augstream_protocol.spec import StreamSpec
from augstream_protocol.wire import FrameDecoder, FrameKind
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from augstream_service.sources import list_class_folders
from augstream_service.stores import Store

AUGMENT = dict(
    rotation_range=25,
    width_shift_range=0.1,
    height_shift_range=0.15,
    shear_range=10,
    zoom_range=0.2,
    horizontal_flip=True,
    vertical_flip=True,
    channel_shift_range=20,
    brightness_range=(0.7, 1.3),
    fill_mode="reflect",
)


def take(stream: Stream, count: int) -> list[Batch]:
    return [stream.next_batch(timeout=60) for _ in range(count)]


def same(a: list[Batch], b: list[Batch]) -> bool:
    return all(
        (p.epoch, p.index, p.sample_ids) == (q.epoch, q.index, q.sample_ids)
        and p.x.tobytes() == q.x.tobytes()
        and (p.y is None) == (q.y is None)
        and (p.y is None or q.y is None or p.y.tobytes() == q.y.tobytes())
        for p, q in zip(a, b, strict=True)
    )


@pytest.fixture
def client(server_url: str):
    with Client(server_url) as c:
        yield c


def test_datasets_are_listed_with_sorted_class_indices(client: Client) -> None:
    names = [d.name for d in client.datasets()]
    assert names == ["broken", "pets"]
    pets = client.dataset("pets")
    assert pets.class_indices == {"cat": 0, "dog": 1, "fox": 2}
    assert pets.samples == 19  # 7 + 5 + 6, plus one image in a nested folder; notes.txt ignored
    assert pets.class_counts == {"cat": 8, "dog": 5, "fox": 6}


@pytest.mark.parametrize(("color_mode", "channels"), [("rgb", 3), ("grayscale", 1), ("rgba", 4)])
def test_batches_have_the_requested_shape_and_dtype(
    client: Client, color_mode: str, channels: int
) -> None:
    with client.stream(
        dataset="pets", target_size=(24, 40), color_mode=color_mode, batch_size=8, seed=1, **AUGMENT
    ) as stream:
        x, y = next(stream)
    assert x.shape == (8, 24, 40, channels)
    assert x.dtype == np.uint8
    assert y.shape == (8, 3) and y.dtype == np.float32


def test_labels_follow_the_folder_of_each_sample(client: Client, image_root: Path) -> None:
    listing = list_class_folders(Store(str(image_root)))
    with client.stream(
        dataset="pets", target_size=(16, 16), batch_size=5, seed=3, class_mode="sparse", epochs=1
    ) as stream:
        batches = take(stream, len(stream))
    seen = []
    for batch in batches:
        assert batch.y is not None
        np.testing.assert_array_equal(batch.y, listing.labels[batch.sample_ids].astype(np.float32))
        seen += batch.sample_ids
    assert sorted(seen) == list(range(19))


@pytest.mark.parametrize(
    ("class_mode", "expect"),
    [("categorical", (4, 3)), ("sparse", (4,)), ("input", "x"), ("none", None)],
)
def test_class_modes(client: Client, class_mode: str, expect: object) -> None:
    with client.stream(
        dataset="pets", target_size=(8, 8), batch_size=4, seed=0, class_mode=class_mode
    ) as stream:
        item = next(stream)
    if expect is None:
        assert isinstance(item, np.ndarray) and item.shape == (4, 8, 8, 3)
        return
    x, y = item
    if expect == "x":
        assert y is x
    else:
        assert y.shape == expect
        if class_mode == "categorical":
            np.testing.assert_array_equal(y.sum(axis=1), 1.0)


def test_binary_mode_with_two_selected_classes(client: Client) -> None:
    with client.stream(
        dataset="pets",
        target_size=(8, 8),
        batch_size=11,
        seed=0,
        epochs=1,
        classes=["fox", "dog"],
        class_mode="binary",
        shuffle=False,
    ) as stream:
        _, y = next(stream)
    assert stream.class_indices == {"fox": 0, "dog": 1}
    assert stream.samples == 11
    # Keras' order: the classes in the order given, so the six foxes (0) come first.
    np.testing.assert_array_equal(y, [0] * 6 + [1] * 5)


def test_float32_with_rescale_and_samplewise_normalisation(client: Client) -> None:
    with client.stream(
        dataset="pets", target_size=(16, 16), batch_size=4, seed=0, rescale=1 / 255
    ) as stream:
        x, _ = next(stream)
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    with client.stream(
        dataset="pets",
        target_size=(16, 16),
        batch_size=4,
        seed=0,
        samplewise_std_normalization=True,
    ) as stream:
        x, _ = next(stream)
    assert stream.spec.samplewise_center
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(1, 2, 3)), 1.0, atol=1e-3)


def test_same_spec_gives_byte_identical_streams(client: Client) -> None:
    spec = dict(dataset="pets", target_size=(32, 32), batch_size=6, seed=11, **AUGMENT)
    with client.stream(**spec) as a, client.stream(**spec) as b:
        first, second = take(a, 8), take(b, 8)
    assert same(first, second)
    with client.stream(**{**spec, "seed": 12}) as c:
        other = take(c, 8)
    assert not same(first, other)


def test_stream_is_identical_whatever_the_server_thread_count(
    client: Client, image_root: Path
) -> None:
    spec = dict(dataset="pets", target_size=(32, 32), batch_size=6, seed=5, **AUGMENT)
    with client.stream(**spec) as stream:
        reference = take(stream, 7)
    app = create_app(Settings(datasets=[image_root], threads=1, prefetch=1))
    with (
        BackgroundServer(app) as other,
        Client(other.url) as other_client,
        other_client.stream(**spec) as stream,
    ):
        assert same(reference, take(stream, 7))


def test_epochs_wrap_reshuffle_and_end(client: Client) -> None:
    with client.stream(
        dataset="pets", target_size=(8, 8), batch_size=4, seed=2, epochs=2
    ) as stream:
        assert len(stream) == 5  # ceil(19 / 4)
        batches = []
        while True:
            try:
                batches.append(stream.next_batch(timeout=60))
            except StopIteration:
                break
    assert [(b.epoch, b.index) for b in batches] == [(e, i) for e in range(2) for i in range(5)]
    assert [len(b.sample_ids) for b in batches[:5]] == [4, 4, 4, 4, 3]  # last one short
    epoch0 = [i for b in batches[:5] for i in b.sample_ids]
    epoch1 = [i for b in batches[5:] for i in b.sample_ids]
    assert sorted(epoch0) == sorted(epoch1) == list(range(19))
    assert epoch0 != epoch1  # reshuffled each epoch


def test_shards_are_disjoint_and_cover_each_epoch(client: Client) -> None:
    spec = dict(dataset="pets", target_size=(8, 8), batch_size=3, seed=9, epochs=2)
    per_shard = []
    for index in range(3):
        with client.stream(**spec, shard=(index, 3)) as stream:
            batches = _drain(stream)
        per_shard.append(batches)
    for epoch in range(2):
        ids = [i for shard in per_shard for b in shard if b.epoch == epoch for i in b.sample_ids]
        assert sorted(ids) == list(range(19))


def _drain(stream: Stream) -> list[Batch]:
    out = []
    while True:
        try:
            out.append(stream.next_batch(timeout=60))
        except StopIteration:
            return out


def test_start_resumes_mid_stream_with_the_same_bytes(client: Client) -> None:
    spec = dict(dataset="pets", target_size=(16, 16), batch_size=4, seed=4, **AUGMENT)
    with client.stream(**spec) as stream:
        full = take(stream, 12)
    with client.stream(**spec, start=(1, 2)) as stream:
        tail = take(stream, 5)
    assert same(full[7:], tail)


def test_a_sample_looks_the_same_in_any_batch_size_or_shard(client: Client) -> None:
    base = dict(dataset="pets", target_size=(16, 16), seed=8, epochs=1, **AUGMENT)
    with client.stream(**base, batch_size=19) as stream:
        whole = stream.next_batch(timeout=60)
    by_id = {i: whole.x[k] for k, i in enumerate(whole.sample_ids)}
    with client.stream(**base, batch_size=2, shard=(1, 2)) as stream:
        for batch in _drain(stream):
            for k, i in enumerate(batch.sample_ids):
                np.testing.assert_array_equal(batch.x[k], by_id[i])


def test_the_body_is_read_from_the_socket_and_gives_httpx_s_frames(server_url: str) -> None:
    """The client reads streams from the connection's socket (``augstream._body``); this
    fails when an httpx or httpcore release moves the internals it reaches for (streams
    would still work, through httpx, at several times the CPU)."""
    spec = StreamSpec(dataset="pets", target_size=(32, 32), batch_size=4, seed=5, epochs=1)
    with httpx.Client(base_url=server_url, timeout=30) as http:
        with http.stream("POST", "/v1/stream", json=spec.request_body()) as response:
            body = _socket_body(response)
            assert body is not None
            fast = [(f.kind, bytes(f.body)) for f in socket_frames(body, 1 << 30)]
        with http.stream("POST", "/v1/stream", json=spec.request_body()) as response:
            slow = [(f.kind, bytes(f.body)) for f in iter_frames(response, FrameDecoder())]
    assert fast == slow
    assert [kind for kind, _ in fast].count(FrameKind.BATCH) > 1
    assert fast[-1][0] == FrameKind.END


def test_the_header_leaves_default_fields_out_so_older_clients_can_read_it(
    server_url: str,
) -> None:
    """A client's spec model refuses fields it does not know; a header that listed every
    field of a newer server would break every older client, even on streams that use
    nothing new."""
    request = {"dataset": "pets", "target_size": [8, 8], "batch_size": 4, "seed": 2, "epochs": 1}
    with (
        httpx.Client(base_url=server_url, timeout=30) as http,
        http.stream("POST", "/v1/stream", json=request) as response,
    ):
        header = next(iter_frames(response, FrameDecoder())).json()
    # Nothing at its default, nothing new: the request's fields and the dtype the server
    # resolved.
    assert set(header["spec"]) == {*request, "dtype"}
    assert StreamSpec.model_validate(header["spec"]) == StreamSpec.model_validate(
        {**request, "dtype": header["spec"]["dtype"]}
    )
