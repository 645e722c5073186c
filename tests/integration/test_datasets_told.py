"""Datasets that cannot work are named when the server starts, and say why they are empty;
a client asking whether an array is there before uploading it is not an error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from augstream import Client, InvalidSpecError, NotFoundError
from tests.integration.test_observability import scrape, value
from tests.reliability.conftest import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``augstream serve`` over ``pets`` and ``flat``, a folder of images without class
    folders, logging to a file."""
    flat = tmp_path_factory.mktemp("flat") / "flat"
    flat.mkdir()
    for n in range(3):
        cv2.imwrite(str(flat / f"{n}.png"), np.full((8, 8, 3), 40 * n, np.uint8))
    log = tmp_path_factory.mktemp("log") / "serve.log"
    server = ServerProcess(image_root, flat, log=log).start()
    yield server
    server.stop()


def test_serve_names_a_folder_without_class_folders(served: ServerProcess) -> None:
    assert served.log is not None
    lines = served.log.read_text().splitlines()
    [warning] = [line for line in lines if " WARNING " in line]
    assert "WARNING augstream" in warning
    assert "dataset 'flat' (" in warning and "has no images: its 3 images lie at its top level"
    assert "one subfolder per class (flat/cat/*.jpg, flat/dog/*.jpg, ...)" in warning
    assert any('pip install "augstream[keras] @ http://127.0.0.1:' in line for line in lines)


def test_an_empty_dataset_says_why(served: ServerProcess) -> None:
    info = httpx.get(f"{served.url}/v1/datasets/flat").json()
    assert info["samples"] == 0 and "3 images lie at its top level" in info["note"]
    assert httpx.get(f"{served.url}/v1/datasets/pets").json()["note"] is None
    with Client(served.url) as client:
        assert "class folders" in (client.dataset("flat").note or "")
        with pytest.raises(InvalidSpecError, match="has no images: its 3 images lie at its top"):
            client.stream(dataset="flat")


def test_an_upload_probe_is_no_error(served: ServerProcess) -> None:
    with Client(served.url) as client:
        client.upload(np.arange(7, dtype=np.int16))  # asked for first: 404, then sent
        client.upload(np.arange(7, dtype=np.int16))  # asked for: 200, not sent
        assert value(scrape(served.url), "augstream_errors_total", kind="not_found") == 0
        with pytest.raises(NotFoundError):
            client.dataset("nope")
    assert value(scrape(served.url), "augstream_errors_total", kind="not_found") == 1
    errors = httpx.get(f"{served.url}/v1/status", timeout=30).json()["errors"]
    assert errors.get("not_found") == 1
