"""Uploaded arrays through a live server: content-addressed uploads with limits, streams over
in-memory images (``flow``) and over files named by table rows (``flow_from_dataframe``)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from augstream import Client, InvalidSpecError, NotFoundError, ServerError, TooLargeError
from augstream_protocol.npy import encode_npy
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer

RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, (37, 12, 10, 3), dtype=np.uint8)
LABELS = np.arange(37) % 4


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A .npy file that is only a header: what a shape claims, with no data behind it."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def put(url: str, body: bytes, digest: str | None = None) -> httpx.Response:
    digest = digest or hashlib.sha256(body).hexdigest()
    return httpx.put(f"{url}/v1/arrays/{digest}", content=body, timeout=30)


def read_all(stream) -> list:  # type: ignore[no-untyped-def]
    with stream:
        return [stream.next_batch() for _ in range(len(stream))]


@pytest.fixture(scope="module")
def small_server(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server that accepts uploads of at most 4 KiB and keeps at most 10 KiB of them."""
    settings = Settings(
        datasets=[image_root],
        upload_dir=tmp_path_factory.mktemp("small-store"),
        max_upload_bytes=4096,
        upload_store_bytes=10_000,
    )
    with BackgroundServer(create_app(settings)) as server:
        yield server.url


def test_uploads_are_content_addressed_and_sent_once(server_url: str) -> None:
    puts: list[str] = []
    with Client(server_url) as client:
        client._http.event_hooks["request"].append(
            lambda request: puts.append(request.url.path) if request.method == "PUT" else None
        )
        first = client.upload(IMAGES)
        again = client.upload(IMAGES.copy())
        assert first == again == encode_npy(IMAGES).digest
        assert len(puts) == 1, "the second upload of the same content must send nothing"
        info = httpx.get(f"{server_url}/v1/arrays/{first}").json()
    assert info == {
        "digest": first,
        "dtype": "|u1",
        "shape": [37, 12, 10, 3],
        "nbytes": len(npy(IMAGES)),
    }


def test_too_large_uploads_get_413_and_the_server_keeps_serving(small_server: str) -> None:
    body = npy(np.zeros(2000, dtype=np.float32))
    response = put(small_server, body)
    assert response.status_code == 413
    assert "at most 4096 bytes" in response.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    digest = hashlib.sha256(body).hexdigest()
    response = httpx.put(f"{small_server}/v1/arrays/{digest}", content=chunks(), timeout=30)
    assert response.status_code == 413
    with Client(small_server) as client:
        with pytest.raises(TooLargeError, match="at most 4096 bytes"):
            client.upload(np.zeros(2000, dtype=np.float32))
        assert client.health()
        assert client.upload(np.zeros(10, dtype=np.float32))


@pytest.mark.parametrize(
    ("body", "digest", "message"),
    [
        (npy(np.arange(4)), "0" * 64, "SHA-256"),
        (npy(np.array([{"a": 1}], dtype=object)), None, "not accepted"),
        (npy(np.arange(100))[:-8], None, "its header says"),
        (b"not an npy file at all", None, "not a .npy array"),
        (npy(np.asfortranarray(np.ones((3, 4)))), None, "Fortran"),
        (npy_header("<U0", (10**8,)), None, "not accepted"),
        (npy_header("|u1", (2**32, 2**32)), None, "its header says"),
        (npy_header("<f4", (10**12, 0)), None, "hold no data"),
        (npy(np.float32(3)), None, "1 to 8 dimensions"),
    ],
    ids=[
        "wrong-digest",
        "pickled-objects",
        "truncated",
        "garbage",
        "fortran",
        "empty-items",
        "wrapping-shape",
        "empty-rows",
        "scalar",
    ],
)
def test_bad_uploads_get_422_naming_the_problem(
    server_url: str, body: bytes, digest: str | None, message: str
) -> None:
    response = put(server_url, body, digest)
    assert response.status_code == 422
    assert message in response.json()["message"]
    assert httpx.get(f"{server_url}/healthz").status_code == 200


def test_the_store_evicts_the_least_recently_used_arrays(small_server: str) -> None:
    with Client(small_server) as client:
        names = [client.upload(np.full(700, i, dtype=np.float32)) for i in range(4)]
        # 4 x ~2.9 KB does not fit in 10 KB: the first one made room for the last.
        with pytest.raises(NotFoundError, match="upload it first"):
            client.stream(arrays={"x": names[0]}, class_mode="none", target_size=(1, 1))
        assert httpx.get(f"{small_server}/v1/arrays/{names[-1]}").status_code == 200


