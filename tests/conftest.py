"""Shared fixtures: generated image folders and a live uvicorn server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.imagefolder import make_image_folder


@pytest.fixture(scope="session", autouse=True)
def _upload_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Servers started by the tests (in threads or subprocesses) keep uploads here, not in
    the user's cache."""
    path = tmp_path_factory.mktemp("uploads")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUGSTREAM_UPLOAD_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder named ``pets``: 3 classes, 19 images (one nested), mixed formats."""
    return make_image_folder(tmp_path_factory.mktemp("data") / "pets")


@pytest.fixture(scope="session")
def corrupt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset ``broken`` whose second class holds a file that is not really a PNG."""
    root = make_image_folder(tmp_path_factory.mktemp("bad") / "broken", per_class=(2, 2))
    (root / "dog" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png at all")
    return root


@dataclass
class LiveServer:
    url: str
    app: Any

    @property
    def active_streams(self) -> int:
        return int(self.app.state.augstream.slots.active)


@pytest.fixture(scope="session")
def live_server(image_root: Path, corrupt_root: Path) -> Iterator[LiveServer]:
    """A real uvicorn server in a thread on a loopback port, serving ``pets`` and ``broken``."""
    from augstream_service import Settings, create_app
    from augstream_service.background import BackgroundServer

    settings = Settings(datasets=[image_root, corrupt_root], threads=2, heartbeat_s=0.5)
    app = create_app(settings)
    with BackgroundServer(app) as server:
        yield LiveServer(server.url, app)


@pytest.fixture(scope="session")
def server_url(live_server: LiveServer) -> str:
    return live_server.url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """moto's S3 server on loopback, started once for the session (it takes seconds)."""
    from tests.stores import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def noise_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset ``noise``: 2 classes x 150 RGB PNGs of independent noise, all 8 x 8, so a
    target size of (8, 8) decodes them unchanged (Keras reads the same pixels) and 300
    images span all 192 features (a full-rank ZCA)."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("stats") / "noise"
    rng = np.random.default_rng(9)
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for n in range(150):
            image = rng.integers(0, 180, (8, 8, 3), dtype=np.uint8) + np.uint8(60 * label)
            cv2.imwrite(str(root / name / f"{n:03d}.png"), image)
    return root


@pytest.fixture(scope="session")
def stats_server(noise_root: Path, image_root: Path, corrupt_root: Path) -> Iterator[LiveServer]:
    """A live server for dataset statistics, serving ``noise``, ``pets`` and ``broken``."""
    from augstream_service import Settings, create_app
    from augstream_service.background import BackgroundServer

    app = create_app(Settings(datasets=[noise_root, image_root, corrupt_root], threads=2))
    with BackgroundServer(app) as server:
        yield LiveServer(server.url, app)
