"""Datasets in an S3 bucket (moto's server) and behind a plain HTTP server stream exactly
what the same images in a folder stream; shared caches decode each image once; a broken
dataset is named and the others keep streaming."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from augstream import Client, ServerError
from augstream_service import Settings, create_app
from augstream_service.background import BackgroundServer
from augstream_service.catalog import DatasetConfig
from tests.imagefolder import make_image_folder
from tests.stores import HttpFileServer, S3Server, write_manifest

pytestmark = pytest.mark.slow

SPEC: dict[str, Any] = {
    "target_size": (20, 24),
    "batch_size": 5,
    "seed": 7,
    "epochs": 1,
    "rotation_range": 20,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "class_mode": "categorical",
}


@pytest.fixture(scope="module")
def pets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_image_folder(tmp_path_factory.mktemp("remote") / "pets", per_class=(6, 5, 6))
    write_manifest(root)
    return root


@pytest.fixture(scope="module")
def s3(pets: Path, s3_server: S3Server) -> S3Server:
    s3_server.upload("lab", "pets", pets)
    return s3_server


@pytest.fixture(scope="module")
def web(pets: Path) -> Iterator[HttpFileServer]:
    with HttpFileServer(pets) as server:
        yield server


@pytest.fixture(autouse=True)
def _credentials(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_S3_KEY", s3.key)
    monkeypatch.setenv("LAB_S3_SECRET", s3.secret)


def count(folder: Path) -> int:
    """Images in ``folder``: the rows of its manifest."""
    return len((folder / "manifest.csv").read_text().splitlines()) - 1


def bucket(s3: S3Server, prefix: str = "pets", **options: Any) -> DatasetConfig:
    return DatasetConfig(
        url=f"s3://lab/{prefix}",
        storage_options={"endpoint_url": s3.url, "client_kwargs": {"region_name": "us-east-1"}},
        storage_options_env={"key": "LAB_S3_KEY", "secret": "LAB_S3_SECRET"},
        **options,
    )


def serve(folders: list[Path], catalog: dict[str, DatasetConfig], **settings: Any) -> Any:
    app = create_app(Settings(datasets=folders, catalog=catalog, threads=2, **settings))
    return BackgroundServer(app)


def epoch(url: str, dataset: str, **spec: Any) -> list[Any]:
    with Client(url) as client, client.stream(dataset=dataset, **{**SPEC, **spec}) as stream:
        return [stream.next_batch(timeout=60) for _ in range(len(stream))]


def test_folder_bucket_and_web_server_stream_byte_identical_batches(
    pets: Path, s3: S3Server, web: HttpFileServer
) -> None:
    catalog = {
        "bucket": bucket(s3),
        "bucket-manifest": bucket(s3, layout="manifest", manifest="manifest.csv"),
        "web": DatasetConfig(url=web.url, layout="manifest", manifest="manifest.csv"),
    }
    with serve([pets], catalog) as server:
        expected = epoch(server.url, "pets")
        assert sum(len(batch.sample_ids) for batch in expected) == count(pets)
        for name in catalog:
            got = epoch(server.url, name)
            assert len(got) == len(expected), name
            for mine, theirs in zip(got, expected, strict=True):
                assert mine.sample_ids == theirs.sample_ids, name
                assert mine.x.tobytes() == theirs.x.tobytes(), name
                np.testing.assert_array_equal(mine.y, theirs.y)
        info = httpx.get(f"{server.url}/v1/datasets/web").json()
        assert info["class_indices"] == {"cat": 0, "dog": 1, "fox": 2}


def test_streams_over_one_dataset_decode_each_image_once(pets: Path, s3: S3Server) -> None:
    images = count(pets)
    with serve([], {"bucket": bucket(s3)}) as server:
        seeds = range(6)
        with ThreadPoolExecutor(len(seeds)) as pool:
            epochs = list(pool.map(lambda seed: epoch(server.url, "bucket", seed=seed), seeds))
        figures = httpx.get(f"{server.url}/v1/cache").json()
    assert all(sum(len(b.sample_ids) for b in batches) == images for batches in epochs)
    assert figures["decodes"] == images  # distinct images, not 6 x as many
    assert figures["store_reads"] == images
    assert figures["images"]["entries"] == images
    assert figures["images"]["hits"] + figures["images"]["misses"] == 6 * images
    # Another target size decodes again, from the cached bytes: no more store reads.
    with serve([], {"bucket": bucket(s3)}, byte_cache_bytes=1 << 20) as server:
        epoch(server.url, "bucket", target_size=(8, 8))
        epoch(server.url, "bucket", target_size=(9, 9))
        figures = httpx.get(f"{server.url}/v1/cache").json()
    assert figures["decodes"] == 2 * images
    assert figures["store_reads"] == images and figures["bytes"]["hits"] == images


def test_broken_datasets_are_named_and_the_others_keep_streaming(
    pets: Path, s3: S3Server, tmp_path: Path
) -> None:
    gappy = tmp_path / "gappy"
    shutil.copytree(pets, gappy)
    (gappy / "cat" / "000.png").unlink()
    s3.upload("lab", "gappy", gappy)
    s3.upload("lab", "vanishing", pets)
    # Nothing listens on port 9; botocore's and s3fs' own retries are turned down to keep
    # the test short (an operator tunes them the same way).
    quick = {"connect_timeout": 1, "retries": {"max_attempts": 1}}
    down = DatasetConfig(
        url="s3://lab/pets",
        storage_options={
            "endpoint_url": "http://127.0.0.1:9",
            "anon": True,
            "config_kwargs": quick,
        },
        retries=1,
    )
    catalog = {
        "bucket": bucket(s3),
        "down": down,
        "wrong-key": DatasetConfig(
            url="s3://lab/pets",
            storage_options={"endpoint_url": s3.url, "key": s3.key, "secret": "not-the-secret"},
        ),
        "gappy": bucket(s3, prefix="gappy", layout="manifest", manifest="manifest.csv"),
        "vanishing": bucket(s3, prefix="vanishing"),
    }
    with serve([], catalog) as server, Client(server.url) as client:
        stream = client.stream(dataset="bucket", **{**SPEC, "epochs": None})
        with stream:
            stream.next_batch(timeout=60)
            expectations = {
                "wrong-key": (502, "access denied"),
                "gappy": (502, "names 'cat/000.png', which does not exist"),
                "down": (503, "did not answer"),
            }
            for name, (status, message) in expectations.items():
                answer = httpx.post(f"{server.url}/v1/stream", json={"dataset": name}, timeout=120)
                assert answer.status_code == status, answer.text
                detail = answer.json()["detail"]
                assert f"dataset {name!r} is unavailable" in detail and message in detail
                assert s3.secret not in detail and s3.url not in detail
                stream.next_batch(timeout=60)  # the good dataset keeps streaming
            with pytest.raises(ServerError, match="access denied"):
                client.stream(dataset="wrong-key").next_batch(timeout=60)
        listed = httpx.get(f"{server.url}/v1/datasets", timeout=120).json()["datasets"]
        assert [d["name"] for d in listed] == ["bucket", "vanishing"]
        # A file gone after listing ends its stream with an error naming dataset and file.
        s3.client().delete_object(Bucket="lab", Key="vanishing/cat/000.png")
        with pytest.raises(ServerError, match=r"vanishing/cat/000\.png'?\)?: .*does not exist"):
            epoch(server.url, "vanishing", shuffle=False)


def test_a_refresh_sees_new_files(pets: Path, s3: S3Server) -> None:
    s3.upload("lab", "growing", pets)
    with serve([], {"growing": bucket(s3, prefix="growing")}) as server:
        before = httpx.get(f"{server.url}/v1/datasets/growing").json()["samples"]
        s3.client().put_object(
            Bucket="lab", Key="growing/cat/new.png", Body=(pets / "cat" / "000.png").read_bytes()
        )
        assert httpx.get(f"{server.url}/v1/datasets/growing").json()["samples"] == before
        after = httpx.post(f"{server.url}/v1/datasets/growing/refresh").json()["samples"]
        assert after == before + 1
        batches = epoch(server.url, "growing", batch_size=6)
        assert sum(len(batch.sample_ids) for batch in batches) == after


def test_clients_cannot_name_a_store(pets: Path, s3: S3Server) -> None:
    with serve([pets], {"bucket": bucket(s3)}) as server:
        for name in ("s3://lab/pets", "../pets", f"{s3.url}/lab/pets", "lab/pets"):
            answer = httpx.post(f"{server.url}/v1/stream", json={"dataset": name}, timeout=30)
            assert answer.status_code == 422, name
            assert "dataset" in answer.text