def test_flow_streams_uploaded_images_and_labels_unchanged(server_url: str) -> None:
    with Client(server_url) as client:
        refs = {
            "x": client.upload(IMAGES),
            "y": [client.upload(LABELS)],
            "sample_weight": client.upload(LABELS * 0.5),
        }
        stream = client.stream(
            arrays=refs,
            class_mode="raw",
            target_size=(12, 10),
            batch_size=8,
            shuffle=False,
            epochs=1,
        )
        assert stream.header.dataset == "arrays" and stream.samples == 37
        batches = read_all(stream)
    x = np.concatenate([b.x for b in batches])
    np.testing.assert_array_equal(x, IMAGES)
    np.testing.assert_array_equal(np.concatenate([b.y for b in batches]), LABELS)
    np.testing.assert_array_equal(np.concatenate([b.sample_weight for b in batches]), LABELS / 2)
    x0, y0, w0 = batches[0].as_keras()
    assert x0.shape == (8, 12, 10, 3) and y0.dtype == LABELS.dtype and w0.dtype == np.float64


def test_flow_augments_reproducibly_and_splits_rows_like_keras(server_url: str) -> None:
    floats = IMAGES.astype(np.float32) / 255
    spec = dict(
        target_size=(12, 10),
        class_mode="raw",
        batch_size=5,
        seed=3,
        epochs=1,
        rotation_range=30,
        horizontal_flip=True,
        dtype="float32",
        validation_split=0.3,
        subset="validation",
    )
    with Client(server_url) as client:
        refs = {"x": client.upload(floats), "y": [client.upload(LABELS)]}
        first = read_all(client.stream(arrays=refs, **spec))
        second = read_all(client.stream(arrays=refs, **spec))
        rows = client.files(arrays=refs, **spec).rows
        with pytest.raises(InvalidSpecError, match="dtype='uint8' cannot carry"):
            client.stream(arrays=refs, **{**spec, "dtype": "uint8"})
        with pytest.raises(InvalidSpecError, match="their own size"):
            client.stream(arrays=refs, **{**spec, "target_size": (24, 20)})
    assert rows == list(range(int(37 * 0.3)))  # the first rows, as Keras splits arrays
    for a, b in zip(first, second, strict=True):
        assert a.x.tobytes() == b.x.tobytes()
    x = np.concatenate([b.x for b in first])
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    ids = np.concatenate([b.sample_ids for b in first])
    assert not np.allclose(x, floats[rows][ids])  # augmented
    np.testing.assert_array_equal(np.concatenate([b.y for b in first]), LABELS[rows][ids])


def test_dataframe_rows_stream_the_same_as_the_folder(server_url: str) -> None:
    """Rows naming a dataset's files, labelled as the folders label them, give the very same
    batches as the folder itself: a sample is a function of (seed, epoch, sample id)."""
    spec = dict(
        dataset="pets",
        target_size=(16, 16),
        batch_size=4,
        seed=11,
        epochs=1,
        rotation_range=20,
        zoom_range=0.2,
    )
    with Client(server_url) as client:
        listing = client.files(dataset="pets")
        names = np.asarray(listing.files)
        refs = {
            "filenames": client.upload(names),
            "y": [client.upload(np.asarray(listing.labels, dtype=np.int32))],
        }
        classes = list(listing.class_indices)
        folder = read_all(client.stream(**spec))
        rows = read_all(client.stream(arrays=refs, classes=classes, **spec))
    for a, b in zip(folder, rows, strict=True):
        assert a.sample_ids == b.sample_ids
        assert a.x.tobytes() == b.x.tobytes()
        np.testing.assert_array_equal(a.y, b.y)


def test_dataframe_rows_are_validated_and_never_leave_the_dataset(server_url: str) -> None:
    with Client(server_url) as client:
        names = ["cat/000.png", "missing.png", "cat/notes.txt", "dog/000.png"]
        refs = {"filenames": client.upload(np.asarray(names)), "validate_filenames": True}
        listing = client.files(dataset="pets", arrays=refs, class_mode="none")
        assert listing.files == ["cat/000.png", "dog/000.png"] and listing.rows == [0, 3]
        for bad in ["../broken/cat/000.png", "/etc/passwd", "cat/../../x.png", "a\\b.png"]:
            refs = {"filenames": client.upload(np.asarray(["cat/000.png", bad]))}
            with pytest.raises(InvalidSpecError, match=r"arrays\.filenames.*row 1"):
                client.stream(dataset="pets", arrays=refs, class_mode="none")
        # Without validation a missing file is a sample error in the stream, named.
        refs = {"filenames": client.upload(np.asarray(["cat/000.png", "gone.png"]))}
        stream = client.stream(
            dataset="pets", arrays=refs, class_mode="none", epochs=1, batch_size=2, shuffle=False
        )
        with pytest.raises(ServerError, match=r"gone\.png"):
            stream.next_batch()
        stream.close()


