"""``augstream demo``: a server on loopback over a small real data set, and a client of it.

The data set is scikit-learn's handwritten digits (shipped with scikit-learn, nothing is
downloaded), written once as PNG class folders, as a lab's image folder would be.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_demo", "write_digits"]


def write_digits(root: Path) -> Path:
    """Write the 1,797 digits as ``root/digits/<label>/<n>.png`` (once) and return the folder."""
    import cv2
    from sklearn.datasets import load_digits

    folder = root / "digits"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    digits = load_digits()
    for n, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        pixels = np.round(image * (255 / 16)).astype(np.uint8)
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target / f"{n:04d}.png"), pixels)
    marker.touch()
    return folder


def _grid(x: np.ndarray, columns: int = 8) -> np.ndarray:
    count, height, width, channels = x.shape
    rows = -(-count // columns)
    grid = np.full((rows * (height + 2), columns * (width + 2), channels), 255, dtype=np.uint8)
    for i, image in enumerate(x):
        r, c = divmod(i, columns)
        grid[
            r * (height + 2) : r * (height + 2) + height, c * (width + 2) : c * (width + 2) + width
        ] = image
    return grid


def run_demo(batches: int = 20, out: str = "augstream-demo") -> int:
    """Serve the digits on a loopback port, stream augmented batches, report, save a grid."""
    import cv2

    from augstream_service import Settings, create_app
    from augstream_service.background import BackgroundServer

    from .client import Client

    root = Path(out)
    folder = write_digits(root)
    spec: dict[str, Any] = dict(
        dataset="digits",
        target_size=(32, 32),
        color_mode="grayscale",
        batch_size=64,
        seed=7,
        rotation_range=15,
        width_shift_range=0.1,
        height_shift_range=0.1,
        zoom_range=0.1,
        interpolation="bilinear",
    )
    with (
        BackgroundServer(create_app(Settings(datasets=[folder]))) as server,
        Client(server.url) as client,
    ):
        info = client.dataset("digits")
        print(
            f"server {server.url} serves {info.name!r}: {info.samples} images, "
            f"{len(info.class_indices)} classes"
        )
        with client.stream(**spec) as stream:
            first = stream.next_batch()
            started = time.perf_counter()
            images = 0
            for _ in range(batches - 1):
                x, _ = next(stream)
                images += len(x)
            elapsed = time.perf_counter() - started
        y_shape = None if first.y is None else first.y.shape
        print(
            f"batch: x {first.x.shape} {first.x.dtype}, y {y_shape}; "
            f"{len(stream)} batches per epoch"
        )
        print(
            f"streamed {images} augmented images in {elapsed:.2f} s "
            f"({images / max(elapsed, 1e-9):.0f} images/s over loopback HTTP)"
        )
        with client.stream(**spec) as again:
            same = again.next_batch()
        identical = same.x.tobytes() == first.x.tobytes() and same.sample_ids == first.sample_ids
        print(f"same spec, second stream: first batch byte-identical: {identical}")
        grid_path = root / "demo-grid.png"
        cv2.imwrite(str(grid_path), _grid(first.x))
        print(f"a grid of the first batch is in {grid_path}")
    return 0 if identical else 1
