"""A small sample dataset written to any store: ``python -m augstream_service.sample URL``.

Three classes of drawn shapes (circles, squares, triangles) in random colours, sizes and
places, as JPEGs in class folders: enough to try a server, a bucket or a compose deployment
without shipping or downloading data. The same ``--seed`` writes the same files.

    python -m augstream_service.sample s3://datasets/shapes --per-class 100
    python -m augstream_service.sample /data/shapes

Buckets take their credentials and endpoint from the usual variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import cv2
import fsspec
import numpy as np

__all__ = ["CLASSES", "draw", "main", "write_sample"]

CLASSES = ("circle", "square", "triangle")
Array = np.ndarray[Any, Any]


def draw(shape: str, size: int, rng: np.random.Generator) -> Array:
    """One RGB image of ``shape`` on a plain background."""
    background, colour = rng.integers(0, 256, (2, 3)).tolist()
    image = np.empty((size, size, 3), np.uint8)
    image[:] = background
    radius = int(rng.integers(size // 8, size // 3))
    x, y = (int(v) for v in rng.integers(radius, size - radius, 2))
    if shape == "circle":
        cv2.circle(image, (x, y), radius, colour, -1, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(image, (x - radius, y - radius), (x + radius, y + radius), colour, -1)
    else:
        corners = np.array([[x, y - radius], [x - radius, y + radius], [x + radius, y + radius]])
        cv2.fillPoly(image, [corners.astype(np.int32)], colour, cv2.LINE_AA)
    return image


def write_sample(url: str, per_class: int = 50, size: int = 128, seed: int = 0) -> int:
    """Write the dataset below ``url``; returns how many files were written."""
    fs, root = fsspec.core.url_to_fs(url)
    rng = np.random.default_rng(seed)
    written = 0
    for shape in CLASSES:
        for n in range(per_class):
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(draw(shape, size, rng), cv2.COLOR_RGB2BGR))
            if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
                raise RuntimeError("OpenCV could not encode a JPEG")
            path = f"{root.rstrip('/')}/{shape}/{n:04d}.jpg"
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            fs.pipe_file(path, jpeg.tobytes())
            written += 1
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m augstream_service.sample", description=__doc__.splitlines()[0]
    )
    parser.add_argument("url", help="where to write: a folder, s3://bucket/prefix, ...")
    parser.add_argument("--per-class", type=int, default=50, help="images per class")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    count = write_sample(args.url, args.per_class, args.size, args.seed)
    print(f"wrote {count} images in {len(CLASSES)} classes to {args.url}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