def test_label_kinds_over_rows(server_url: str) -> None:
    names = np.asarray(["cat/000.png", "cat/001.jpg", "dog/000.png", "fox/000.png"])
    multi_hot = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.uint8)
    with Client(server_url) as client:
        files = client.upload(names)
        base = dict(dataset="pets", target_size=(8, 8), batch_size=4, shuffle=False, epochs=1)
        categorical = read_all(
            client.stream(
                arrays={"filenames": files, "y": [client.upload(multi_hot)]},
                classes=["a", "b"],
                **base,
            )
        )[0]
        # The last row has no label among the classes: left out, as Keras drops such rows.
        np.testing.assert_array_equal(categorical.y, multi_hot[:3].astype(np.float32))
        sparse = read_all(
            client.stream(
                arrays={"filenames": files, "y": [client.upload(np.array([1, -1, 0, 1]))]},
                classes=["a", "b"],
                class_mode="sparse",
                **base,
            )
        )[0]
        assert client.files(
            arrays={"filenames": files, "y": [client.upload(np.array([1, -1, 0, 1]))]},
            classes=["a", "b"],
            class_mode="sparse",
            dataset="pets",
        ).rows == [0, 2, 3]
        np.testing.assert_array_equal(sparse.y, [1.0, 0.0, 1.0])
        outputs = [np.arange(4.0), np.arange(8).reshape(4, 2)]
        multi = read_all(
            client.stream(
                arrays={"filenames": files, "y": [client.upload(o) for o in outputs]},
                class_mode="multi_output",
                **base,
            )
        )[0]
        assert isinstance(multi.y, list) and len(multi.y) == 2
        for got, want in zip(multi.y, outputs, strict=True):
            np.testing.assert_array_equal(got, want)
        with pytest.raises(InvalidSpecError, match=r"class indices must lie in \[0, 2\)"):
            client.stream(
                arrays={"filenames": files, "y": [client.upload(np.arange(4))]},
                classes=["a", "b"],
                class_mode="sparse",
                **base,
            )
        with pytest.raises(InvalidSpecError, match="has 3 rows; the images have 4"):
            client.stream(
                arrays={"filenames": files, "y": [client.upload(np.arange(3.0))]},
                class_mode="raw",
                **base,
            )


def test_eviction_follows_use_not_upload_order(small_server: str) -> None:
    with Client(small_server) as client:
        hot = client.upload(np.full(700, 100, dtype=np.float32))
        cold = client.upload(np.full(700, 101, dtype=np.float32))
        time.sleep(1.1)  # file times have a resolution; make "later" unambiguous
        assert httpx.get(f"{small_server}/v1/arrays/{hot}").status_code == 200  # a use
        for i in range(2):
            client.upload(np.full(700, 102 + i, dtype=np.float32))
        assert httpx.get(f"{small_server}/v1/arrays/{hot}").status_code == 200
        assert httpx.get(f"{small_server}/v1/arrays/{cold}").status_code == 404


def test_parallel_uploads_stay_within_the_store_budget(small_server: str) -> None:
    arrays = [np.full(700, 200 + i, dtype=np.float32) for i in range(12)]
    with Client(small_server) as client, ThreadPoolExecutor(12) as pool:
        names = list(pool.map(client.upload, arrays))
        present = [httpx.get(f"{small_server}/v1/arrays/{n}").json() for n in names]
    stored = sum(p["nbytes"] for p in present if "nbytes" in p)
    assert 0 < stored <= 10_000  # the store's budget, whatever the interleaving


def test_long_file_names_are_invalid_rows_not_errors(server_url: str) -> None:
    with Client(server_url) as client:
        names = np.asarray(["cat/000.png", "x" * 300 + ".png", "cat/" + "y" * 5000 + ".png"])
        refs = {"filenames": client.upload(names), "validate_filenames": True}
        assert client.files(dataset="pets", arrays=refs, class_mode="none").rows == [0]


def test_bodies_of_callers_without_a_key_are_never_read(image_root: Path) -> None:
    settings = Settings(datasets=[image_root], api_keys=["k"])
    with BackgroundServer(create_app(settings)) as server:
        big = b"{" + b" " * (64 << 20) + b"}"
        response = httpx.post(
            f"{server.url}/v1/files",
            content=big,
            timeout=60,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 401
        keyed = {"Authorization": "Bearer k", "content-type": "application/json"}
        response = httpx.post(f"{server.url}/v1/files", content=big, headers=keyed, timeout=60)
        assert response.status_code == 413 and "too large for a spec" in response.text
        chunked = httpx.post(f"{server.url}/v1/files", content=iter([b"{}"]), headers=keyed)
        assert chunked.status_code == 411
        assert httpx.get(f"{server.url}/openapi.json").status_code == 200  # the reference
